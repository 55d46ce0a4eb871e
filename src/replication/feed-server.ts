// The serving side of replication: a peer's long-lived pull stream ("entries not covered by my
// vector", every origin, each origin in seq order), acks from pullers, and the digests used by
// anti-entropy. Exposed as one RequestHandler, mounted under /v1/peer/ by the site's HTTP server
// and registered directly on the simulated network in simulations.
import { assert } from '../core/assert.js';
import { hlcFromHex, hlcMs } from '../core/hlc.js';
import type { Env, IncomingRequest, RequestHandler, TransportResponse } from '../platform/env.js';
import { limits } from '../limits.js';
import { peerHeader, verifyPeerRequest, type PeerAuthConfig } from './auth.js';
import {
  decodeMessage,
  encodeBatchFrame,
  encodeFrame,
  encodeMessage,
  isAckMessage,
  isFeedRequest,
  protocolVersion,
  type AckMessage,
  type FeedRequest,
} from './protocol.js';
import type { ReplicaNode } from './replica-node.js';
import { siteOfOrigin, type VersionVector } from '../core/vector.js';
import type { RelayGate } from './relay-gate.js';

export interface FeedServerOptions {
  env: Env;
  node: ReplicaNode;
  auth: PeerAuthConfig;
  heartbeatMs: number;
  onAck: (ack: AckMessage) => void;
  /** a peer just reached this site (a pull or an ack): it is up, whatever our backoff thought */
  onPeerSeen?: (site: string) => void;
  /** the latest vector a peer acknowledged: what it already has from any source */
  ackedBy: (site: string) => AckMessage | undefined;
  /** how far other origins' entries may be relayed yet (relay-gate.ts) */
  relay: Pick<RelayGate, 'relayable' | 'relayableAtMs' | 'movingUntilMs'>;
  /** extra peer routes (anti-entropy, snapshots) */
  extraRoutes?: Record<string, (req: IncomingRequest, from: string) => Promise<TransportResponse>>;
}

export interface FeedServer {
  handler: RequestHandler;
  /** Ends every open feed (shutdown): pullers reconnect elsewhere instead of holding the server open. */
  closeFeeds(): void;
}

export function feedServer(options: FeedServerOptions): FeedServer {
  const { env } = options;
  const log = env.log.child({ component: 'feed-server' });
  const open = new Set<AbortController>();
  /** per peer, wakes its open feeds (an ack can change what may be relayed to it) */
  const wakers = new Map<string, Set<() => void>>();
  const closeFeeds = () => {
    for (const ac of open) ac.abort(new Error('site stopping'));
  };
  const handler: RequestHandler = async (req) => {
    const path = req.path.split('?')[0]!;
    const auth = verifyPeerRequest(options.auth, req.headers[peerHeader], env.clock.wallMs(), req.method, path);
    if (!auth.ok) {
      log.warn({ path, reason: auth.reason }, 'refused peer request');
      return problem(401, 'unauthorized', `peer authentication failed: ${auth.reason}`);
    }
    try {
      if (req.method === 'POST' && path === '/v1/peer/feed') {
        const body = decodeMessage<unknown>(req.body);
        if (!isFeedRequest(body) || body.site !== auth.site) return problem(400, 'bad-request', 'malformed feed request');
        options.onPeerSeen?.(auth.site);
        const floor = options.node.store.logFloor();
        const behind = Object.entries(floor).find(([o, seq]) => (body.vector[o] ?? 0) < seq);
        if (behind)
          return problem(410, 'snapshot-required', `this site's log starts after ${behind[0]}:${behind[1]}; bootstrap from a snapshot`);
        const stream = feedStream(options, auth.site, body, req.signal, open, wakers);
        return { status: 200, headers: { 'content-type': 'application/x-tandem-feed' }, body: stream };
      }
      if (req.method === 'POST' && path === '/v1/peer/ack') {
        const ack = decodeMessage<unknown>(req.body);
        if (!isAckMessage(ack) || ack.site !== auth.site) {
          log.warn({ from: auth.site }, 'refused a malformed ack');
          return problem(400, 'bad-request', 'malformed ack: expected { site, vector, origin, ownSeq, direct?: string[] }');
        }
        options.onAck(ack);
        for (const w of wakers.get(ack.site) ?? []) w();
        return { status: 204, headers: {}, body: empty() };
      }
      if (req.method === 'GET' && path === '/v1/peer/snapshot')
        return { status: 200, headers: { 'content-type': 'application/x-tandem-feed' }, body: snapshotStream(options, req.signal) };
      const extra = options.extraRoutes?.[`${req.method} ${path}`];
      if (extra) return extra(req, auth.site);
      return problem(404, 'not-found', `no peer route ${req.method} ${path}`);
    } catch (e) {
      log.warn({ err: e, path }, 'malformed peer request');
      return problem(400, 'bad-request', `malformed peer request: ${(e as Error).message}`);
    }
  };
  return { handler, closeFeeds };
}

