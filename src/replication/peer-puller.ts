// The pulling side of one peer link: one long-lived streaming request to the peer's feed, applying
// each batch in one transaction with the vector (idempotent, at-least-once delivery, exactly-once
// effect). Reconnects with backoff; a stream silent for longer than the stall bound is dropped
// (a paused peer that keeps its socket open), so pulling moves on to other peers.
import { hlcFromHex, hlcMs } from '../core/hlc.js';
import type { VersionVector } from '../core/vector.js';
import { Backoff } from '../platform/backoff.js';
import { readBody, type Env } from '../platform/env.js';
import { limits } from '../limits.js';
import { peerHeader, signPeerRequest, type PeerAuthConfig } from './auth.js';
import { encodeMessage, isIdempotencyRecord, isVoidBacklogItem, protocolVersion, readFrames, type FeedFrame, type FeedRequest } from './protocol.js';
import type { LogEntry } from '../store/types.js';
import type { ReplicaNode } from './replica-node.js';

/** Refusals (410) with no progress from other peers before this puller installs a snapshot. */
const snapshotAfterRefusals = 3;
/** Entries received and not yet applied, per link, before the puller stops reading. */
const pendingEntriesMax = 4 * 512;

export interface PeerLinkStatus {
  connected: boolean;
  lagEntries: number;
  lagMs: number;
  /** while connected: when this pull stream came up (wall ms) */
  connectedSinceMs?: number;
}

export interface PeerPullerOptions {
  env: Env;
  node: ReplicaNode;
  peer: string;
  peerUrl: string;
  auth: PeerAuthConfig;
  heartbeatMs: number;
  /** after each applied batch (e.g. to ack its origins at once when they wait for acks) */
  onApplied?: (entries: LogEntry[]) => void;
  /** the pull stream from this peer came up or went down */
  onConnectedChange?: (connected: boolean) => void;
}

export class PeerPuller {
  readonly id: string;
  /** while the pull stream is up: when it came up (wall ms) */
  private connectedSinceMs: number | undefined;
  /** monotonic ms of the last frame (a batch or a heartbeat) from the peer: it is alive */
  lastFrameMs = -Infinity;
  private peerVector: VersionVector = {};
  private oldestPendingMs = 0;
  private stopped = false;
  private current: AbortController | undefined;
  private running: Promise<void> | undefined;
  private readonly backoff: Backoff;
  private readonly log;
  private snapshotRequired = 0;
  private sleeping: AbortController | undefined;
  private snapshotRequiredAt = '';

  constructor(private readonly options: PeerPullerOptions) {
    this.id = `puller:${options.peer}`;
    this.backoff = new Backoff(options.env.random, limits.backoffMsMin, limits.peerBackoffMsMax);
    this.log = options.env.log.child({ component: 'puller', peer: options.peer });
  }

  status(): PeerLinkStatus {
    const mine = this.options.node.vector();
    let lagEntries = 0;
    for (const [o, s] of Object.entries(this.peerVector)) lagEntries += Math.max(0, s - (mine[o] ?? 0));
    const lagMs = lagEntries > 0 && this.oldestPendingMs > 0 ? Math.max(0, this.options.env.clock.wallMs() - this.oldestPendingMs) : 0;
    return {
      connected: this.isConnected,
      lagEntries,
      lagMs: Math.round(lagMs),
      ...(this.connectedSinceMs !== undefined ? { connectedSinceMs: this.connectedSinceMs } : {}),
    };
  }

  get isConnected(): boolean {
    return this.connectedSinceMs !== undefined;
  }

  /** What the peer has, as its feed last said (at least this). */
  peerHas(): VersionVector {
    return this.peerVector;
  }

  private setConnected(connected: boolean): void {
    if (this.isConnected === connected) return;
    this.connectedSinceMs = connected ? this.options.env.clock.wallMs() : undefined;
    this.log.info({ connected }, connected ? 'pulling from peer' : 'pull stream from peer lost');
    this.options.onConnectedChange?.(connected);
  }

  run(): Promise<void> {
    this.running ??= this.loop();
    return this.running;
  }

  /** The peer was just heard from (its ack arrived): reconnect now instead of after the backoff. */
  wake(): void {
    if (this.sleeping === undefined) return;
    this.backoff.reset();
    this.sleeping.abort(new Error('peer is back'));
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.sleeping?.abort(new Error('stopping'));
    this.current?.abort(new Error('stopping'));
    await this.running;
  }

