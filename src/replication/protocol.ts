// The peer protocol: what sites say to each other, and how it is framed on the wire.
// A feed is one long-lived response: a sequence of frames, each a 4-byte big-endian length and a
// MessagePack body. Every message carries the protocol version; a site speaks to peers one version
// behind or ahead, and an unknown field is ignored by an old reader.
import { decode, encode } from '@msgpack/msgpack';
import { assert } from '../core/assert.js';
import { containerAt, mapFields, RawWriter, valueEnd } from '../platform/msgpack-raw.js';
import type { VersionVector } from '../core/vector.js';
import type { ItemState } from '../core/item.js';
import type { ConflictRecord, IdempotencyRecord, LogEntry, VoidBacklogItem } from '../store/types.js';
import { limits } from '../limits.js';

export const protocolVersion = 1;
export const frameBytesMax = 8 * 1024 * 1024;

export interface FeedRequest {
  v: number;
  /** the pulling site */
  site: string;
  /** what the puller already has: serve entries not covered by it */
  vector: VersionVector;
  /** the puller's own origin: it has all of its own entries, so they are never sent back */
  origin?: string;
}

export type FeedFrame =
  /** `raw`: each entry's bytes as they were on the wire (set by readFrames, never sent) */
  | { t: 'batch'; v: number; entries: LogEntry[]; raw?: Uint8Array[]; vector: VersionVector; oldestMs: number }
  | { t: 'heartbeat'; v: number; vector: VersionVector; oldestMs: number; atMs: number }
  /** a snapshot stream (bootstrap): pages of item states, then the vector they amount to */
  /** `vector`: the snapshot's, on every page: what the receiver's items it covers are superseded by */
  /**
   * `idempotency`: the sender's Idempotency-Keys, on pages of their own after the items (a field an
   * older receiver ignores: it sees a page with no items).
   */
  /**
   * `voids`: the sender's void backlog (void owned items not compensated yet), likewise: the
   * receiver's vector will cover their entries, so it learns of them only here.
   */
  | { t: 'snapshot-page'; v: number; items: { table: string; key: string; state: ItemState }[]; vector?: VersionVector; idempotency?: IdempotencyRecord[]; voids?: VoidBacklogItem[] }
  /** the serving site's conflict feed, after the items: a new site starts with the losers known */
  | { t: 'snapshot-conflicts'; v: number; conflicts: ConflictRecord[] }
  /** `gcFloor`: what the tombstones the sender purged had seen (the receiver's writes to missing keys carry it) */
  | { t: 'snapshot-end'; v: number; vector: VersionVector; gcFloor?: VersionVector };

const frameKinds = new Set(['batch', 'heartbeat', 'snapshot-page', 'snapshot-conflicts', 'snapshot-end']);

/** What a puller reports after applying: lets the origin count quorum acks and plan GC. */
export interface AckMessage {
  v: number;
  site: string;
  vector: VersionVector;
  /** the reporter's own origin and its seq when it sent this ack (tombstone stability) */
  origin: string;
  ownSeq: number;
  /**
   * The sites whose feed the reporter is connected to now: it gets their entries straight from
   * them. Entries of any other origin are relayed to it at once (relay-gate.ts).
   */
  direct?: string[];
}

const siteIdsMax = 256;

function isVector(v: unknown): v is VersionVector {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return false;
  return Object.values(v).every((s) => Number.isSafeInteger(s) && (s as number) >= 0);
}

/**
 * Checks every field of a decoded ack before anything reads it: a malformed field (from a peer
 * of another version, or a bug) must be refused at the door, not throw later inside the feeds
 * that read acks.
 */
export function isAckMessage(m: unknown): m is AckMessage {
  if (m === null || typeof m !== 'object') return false;
  const a = m as Partial<AckMessage>;
  return (
    typeof a.site === 'string' &&
    typeof a.origin === 'string' &&
    Number.isSafeInteger(a.ownSeq) &&
    (a.ownSeq as number) >= 0 &&
    isVector(a.vector) &&
    (a.direct === undefined || (Array.isArray(a.direct) && a.direct.length <= siteIdsMax && a.direct.every((d) => typeof d === 'string')))
  );
}

/** Checks a void item a peer's snapshot carried before it is kept. */
export function isVoidBacklogItem(m: unknown): m is VoidBacklogItem {
  if (m === null || typeof m !== 'object') return false;
  const v = m as Partial<VoidBacklogItem>;
  return (
    typeof v.table === 'string' &&
    typeof v.key === 'string' &&
    typeof v.dot === 'string' &&
    typeof v.origin === 'string' &&
    Number.isSafeInteger(v.seq) &&
    v.dot === `${v.origin}:${v.seq}` &&
    v.value !== undefined &&
    v.state !== null &&
    typeof v.state === 'object' &&
    typeof v.state.c === 'object' &&
    typeof v.state.r === 'object' &&
    typeof v.state.k === 'object' &&
    typeof v.state.s === 'object' &&
    Array.isArray(v.state.x) &&
    typeof v.state.w === 'object'
  );
}

