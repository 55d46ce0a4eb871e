// The stored (and replicated) form of a log entry: MessagePack of the LogEntry object, written in
// one pass with its item states, whose bytes the items table keeps too (views into the entry's).
// Decoding it gives the LogEntry back; a receiver logs the bytes it received as they are
// (msgpack-raw.ts), and finds each item's state bytes in them (logEntryStateBytes).
import { decode } from '@msgpack/msgpack';
import type { ItemState } from '../core/item.js';
import { containerAt, mapFields, RawWriter, valueEnd } from '../platform/msgpack-raw.js';
import type { LogEntry } from './types.js';

/** The entry's bytes (what encoding the LogEntry object gives) and each item's state bytes within them. */
export function encodeLogEntry(
  head: Pick<LogEntry, 'origin' | 'seq' | 'hlc' | 'awaitsAck' | 'clock' | 'epoch' | 'voids' | 'idempotency'>,
  items: { table: string; key: string; state: ItemState }[],
): { body: Buffer; states: Buffer[] } {
  const w = new RawWriter().map(
    4 + (head.clock !== undefined ? 1 : 0) + (head.awaitsAck ? 1 : 0) + (head.epoch !== undefined ? 1 : 0) + (head.voids !== undefined ? 1 : 0) + (head.idempotency ? 1 : 0),
  );
  w.str('origin').str(head.origin).str('seq').uint(head.seq).str('hlc').str(head.hlc);
  // after the fixed fields, so a reader of the older format (which ignores unknown fields) reads it
  if (head.clock !== undefined) w.str('clock').str(head.clock);
  w.str('items').array(items.length);
  const spans: number[] = [];
  for (const it of items) {
    w.map(3).str('table').str(it.table).str('key').str(it.key).str('state');
    spans.push(w.offset);
    w.value(it.state);
    spans.push(w.offset);
  }
  if (head.awaitsAck) w.str('awaitsAck').true();
  if (head.epoch !== undefined) w.str('epoch').uint(head.epoch);
  if (head.voids !== undefined) w.str('voids').value(head.voids);
  // an optional field, after the others: readers that do not know it skip it
  if (head.idempotency) w.str('idempotency').map(2).str('key').str(head.idempotency.key).str('fingerprint').str(head.idempotency.fingerprint);
  const body = w.finish();
  return { body, states: items.map((_, i) => body.subarray(spans[2 * i], spans[2 * i + 1])) };
}

const itemsKey = Buffer.from([0xa5, ...Buffer.from('items')]);
const stateKey = Buffer.from([0xa5, ...Buffer.from('state')]);

function keyIs(key: Uint8Array, expected: Uint8Array): boolean {
  if (key.byteLength !== expected.byteLength) return false;
  for (let i = 0; i < key.byteLength; i++) if (key[i] !== expected[i]) return false;
  return true;
}

/**
 * The encoded state of each item of a stored or received log entry, in order: views into `bytes`,
 * each the MessagePack of `decodeLogEntry(bytes).items[i].state`. Throws if `bytes` is not an entry.
 */
export function logEntryStateBytes(bytes: Uint8Array): Uint8Array[] {
  const out: Uint8Array[] = [];
  const entry = containerAt(bytes, 0, 'map');
  // walked by hand: mapFields would also scan the items to find where they end, a second pass
  let at = entry.body;
  for (let f = 0; f < entry.size; f++) {
    const keyEnd = valueEnd(bytes, at);
    if (!keyIs(bytes.subarray(at, keyEnd), itemsKey)) {
      at = valueEnd(bytes, keyEnd);
      continue;
    }
    const items = containerAt(bytes, keyEnd, 'array');
    at = items.body;
    for (let i = 0; i < items.size; i++) {
      const item = mapFields(bytes, at);
      // the last one wins, as when decoding
      const state = item.fields.findLast((g) => keyIs(g.key, stateKey));
      if (state === undefined) throw new Error('log entry item without a state');
      out.push(bytes.subarray(state.value, state.end));
      at = item.end;
    }
  }
  return out;
}

export function decodeLogEntry(bytes: Uint8Array): LogEntry {
  return decode(bytes) as LogEntry;
}

/**
 * The commit clock of an entry (LogEntry.clock): entries written before the field existed carry
 * only their hlc, which was then the origin's clock unless an item's timestamp pulled it ahead.
 */
export function commitClockOf(entry: Pick<LogEntry, 'hlc' | 'clock'>): string {
  return entry.clock ?? entry.hlc;
}