  private async loop(): Promise<void> {
    const { env } = this.options;
    while (!this.stopped) {
      try {
        await this.pullOnce();
      } catch (e) {
        if (!this.stopped) this.log.debug({ err: (e as Error).message }, 'peer stream ended');
      }
      this.setConnected(false);
      if (this.stopped) break;
      this.sleeping = new AbortController();
      try {
        await env.timers.sleep(this.backoff.next(), this.sleeping.signal);
      } catch {
        // woken early (the peer is back, or we are stopping): the loop decides
      }
      this.sleeping = undefined;
    }
  }

  /**
   * The peer's log no longer reaches back to our vector: install its snapshot (items joined into
   * ours), then take its vector. Interrupted, it is simply done again: joins are idempotent and the
   * vector moves only at the end.
   */
  private async bootstrap(signal: AbortSignal): Promise<void> {
    const { env, node, peerUrl, auth } = this.options;
    const path = '/v1/peer/snapshot';
    this.log.warn({}, 'peer log compacted past our vector: bootstrapping from its snapshot');
    const res = await env.transport.request({
      method: 'GET',
      url: `${peerUrl}${path}`,
      headers: { [peerHeader]: signPeerRequest(auth, node.siteId, env.clock.wallMs(), 'GET', path) },
      signal,
    });
    if (res.status !== 200) {
      await readBody(res.body, 64 * 1024);
      throw new Error(`snapshot request answered ${res.status}`);
    }
    let items = 0;
    // the snapshot's keys: a local item it covers and lacks was deleted and purged at the peer
    const inSnapshot = new Set<string>();
    for await (const frame of readFrames(res.body)) {
      if (frame.t === 'snapshot-page') {
        if (Array.isArray(frame.idempotency)) await node.store.putIdempotencyRecords(frame.idempotency.filter(isIdempotencyRecord));
        if (Array.isArray(frame.voids) && node.keepVoids !== undefined) await node.keepVoids(frame.voids.filter(isVoidBacklogItem));
        for (const i of frame.items) inSnapshot.add(`${i.table}\u0000${i.key}`);
        items += await node.repairItems(frame.items, frame.vector !== undefined ? { supersededBy: frame.vector } : {});
      } else if (frame.t === 'snapshot-conflicts') await node.recordConflicts(frame.conflicts);
      else if (frame.t === 'snapshot-end') {
        const retired = await node.retireItemsCoveredBy(frame.vector, (table, key) => inSnapshot.has(`${table}\u0000${key}`));
        await node.advanceVector(frame.vector, frame.gcFloor);
        this.log.info({ items, retired }, 'snapshot installed');
        return;
      } else throw new Error(`unexpected ${frame.t} frame in a snapshot`);
    }
    throw new Error('snapshot stream ended early');
  }