async function* feedStream(
  options: FeedServerOptions,
  peer: string,
  request: FeedRequest,
  callerSignal: AbortSignal,
  /** the open feeds of this server, so shutdown can end them */
  open: Set<AbortController>,
  wakers: Map<string, Set<() => void>>,
): AsyncIterable<Uint8Array> {
  const closing = new AbortController();
  open.add(closing);
  const signal = AbortSignal.any([callerSignal, closing.signal]);
  const { env, node } = options;
  const cursor: VersionVector = { ...request.vector };
  // Never echo the puller's own writes back to it.
  if (typeof request.origin === 'string') cursor[request.origin] = Number.MAX_SAFE_INTEGER;
  let wake: (() => void) | undefined;
  const unsubscribe = node.onCommit(() => wake?.());
  const onAck = () => wake?.();
  let peerWakers = wakers.get(peer);
  if (!peerWakers) wakers.set(peer, (peerWakers = new Set()));
  peerWakers.add(onAck);
  const onAbort = () => wake?.();
  signal.addEventListener('abort', onAbort);
  let lastSentMs = env.clock.monotonicMs();
  try {
    while (!signal.aborted) {
      // What the puller got meanwhile from other peers need not be sent again.
      // (Only an ack of the same incarnation counts: a wiped and reborn peer starts from nothing.)
      const ack = options.ackedBy(peer);
      if (ack !== undefined && ack.origin === request.origin)
        for (const [o, seq] of Object.entries(ack.vector)) if (seq > (cursor[o] ?? 0)) cursor[o] = seq;
      // Origins the peer does not pull from directly right now (it says so in its acks) are
      // relayed at once; the others after the relay delay.
      const direct = ack?.direct === undefined ? undefined : new Set(ack.direct);
      // What may be served now: this site's own entries, and other origins' once the relay gate
      // lets them through. Worked out in memory; the log is read only when there is something.
      const have = node.vector();
      const upTo: VersionVector = {};
      let serve = false;
      let relayAtMs = Infinity;
      for (const [o, seq] of Object.entries(have)) {
        const from = cursor[o] ?? 0;
        if (seq <= from) continue;
        const viaOrigin = o !== node.origin && (direct === undefined || direct.has(siteOfOrigin(o)));
        let last = viaOrigin ? Math.min(seq, options.relay.relayable(o)) : seq;
        if (viaOrigin && last > from) {
          // the peer is getting this origin's entries from it right now: sending them too would
          // only duplicate them (catching up after a partition, say)
          const movingUntilMs = options.relay.movingUntilMs(peer, o);
          if (movingUntilMs !== undefined) {
            last = from;
            relayAtMs = Math.min(relayAtMs, movingUntilMs);
          }
        }
        upTo[o] = last;
        if (last > from) serve = true;
        if (last < seq) relayAtMs = Math.min(relayAtMs, options.relay.relayableAtMs(o, Math.max(last, from)) ?? Infinity);
      }
      const entries = serve ? await node.store.readLogRaw(cursor, limits.feedBatchEntriesMax, limits.feedBatchBytesMax, upTo) : [];
      if (entries.length > 0) {
        for (const e of entries) {
          // Invariant 2 at the sending end: each origin in seq order, no gap.
          assert(e.seq === (cursor[e.origin] ?? 0) + 1, `feed gap for ${e.origin}: ${cursor[e.origin] ?? 0} then ${e.seq}`);
          cursor[e.origin] = e.seq;
        }
        lastSentMs = env.clock.monotonicMs();
        yield encodeBatchFrame(entries.map((e) => e.body), offered(have, upTo), hlcMs(hlcFromHex(entries[0]!.hlc)));
        continue;
      }
      // Nothing to send: sleep until a commit, the next held-back entries come due, or a heartbeat.
      const now = env.clock.monotonicMs();
      const heartbeatInMs = lastSentMs + options.heartbeatMs - now;
      if (heartbeatInMs <= 0) {
        lastSentMs = now;
        yield encodeFrame({ t: 'heartbeat', v: protocolVersion, vector: offered(have, upTo), oldestMs: 0, atMs: env.clock.wallMs() });
        continue;
      }
      await new Promise<void>((resolve) => {
        const timer = env.timers.after(Math.max(1, Math.min(heartbeatInMs, relayAtMs - now)), () => resolve());
        wake = () => {
          timer.cancel();
          resolve();
        };
      });
      wake = undefined;
    }
  } finally {
    unsubscribe();
    peerWakers.delete(onAck);
    if (peerWakers.size === 0) wakers.delete(peer);
    signal.removeEventListener('abort', onAbort);
    open.delete(closing);
  }
}

