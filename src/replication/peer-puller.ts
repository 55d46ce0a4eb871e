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
import { encodeMessage, protocolVersion, readFrames } from './protocol.js';
import type { ReplicaNode } from './replica-node.js';

export interface PeerLinkStatus {
  connected: boolean;
  lagEntries: number;
  lagMs: number;
}

export interface PeerPullerOptions {
  env: Env;
  node: ReplicaNode;
  peer: string;
  peerUrl: string;
  auth: PeerAuthConfig;
  heartbeatMs: number;
  onBatchApplied?: (peer: string, applied: number) => void;
}

export class PeerPuller {
  readonly id: string;
  private connected = false;
  private peerVector: VersionVector = {};
  private oldestPendingMs = 0;
  private stopped = false;
  private current: AbortController | undefined;
  private running: Promise<void> | undefined;
  private readonly backoff: Backoff;
  private readonly log;
  entriesApplied = 0;

  constructor(private readonly options: PeerPullerOptions) {
    this.id = `puller:${options.peer}`;
    this.backoff = new Backoff(options.env.random, limits.backoffMsMin, limits.backoffMsMax);
    this.log = options.env.log.child({ component: 'puller', peer: options.peer });
  }

  status(): PeerLinkStatus {
    const mine = this.options.node.vector();
    let lagEntries = 0;
    for (const [o, s] of Object.entries(this.peerVector)) lagEntries += Math.max(0, s - (mine[o] ?? 0));
    const lagMs = lagEntries > 0 && this.oldestPendingMs > 0 ? Math.max(0, this.options.env.clock.wallMs() - this.oldestPendingMs) : 0;
    return { connected: this.connected, lagEntries, lagMs: Math.round(lagMs) };
  }

  /** The peer's vector as of its last frame (what it has). */
  get knownPeerVector(): VersionVector {
    return this.peerVector;
  }

  run(): Promise<void> {
    this.running ??= this.loop();
    return this.running;
  }

  async stop(): Promise<void> {
    this.stopped = true;
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
      this.connected = false;
      if (this.stopped) break;
      try {
        await env.timers.sleep(this.backoff.next());
      } catch {
        // sleep aborted: loop checks stopped
      }
    }
  }

  private async pullOnce(): Promise<void> {
    const { env, node, peerUrl, auth } = this.options;
    const ac = new AbortController();
    this.current = ac;
    const path = '/v1/peer/feed';
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
        body: encodeMessage({ v: protocolVersion, site: node.siteId, vector: node.vector() }),
        signal: ac.signal,
      });
      if (res.status !== 200) {
        const text = new TextDecoder().decode(await readBody(res.body, 64 * 1024));
        if (res.status === 401) this.log.error({ status: res.status, detail: text.slice(0, 200) }, 'peer refused our credentials');
        throw new Error(`peer answered ${res.status}`);
      }
      this.connected = true;
      this.backoff.reset();
      for await (const frame of readFrames(res.body)) {
        resetStall();
        if (frame.t === 'batch' && frame.entries.length > 0) {
          this.oldestPendingMs = hlcMs(hlcFromHex(frame.entries[0]!.hlc));
          this.peerVector = frame.vector;
          const result = await node.applyRemote(frame.entries);
          this.entriesApplied += result.applied;
          this.options.onBatchApplied?.(this.options.peer, result.applied);
          if (result.gaps > 0) throw new Error(`peer feed had ${result.gaps} entries after a gap; reconnecting`);
          this.oldestPendingMs = frame.oldestMs;
        } else {
          this.peerVector = frame.vector;
          this.oldestPendingMs = frame.oldestMs;
        }
      }
    } finally {
      stall.cancel();
      this.current = undefined;
      if (!ac.signal.aborted) ac.abort(new Error('done'));
    }
  }
}
