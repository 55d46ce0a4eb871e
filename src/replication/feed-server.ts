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
  encodeFrame,
  encodeMessage,
  protocolVersion,
  type AckMessage,
  type FeedFrame,
  type FeedRequest,
} from './protocol.js';
import type { ReplicaNode } from './replica-node.js';
import type { VersionVector } from '../core/vector.js';

export interface FeedServerOptions {
  env: Env;
  node: ReplicaNode;
  auth: PeerAuthConfig;
  heartbeatMs: number;
  onAck: (ack: AckMessage) => void;
  /** the latest vector a peer acknowledged: what it already has from any source */
  ackedBy: (site: string) => AckMessage | undefined;
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
        const body = decodeMessage<FeedRequest>(req.body);
        if (!isVector(body?.vector) || body.site !== auth.site) return problem(400, 'bad-request', 'malformed feed request');
        const floor = options.node.store.logFloor();
        const behind = Object.entries(floor).find(([o, seq]) => (body.vector[o] ?? 0) < seq);
        if (behind)
          return problem(410, 'snapshot-required', `this site's log starts after ${behind[0]}:${behind[1]}; bootstrap from a snapshot`);
        const stream = feedStream(options, auth.site, body, req.signal, open);
        return { status: 200, headers: { 'content-type': 'application/x-tandem-feed' }, body: stream };
      }
      if (req.method === 'POST' && path === '/v1/peer/ack') {
        const ack = decodeMessage<AckMessage>(req.body);
        if (!isVector(ack?.vector) || ack.site !== auth.site) return problem(400, 'bad-request', 'malformed ack');
        options.onAck(ack);
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
  const onAbort = () => wake?.();
  signal.addEventListener('abort', onAbort);
  try {
    while (!signal.aborted) {
      // What the puller got meanwhile from other peers need not be sent again.
      // (Only an ack of the same incarnation counts: a wiped and reborn peer starts from nothing.)
      const ack = options.ackedBy(peer);
      if (ack !== undefined && ack.origin === request.origin)
        for (const [o, seq] of Object.entries(ack.vector)) if (seq > (cursor[o] ?? 0)) cursor[o] = seq;
      const entries = await node.store.readLog(cursor, limits.feedBatchEntriesMax, limits.feedBatchBytesMax);
      if (entries.length > 0) {
        for (const e of entries) {
          // Invariant 2 at the sending end: each origin in seq order, no gap.
          assert(e.seq === (cursor[e.origin] ?? 0) + 1, `feed gap for ${e.origin}: ${cursor[e.origin] ?? 0} then ${e.seq}`);
          cursor[e.origin] = e.seq;
        }
        const frame: FeedFrame = {
          t: 'batch',
          v: protocolVersion,
          entries,
          vector: node.vector(),
          oldestMs: hlcMs(hlcFromHex(entries[0]!.hlc)),
        };
        yield encodeFrame(frame);
        continue;
      }
      const woke = await new Promise<boolean>((resolve) => {
        const timer = env.timers.after(options.heartbeatMs, () => resolve(false));
        wake = () => {
          timer.cancel();
          resolve(true);
        };
      });
      wake = undefined;
      if (!woke && !signal.aborted)
        yield encodeFrame({ t: 'heartbeat', v: protocolVersion, vector: node.vector(), oldestMs: 0, atMs: env.clock.wallMs() });
    }
  } finally {
    unsubscribe();
    signal.removeEventListener('abort', onAbort);
    open.delete(closing);
  }
}

async function* snapshotStream(options: FeedServerOptions, signal: AbortSignal): AsyncIterable<Uint8Array> {
  let vector: VersionVector | undefined;
  for await (const page of options.node.store.snapshot(limits.feedBatchEntriesMax)) {
    if (signal.aborted) return;
    if (page.vector) vector = page.vector;
    if (page.items.length > 0) yield encodeFrame({ t: 'snapshot-page', v: protocolVersion, items: page.items });
  }
  assert(vector !== undefined, 'a snapshot starts with its vector');
  yield encodeFrame({ t: 'snapshot-end', v: protocolVersion, vector });
}

function isVector(v: unknown): v is VersionVector {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return false;
  return Object.values(v).every((s) => Number.isSafeInteger(s) && (s as number) >= 0);
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