async function* snapshotStream(options: FeedServerOptions, signal: AbortSignal): AsyncIterable<Uint8Array> {
  let vector: VersionVector | undefined;
  let gcFloor: VersionVector | undefined;
  for await (const page of options.node.store.snapshot(limits.feedBatchEntriesMax)) {
    if (signal.aborted) return;
    if (page.vector) vector = page.vector;
    if (page.gcFloor) gcFloor = page.gcFloor;
    if (page.items.length > 0) yield encodeFrame({ t: 'snapshot-page', v: protocolVersion, items: page.items, ...(vector !== undefined ? { vector } : {}) });
  }
  assert(vector !== undefined, 'a snapshot starts with its vector');
  // The Idempotency-Keys go along, read after the items: a superset of those of the entries the
  // snapshot's vector covers (keys are indexed in the transaction that moves the vector), so a
  // repeat at the new site finds the first answer.
  for (let after: string | undefined; ; ) {
    if (signal.aborted) return;
    const records = await options.node.store.idempotencyRecords(after, limits.feedBatchEntriesMax);
    if (records.length === 0) break;
    // bounded in bytes too: a batch's record names up to batchOpsMax items
    let page: typeof records = [];
    let bytes = 0;
    for (const r of records) {
      const size = JSON.stringify(r).length;
      if (page.length > 0 && bytes + size > limits.feedBatchBytesMax) {
        yield encodeFrame({ t: 'snapshot-page', v: protocolVersion, items: [], vector, idempotency: page });
        page = [];
        bytes = 0;
      }
      page.push(r);
      bytes += size;
    }
    yield encodeFrame({ t: 'snapshot-page', v: protocolVersion, items: [], vector, idempotency: page });
    after = records[records.length - 1]!.key;
  }
  // The void backlog goes along, read after the items too: a void item compensated meanwhile is
  // either not in it, or its compensation is beyond the snapshot's vector and will forget it there.
  {
    const voids = await options.node.store.voidBacklog(limits.voidBacklogMax);
    for (let i = 0; i < voids.length; ) {
      if (signal.aborted) return;
      let bytes = 0;
      let j = i;
      while (j < voids.length && (j === i || bytes + JSON.stringify(voids[j]!.state).length < limits.feedBatchBytesMax)) bytes += JSON.stringify(voids[j++]!.state).length;
      yield encodeFrame({ t: 'snapshot-page', v: protocolVersion, items: [], vector, voids: voids.slice(i, j) });
      i = j;
    }
  }
  // The conflict feed goes along (not part of the consistent read: it only ever grows, and a
  // receiver keys records by (table, key, loser dot), so a record seen twice is kept once).
  for (const table of Object.keys(options.node.config.tables).sort()) {
    for (let after = 0; ; ) {
      if (signal.aborted) return;
      const rows = await options.node.store.conflicts(table, after, limits.feedBatchEntriesMax);
      if (rows.length === 0) break;
      yield encodeFrame({ t: 'snapshot-conflicts', v: protocolVersion, conflicts: rows.map((r) => r.record) });
      after = rows[rows.length - 1]!.id;
    }
  }
  yield encodeFrame({ t: 'snapshot-end', v: protocolVersion, vector, ...(gcFloor !== undefined ? { gcFloor } : {}) });
}

/**
 * The vector a feed reports: what this site holds, less the other origins' entries it holds back.
 * A puller measures its lag on this link against it, so an entry on its way from its own origin is
 * not counted as owed here too.
 */
function offered(have: VersionVector, upTo: VersionVector): VersionVector {
  const out: VersionVector = { ...have };
  for (const [o, seq] of Object.entries(upTo)) out[o] = seq;
  return out;
}

async function* once(bytes: Uint8Array): AsyncIterable<Uint8Array> {
  yield bytes;
}

async function* empty(): AsyncIterable<Uint8Array> {}

export function msgpackResponse(status: number, value: unknown): TransportResponse {
  return { status, headers: { 'content-type': 'application/msgpack' }, body: once(encodeMessage(value)) };
}

export function problem(status: number, type: string, detail: string): TransportResponse {
  const body = new TextEncoder().encode(JSON.stringify({ type: `https://tandem.dev/problems/${type}`, title: type, status, detail }));
  return { status, headers: { 'content-type': 'application/problem+json' }, body: once(body) };
}