/** The same for a feed request. */
/** Checks a record a peer's snapshot carried before it is stored. */
export function isIdempotencyRecord(m: unknown): m is IdempotencyRecord {
  if (m === null || typeof m !== 'object') return false;
  const r = m as Partial<IdempotencyRecord>;
  return (
    typeof r.key === 'string' &&
    r.key.length <= limits.idempotencyKeyCharsMax &&
    typeof r.fingerprint === 'string' &&
    typeof r.origin === 'string' &&
    typeof r.hlc === 'string' &&
    Number.isSafeInteger(r.seq) &&
    Number.isFinite(r.atMs) &&
    Array.isArray(r.items) &&
    r.items.every((i: unknown) => {
      const it = i as Record<string, unknown> | null;
      return it !== null && typeof it === 'object' && ['table', 'key', 'version', 'origin'].every((f) => typeof it[f] === 'string');
    })
  );
}

export function isFeedRequest(m: unknown): m is FeedRequest {
  if (m === null || typeof m !== 'object') return false;
  const r = m as Partial<FeedRequest>;
  return typeof r.site === 'string' && isVector(r.vector) && (r.origin === undefined || typeof r.origin === 'string');
}

export function encodeMessage(value: unknown): Uint8Array {
  return encode(value);
}

export function decodeMessage<T>(bytes: Uint8Array): T {
  return decode(bytes) as T;
}

export function encodeFrame(frame: FeedFrame): Uint8Array {
  const body = encode(frame);
  assert(body.byteLength <= frameBytesMax, `frame of ${body.byteLength} bytes exceeds ${frameBytesMax}`);
  const out = new Uint8Array(4 + body.byteLength);
  new DataView(out.buffer).setUint32(0, body.byteLength);
  out.set(body, 4);
  return out;
}

/**
 * A batch frame from log entries as stored (log-codec.ts), spliced without decoding them: the same
 * bytes as encodeFrame of the decoded batch.
 */
export function encodeBatchFrame(rawEntries: Uint8Array[], vector: VersionVector, oldestMs: number): Uint8Array {
  const w = new RawWriter(4).map(5).str('t').str('batch').str('v').uint(protocolVersion);
  w.str('entries').array(rawEntries.length);
  for (const e of rawEntries) w.raw(e);
  w.str('vector').raw(encode(vector)).str('oldestMs').raw(encode(oldestMs));
  assert(w.byteLength <= frameBytesMax, `frame of ${w.byteLength} bytes exceeds ${frameBytesMax}`);
  const out = w.finish();
  out.writeUInt32BE(w.byteLength, 0);
  return out;
}

/**
 * Decodes one frame body. The entries of a batch are decoded one by one and their bytes kept
 * (`raw`), so a receiver logs exactly what its peer logged.
 */
function decodeFrame(body: Uint8Array): FeedFrame {
  const { fields, end: mapEnd } = mapFields(body, 0);
  const out: Record<string, unknown> = {};
  for (const { key: keyBytes, value: keyEnd, end } of fields) {
    const key = decode(keyBytes);
    if (key === 'entries') {
      const list = containerAt(body, keyEnd, 'array');
      const raw: Uint8Array[] = [];
      let e = list.body;
      for (let j = 0; j < list.size; j++) {
        const eEnd = valueEnd(body, e);
        raw.push(body.slice(e, eEnd));
        e = eEnd;
      }
      out['entries'] = raw.map((r) => decode(r));
      out['raw'] = raw;
    } else if (typeof key === 'string') out[key] = decode(body.subarray(keyEnd, end));
  }
  if (mapEnd !== body.byteLength) throw new Error('peer sent a frame with trailing bytes');
  return out as unknown as FeedFrame;
}

/** Splits a byte stream into frames; throws on a frame that is too large or malformed. */
export async function* readFrames(body: AsyncIterable<Uint8Array>): AsyncIterable<FeedFrame> {
  let buf = new Uint8Array(0);
  for await (const chunk of body) {
    const joined = new Uint8Array(buf.byteLength + chunk.byteLength);
    joined.set(buf, 0);
    joined.set(chunk, buf.byteLength);
    buf = joined;
    while (buf.byteLength >= 4) {
      const len = new DataView(buf.buffer, buf.byteOffset, buf.byteLength).getUint32(0);
      if (len > frameBytesMax) throw new Error(`peer sent a frame of ${len} bytes (max ${frameBytesMax})`);
      if (buf.byteLength < 4 + len) break;
      const frame = decodeFrame(buf.subarray(4, 4 + len));
      buf = buf.slice(4 + len);
      if (frame === null || typeof frame !== 'object' || !frameKinds.has(frame.t))
        throw new Error('peer sent a malformed frame');
      yield frame;
    }
  }
}