  /**
   * Reads frames while the previous ones are being applied, and applies everything that arrived
   * meanwhile as one batch: one transaction (and one fsync) per turn instead of one per frame, so a
   * busy link catches up rather than queueing behind its own commits. Bounded: reading pauses while
   * more than `pendingEntriesMax` entries wait.
   */
  private async applyFrames(frames: AsyncIterable<FeedFrame>, onFrame: () => void): Promise<void> {
    const { node } = this.options;
    const iterator = frames[Symbol.asyncIterator]();
    let pending: LogEntry[] = [];
    // the entries' bytes as received, parallel to `pending` while every frame brought them
    let pendingRaw: Uint8Array[] | undefined = [];
    let pendingOldestMs = 0;
    let applying: Promise<void> | undefined;
    let failure: unknown;
    // a read still in flight when this returns fails with the aborted stream: nobody needs that error
    const readNext = () => {
      const p = iterator.next();
      p.catch(() => undefined);
      return p;
    };
    let next: Promise<IteratorResult<FeedFrame>> | undefined = readNext();
    const apply = (entries: LogEntry[], raw: Uint8Array[] | undefined, oldestMs: number) =>
      node.applyRemote(entries, raw).then(
        (result) => {
          this.options.onApplied?.(entries);
          if (result.gaps > 0) failure = new Error(`peer feed had ${result.gaps} entries after a gap; reconnecting`);
          this.oldestPendingMs = pending.length > 0 ? pendingOldestMs : oldestMs;
        },
        (e: unknown) => {
          failure = e;
        },
      );
    let lastOldestMs = 0;
    for (;;) {
      if (failure !== undefined) throw failure;
      if (next === undefined && applying === undefined && pending.length === 0) return;
      const step = await Promise.race([
        ...(next ? [next.then((r) => ({ frame: r }))] : []),
        ...(applying ? [applying.then(() => ({ applied: true as const }))] : []),
      ]);
      if ('applied' in step) applying = undefined;
      else {
        const r = step.frame;
        next = undefined;
        if (r.done) {
          if (applying) await applying;
          if (pending.length > 0 && failure === undefined) await apply(pending, pendingRaw, lastOldestMs);
          if (failure !== undefined) throw failure;
          return;
        }
        onFrame();
        const frame = r.value;
        if (frame.t === 'snapshot-page' || frame.t === 'snapshot-conflicts' || frame.t === 'snapshot-end')
          throw new Error('unexpected snapshot frame on a feed');
        this.peerVector = frame.vector;
        lastOldestMs = frame.oldestMs;
        if (frame.t === 'batch' && frame.entries.length > 0) {
          if (pending.length === 0) pendingOldestMs = hlcMs(hlcFromHex(frame.entries[0]!.hlc));
          this.oldestPendingMs = Math.min(this.oldestPendingMs || pendingOldestMs, pendingOldestMs);
          pending.push(...frame.entries);
          if (frame.raw !== undefined && frame.raw.length === frame.entries.length) pendingRaw?.push(...frame.raw);
          else pendingRaw = undefined;
        } else if (applying === undefined && pending.length === 0) this.oldestPendingMs = frame.oldestMs;
        if (pending.length <= pendingEntriesMax) next = readNext();
      }
      if (applying === undefined && pending.length > 0) {
        const batch = pending;
        const batchRaw = pendingRaw;
        pending = [];
        pendingRaw = [];
        applying = apply(batch, batchRaw, lastOldestMs);
        if (next === undefined) next = readNext();
      }
    }
  }

  private async pullOnce(): Promise<void> {
    const { env, node, peerUrl, auth } = this.options;
    const ac = new AbortController();
    this.current = ac;
    const path = '/v1/peer/feed';
    this.log.debug({ at: env.clock.wallMs() }, 'pull attempt');
    let stall = env.timers.after(this.options.heartbeatMs * 4, () => ac.abort(new Error('peer stream stalled')));
    const resetStall = () => {
      stall.cancel();
      stall = env.timers.after(this.options.heartbeatMs * 4, () => ac.abort(new Error('peer stream stalled')));
    };
    try {
      const res = await env.transport.request({
        method: 'POST',
        url: `${peerUrl}${path}`,
        headers: {
          'content-type': 'application/msgpack',
          [peerHeader]: signPeerRequest(auth, node.siteId, env.clock.wallMs(), 'POST', path),
        },
        body: encodeMessage({ v: protocolVersion, site: node.siteId, vector: node.vector(), origin: node.origin } satisfies FeedRequest),
        signal: ac.signal,
      });
      if (res.status === 410) {
        await readBody(res.body, 64 * 1024);
        stall.cancel();
        // Other peers may still have the entries this one compacted: bootstrap only when pulling
        // from them has not moved our vector past this peer's log floor after a few tries.
        const vector = JSON.stringify(node.vector());
        this.snapshotRequired = vector === this.snapshotRequiredAt ? this.snapshotRequired + 1 : 1;
        this.snapshotRequiredAt = vector;
        if (this.snapshotRequired < snapshotAfterRefusals) throw new Error('peer needs us to bootstrap; trying other peers first');
        this.snapshotRequired = 0;
        await this.bootstrap(ac.signal);
        return;
      }
      if (res.status !== 200) {
        const text = new TextDecoder().decode(await readBody(res.body, 64 * 1024));
        if (res.status === 401) this.log.error({ status: res.status, detail: text.slice(0, 200) }, 'peer refused our credentials');
        throw new Error(`peer answered ${res.status}`);
      }
      this.setConnected(true);
      this.backoff.reset();
      await this.applyFrames(readFrames(res.body), () => {
        this.lastFrameMs = this.options.env.clock.monotonicMs();
        resetStall();
      });
    } finally {
      stall.cancel();
      this.current = undefined;
      if (!ac.signal.aborted) ac.abort(new Error('done'));
    }
  }
}
