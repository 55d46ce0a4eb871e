// Replication of one site: a puller per peer, the feed it serves, acks in both directions, quorum
// durability waits, per-link status, and the readiness rule "caught up with the peers it can
// reach". One long-running part with the same face as every other: run() / stop().
import type { ClusterConfig } from '../config/schema.js';
import { readBody, type Env, type IncomingRequest, type RequestHandler, type TimerHandle, type TransportResponse } from '../platform/env.js';
import { limits } from '../limits.js';
import { peerHeader, signPeerRequest, type PeerAuthConfig } from './auth.js';
import { feedServer, type FeedServer } from './feed-server.js';
import { PeerPuller, type PeerLinkStatus } from './peer-puller.js';
import { encodeMessage, protocolVersion, type AckMessage } from './protocol.js';
import { callPeer } from './peer-call.js';
import { msgpackResponse } from './feed-server.js';
import { Backoff } from '../platform/backoff.js';
import type { ReplicaNode } from './replica-node.js';
import { AntiEntropy } from './anti-entropy.js';
import { RelayGate } from './relay-gate.js';
import { dominates, incarnationOf, parseDot, siteOfOrigin, type Dot, type VersionVector } from '../core/vector.js';
import { currentPeers } from '../core/membership.js';
import type { LogEntry } from '../store/types.js';
import { Housekeeping } from './housekeeping.js';

export interface ReplicatorOptions {
  env: Env;
  node: ReplicaNode;
  config: ClusterConfig;
  /** how to reach each peer; defaults to the config's site URLs (tests and drills route through fault proxies) */
  peerUrls?: Record<string, string>;
  heartbeatMs?: number;
  /** lazy acks: at most one per peer this often (quorum-flagged entries are acked at once) */
  ackIntervalMs?: number;
  /** relay delay for other origins' entries (relay-gate.ts) */
  relayDelayMs?: number;
  quorumTimeoutMs?: number;
  /** a site is ready while it lags no reachable peer by more than this many entries */
  readyLagEntriesMax?: number;
  antiEntropyIntervalMs?: number;
  housekeepingIntervalMs?: number;
  /** entries kept per origin beyond what every member has */
  logRetainEntries?: number;
  /** the backup archive's hold on log compaction (Housekeeping.archivedUpTo) */
  archivedUpTo?: (origin: string) => number | undefined;
  metrics?: {
    setPeer(peer: string, s: PeerLinkStatus): void;
    repaired(n: number): void;
  };
  /**
   * The data memberships whose majorities a `quorum` write needs (joint quorums while membership
   * changes; topology/members.ts quorumSets), and the sites an `all` write needs. Default: this
   * site and its current peers.
   */
  quorumSets?: () => string[][];
  /** more peer routes served beside the feed (topology's voter) */
  extraRoutes?: Record<string, (req: IncomingRequest, from: string) => Promise<TransportResponse>>;
}

/** An applied batch at least this large means the site is catching up. */
const catchUpBatchEntries = 64;

interface AckState {
  inFlight: boolean;
  /** asked for again while in flight: send again this soon (ms) once it is done */
  again: number | undefined;
  timer: TimerHandle | undefined;
  dueAtMs: number;
}

interface DurabilityWaiter {
  origin: string;
  seq: number;
  level: 'quorum' | 'all';
  resolve: (ok: boolean) => void;
}

export class Replicator {
  readonly id = 'replicator';
  readonly handler: RequestHandler;
  private readonly feeds: FeedServer;
  readonly auth: PeerAuthConfig;
  /** the sites whose peer requests are accepted: the config's, and members added online */
  private readonly knownSites: Set<string>;
  readonly pullers = new Map<string, PeerPuller>();
  readonly antiEntropy: AntiEntropy;
  readonly housekeeping: Housekeeping;
  private readonly peerUrls: Record<string, string>;
  private readonly acksReceived = new Map<string, AckMessage>();
  private readonly lastAckMs = new Map<string, number>();
  private readonly ackState = new Map<string, AckState>();
  private readonly waiters = new Set<DurabilityWaiter>();
  private unsubscribe: (() => void) | undefined;
  private heartbeat: TimerHandle | undefined;
  private stopped = false;
  private starting: Promise<void> | undefined;
  /** aborted by stop(): ends the start-up origin check's requests and waits at once */
  private readonly lifetime = new AbortController();
  private readonly heartbeatMs: number;
  private readonly ackIntervalMs: number;
  private relayGate: RelayGate | undefined;
  private readonly log;

  constructor(private readonly options: ReplicatorOptions) {
    const { config, node, env } = options;
    this.log = env.log.child({ component: 'replicator' });
    this.heartbeatMs = options.heartbeatMs ?? 1_000;
    this.ackIntervalMs = options.ackIntervalMs ?? limits.ackIntervalMs;
    this.knownSites = new Set(config.sites.map((s) => s.id));
    this.auth = { cluster: config.cluster, secret: config.secret, knownSites: this.knownSites };
    this.peerUrls = {};
    for (const s of config.sites) if (s.id !== node.siteId) this.peerUrls[s.id] = options.peerUrls?.[s.id] ?? s.url;
    this.antiEntropy = new AntiEntropy({
      env,
      node,
      auth: this.auth,
      peerUrls: this.peerUrls,
      intervalMs: options.antiEntropyIntervalMs ?? 30_000,
      onRepaired: (n) => options.metrics?.repaired(n),
    });
    this.housekeeping = new Housekeeping({
      env,
      node,
      // compaction and GC wait for current members only (joining or active; never removed ones)
      members: () => currentPeers(node.membership(), node.siteId).filter((p) => p in this.peerUrls),
      acks: () => this.acksReceived,
      intervalMs: options.housekeepingIntervalMs ?? 10_000,
      logRetainEntries: options.logRetainEntries ?? 10_000,
      ...(options.archivedUpTo ? { archivedUpTo: options.archivedUpTo } : {}),
    });
    this.feeds = feedServer({
      env,
      node,
      auth: this.auth,
      heartbeatMs: this.heartbeatMs,
      onAck: (ack) => this.receiveAck(ack),
      // a peer that pulls from us is up: pull from it now rather than after our backoff
      onPeerSeen: (site) => this.pullers.get(site)?.wake(),
      ackedBy: (site) => this.acksReceived.get(site),
      // before run() there is no gate yet: relay everything
      relay: {
        relayable: (o) => this.relayGate?.relayable(o) ?? Number.MAX_SAFE_INTEGER,
        relayableAtMs: (o, seq) => this.relayGate?.relayableAtMs(o, seq),
        movingUntilMs: (peer, o) => this.relayGate?.movingUntilMs(peer, o),
      },
      extraRoutes: {
        ...this.antiEntropy.routes(),
        ...options.extraRoutes,
        // what this site holds of every origin: a restarting peer asks before it numbers new writes
        'GET /v1/peer/vector': async () => msgpackResponse(200, { v: protocolVersion, vector: node.store.committedVector() }),
      },
    });
    this.handler = this.feeds.handler;
  }

  /** Pull from every peer now, whatever the backoffs say (a new owner catching up to its cut). */
  wakePulls(): void {
    for (const p of this.pullers.values()) p.wake();
  }

  /** The current members this site replicates with. */
  get peers(): string[] {
    const current = new Set(currentPeers(this.options.node.membership(), this.options.node.siteId));
    return Object.keys(this.peerUrls).filter((p) => current.has(p));
  }

  /**
   * Starts replicating. A site whose store was reopened first confirms its origin with its peers
   * (SiteNode.confirmOrigin; it takes no writes until then), so that its pullers, acks and relay
   * gate start under the origin it will write as.
   */
  run(): void {
    // a store that cannot take a new incarnation has failed: the site keeps serving reads, takes no
    // writes and is not ready (the error says why), rather than replicating under a doubtful origin
    this.starting = this.confirmThenReplicate().catch((e: unknown) => {
      if (!this.stopped) this.log.error({ err: (e as Error).message }, 'could not confirm this site\'s origin: no writes are taken');
    });
  }

  private async confirmThenReplicate(): Promise<void> {
    const { node } = this.options;
    if (!node.originConfirmed) {
      const outcome = await node.confirmOrigin((origin) => this.peersHold(origin));
      this.log.info({ origin: node.origin, outcome }, 'origin confirmed with peers');
    }
    if (!this.stopped) this.replicate();
  }

  /**
   * The most of `origin` any current peer holds, and the highest incarnation of this site any of
   * them has seen; undefined unless every current peer answered within originCheckMsMax. Throws
   * if the replicator stops meanwhile.
   */
  private async peersHold(origin: string): Promise<{ seq: number; incarnationMax: number } | undefined> {
    const { env, node } = this.options;
    const deadline = env.clock.monotonicMs() + limits.originCheckMsMax;
    const backoff = new Backoff(env.random, limits.backoffMsMin, limits.peerBackoffMsMax);
    let seq = 0;
    let incarnationMax = 0;
    for (const peer of this.peers) {
      for (;;) {
        // stopping abandons the check: the site takes no new incarnation on its way down
        if (this.stopped) throw new Error('stopping');
        try {
          const reply = await callPeer<{ vector: VersionVector }>({
            env,
            auth: this.auth,
            from: node.siteId,
            peer,
            peerUrl: this.peerUrls[peer]!,
            method: 'GET',
            path: '/v1/peer/vector',
            replyBytesMax: 1024 * 1024,
            signal: this.lifetime.signal,
          });
          for (const [o, s] of Object.entries(reply.vector ?? {})) {
            if (o === origin) seq = Math.max(seq, s);
            if (siteOfOrigin(o) === node.siteId) incarnationMax = Math.max(incarnationMax, incarnationOf(o));
          }
          break;
        } catch (e) {
          const wait = backoff.next();
          if (env.clock.monotonicMs() + wait >= deadline) {
            this.log.warn({ peer, err: (e as Error).message }, 'peer did not say how much of our origin it holds');
            return undefined;
          }
          await env.timers.sleep(wait, this.lifetime.signal).catch(() => undefined);
        }
      }
    }
    return { seq, incarnationMax };
  }

  private replicate(): void {
    const { env, node } = this.options;
    const gate = new RelayGate(this.options.relayDelayMs ?? limits.relayDelayMs, () => env.clock.monotonicMs(), node.origin, node.vector());
    this.relayGate = gate;
    for (const peer of this.peers) this.startPuller(peer);
    this.unsubscribe = node.onCommit(() => {
      gate.record(node.vector());
      for (const peer of this.peers) this.scheduleAck(peer, this.ackIntervalMs);
    });
    const beat = () => {
      if (this.stopped) return;
      for (const peer of this.peers) this.scheduleAck(peer, 1);
      const metrics = this.options.metrics;
      if (metrics) for (const [p, s] of Object.entries(this.peerStatus())) metrics.setPeer(p, s);
      this.heartbeat = env.timers.after(this.heartbeatMs, beat);
    };
    beat();
    this.antiEntropy.run();
    this.housekeeping.run();
  }

  private startPuller(peer: string): void {
    const { env, node } = this.options;
    {
      const url = this.peerUrls[peer]!;
      const puller = new PeerPuller({
        env,
        node,
        peer,
        peerUrl: url,
        auth: this.auth,
        heartbeatMs: this.heartbeatMs,
        onApplied: (entries) => this.ackWaitingOrigins(entries),
        // peers relay to this site by what it is connected to: tell them at once
        onConnectedChange: () => {
          for (const p of this.peers) this.scheduleAck(p, 1);
        },
      });
      this.pullers.set(peer, puller);
      void puller.run();
    }
  }

  /** Caught up (a joining site may become active): every current peer's link connected and nearly level. */
  caughtUp(lagEntriesMax = 100): boolean {
    const peers = this.peers;
    if (peers.length === 0 || this.relayGate === undefined) return false;
    return peers.every((p) => {
      const s = this.pullers.get(p)?.status();
      return s !== undefined && s.connected && s.lagEntries <= lagEntriesMax;
    });
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.lifetime.abort(new Error('stopping'));
    await this.starting?.catch(() => undefined);
    this.feeds.closeFeeds();
    this.unsubscribe?.();
    this.heartbeat?.cancel();
    for (const s of this.ackState.values()) s.timer?.cancel();
    for (const w of this.waiters) w.resolve(false);
    this.waiters.clear();
    await this.antiEntropy.stop();
    await this.housekeeping.stop();
    await Promise.all([...this.pullers.values()].map((p) => p.stop()));
  }

  peerStatus(): Record<string, PeerLinkStatus> {
    const out: Record<string, PeerLinkStatus> = {};
    for (const [peer, puller] of this.pullers) out[peer] = puller.status();
    return out;
  }

  /**
   * A peer that has everything `token` covers, if this site knows of one: from the feed it pulls
   * (connected), else from the peer's latest ack (durable there). Where a session read this site
   * cannot serve yet can be served now.
   */
  coveringPeer(token: VersionVector): string | undefined {
    const current = new Set(this.peers);
    for (const [peer, puller] of this.pullers) if (current.has(peer) && puller.isConnected && dominates(puller.peerHas(), token)) return peer;
    for (const [peer, ack] of this.acksReceived) if (current.has(peer) && dominates(ack.vector, token)) return peer;
    return undefined;
  }

  ready(): { ready: boolean; reason?: string } {
    const max = this.options.readyLagEntriesMax ?? 10_000;
    for (const [peer, s] of Object.entries(this.peerStatus()))
      if (s.connected && s.lagEntries > max) return { ready: false, reason: `catching up with ${peer}: ${s.lagEntries} entries behind` };
    return { ready: true };
  }

  acks(): ReadonlyMap<string, AckMessage> {
    return this.acksReceived;
  }

  /**
   * Resolves true once the write `dot` (of any origin: a repeated delete answers with the
   * tombstone's) is durable on enough data sites: a majority (`quorum`) or every one (`all`), this
   * site included; false after the timeout. A site counts only once its durable vector covers the
   * dot: this site by its own sync, a peer by its latest ack (acks carry durable vectors).
   */
  async awaitDurability(dot: Dot, level: 'quorum' | 'all'): Promise<boolean> {
    const { origin, seq } = parseDot(dot);
    // this site's own writes are durable here when acknowledged; another origin's once synced
    if (origin !== this.options.node.origin) await this.options.node.store.sync();
    if (this.durableEnough(origin, seq, level)) return true;
    return new Promise<boolean>((resolve) => {
      const waiter: DurabilityWaiter = { origin, seq, level, resolve: () => undefined };
      const timer = this.options.env.timers.after(this.options.quorumTimeoutMs ?? limits.quorumTimeoutMs, () => {
        this.waiters.delete(waiter);
        resolve(false);
      });
      waiter.resolve = (ok) => {
        timer.cancel();
        this.waiters.delete(waiter);
        resolve(ok);
      };
      this.waiters.add(waiter);
    });
  }

  /**
   * Whether a write of this durability can be confirmed now (checked before committing it): enough
   * data sites — this one, and peers heard from (a feed frame or an ack) within the last three
   * heartbeats — to make a quorum (or all). Otherwise 503 quorum-unavailable: nothing written.
   */
  quorumReachable(level: 'quorum' | 'all'): { ok: boolean; heard: number; needed: number } {
    const self = this.options.node.siteId;
    const since = this.options.env.clock.monotonicMs() - 3 * this.heartbeatMs;
    const heardFrom = (p: string) => p === self || (this.pullers.get(p)?.lastFrameMs ?? -Infinity) >= since || (this.lastAckMs.get(p) ?? -Infinity) >= since;
    // every membership in force (a joint quorum while data membership changes)
    const sets = this.options.quorumSets?.() ?? [[self, ...this.peers]];
    let heard = Infinity;
    let needed = 0;
    let ok = true;
    for (const m of sets) {
      const h = m.filter(heardFrom).length;
      const need = level === 'all' ? m.length : Math.floor(m.length / 2) + 1;
      if (h < need) ok = false;
      heard = Math.min(heard, h);
      needed = Math.max(needed, need);
    }
    return { ok, heard: Number.isFinite(heard) ? heard : 1, needed };
  }

  /**
   * Whether (origin, seq) is durable on enough data sites: `quorum`, a majority of every membership
   * in quorumSets (joint quorum); `all`, every site of them. Without quorumSets: this site and its
   * current peers. A site counts by its own durable vector (this one) or its latest ack.
   */
  private durableEnough(origin: string, seq: number, level: 'quorum' | 'all'): boolean {
    const self = this.options.node.siteId;
    const holds = (site: string) =>
      site === self ? (this.options.node.store.durableVector()[origin] ?? 0) >= seq : (this.acksReceived.get(site)?.vector[origin] ?? 0) >= seq;
    const sets = this.options.quorumSets?.() ?? [[self, ...this.peers]];
    return sets.every((m) => {
      const n = m.filter(holds).length;
      return level === 'all' ? n === m.length : n >= Math.floor(m.length / 2) + 1;
    });
  }

  /** A member added online (topology): pull from it, serve it, take its acks, without a restart. */
  addPeer(id: string, url: string): void {
    const { node } = this.options;
    if (id === node.siteId || this.stopped) return;
    this.knownSites.add(id);
    const target = this.options.peerUrls?.[id] ?? url;
    if (this.peerUrls[id] === target && this.pullers.has(id)) return;
    this.peerUrls[id] = target;
    // before replicate() runs, it starts a puller for every current peer itself
    if (this.relayGate !== undefined && !this.pullers.has(id) && this.peers.includes(id)) this.startPuller(id);
  }

  /** A member removed (topology): no puller, no acks, not waited for by housekeeping or quorums. */
  async removePeer(id: string): Promise<void> {
    if (id === this.options.node.siteId) return;
    const puller = this.pullers.get(id);
    this.pullers.delete(id);
    delete this.peerUrls[id];
    this.knownSites.delete(id);
    this.acksReceived.delete(id);
    this.ackState.get(id)?.timer?.cancel();
    this.ackState.delete(id);
    await puller?.stop();
  }

  private receiveAck(ack: AckMessage): void {
    if (!(ack.site in this.peerUrls)) return;
    this.acksReceived.set(ack.site, ack);
    this.lastAckMs.set(ack.site, this.options.env.clock.monotonicMs());
    this.relayGate?.observeAck(ack.site, ack.vector);
    this.pullers.get(ack.site)?.wake();
    for (const w of [...this.waiters]) if (this.durableEnough(w.origin, w.seq, w.level)) w.resolve(true);
  }

  /**
   * Entries whose origin waits for acks (quorum writes): ack their origins now, not lazily. After
   * a large batch (catching up), ack every peer now: their feeds then skip what came meanwhile.
   */
  private ackWaitingOrigins(entries: LogEntry[]): void {
    if (entries.length >= catchUpBatchEntries) {
      for (const p of this.peers) this.scheduleAck(p, 1);
      return;
    }
    for (const e of entries) {
      if (!e.awaitsAck) continue;
      const site = siteOfOrigin(e.origin);
      if (site in this.peerUrls) this.scheduleAck(site, 1);
    }
  }

  /** Sends this site's vector to `peer` within `delayMs` (coalescing: one ack in flight per peer). */
  private scheduleAck(peer: string, delayMs: number): void {
    if (this.stopped) return;
    let st = this.ackState.get(peer);
    if (!st) {
      st = { inFlight: false, again: undefined, timer: undefined, dueAtMs: 0 };
      this.ackState.set(peer, st);
    }
    if (st.inFlight) {
      st.again = Math.min(st.again ?? Infinity, delayMs);
      return;
    }
    const now = this.options.env.clock.monotonicMs();
    if (st.timer && st.dueAtMs <= now + delayMs) return;
    st.timer?.cancel();
    const state = st;
    state.dueAtMs = now + delayMs;
    state.timer = this.options.env.timers.after(delayMs, () => {
      state.timer = undefined;
      void this.sendAck(peer, state);
    });
  }

  private async sendAck(peer: string, st: AckState): Promise<void> {
    const { env, node } = this.options;
    st.inFlight = true;
    const path = '/v1/peer/ack';
    // an ack says "durable here": what was applied without a sync is synced first
    let vector: VersionVector;
    try {
      vector = await node.store.sync();
    } catch (e) {
      this.log.error({ err: (e as Error).message }, 'sync before ack failed');
      st.inFlight = false;
      return;
    }
    const direct = [...this.pullers].filter(([, p]) => p.isConnected).map(([id]) => id);
    const ack: AckMessage = { v: protocolVersion, site: node.siteId, vector, origin: node.origin, ownSeq: vector[node.origin] ?? 0, direct };
    const ac = new AbortController();
    const timeout = env.timers.after(limits.peerRequestTimeoutMs, () => ac.abort(new Error('ack timed out')));
    try {
      const res = await env.transport.request({
        method: 'POST',
        url: `${this.peerUrls[peer]}${path}`,
        headers: { 'content-type': 'application/msgpack', [peerHeader]: signPeerRequest(this.auth, node.siteId, env.clock.wallMs(), 'POST', path) },
        body: encodeMessage(ack),
        signal: ac.signal,
      });
      await readBody(res.body, 64 * 1024);
    } catch (e) {
      this.log.debug({ peer, err: (e as Error).message }, 'ack not delivered');
    } finally {
      timeout.cancel();
      st.inFlight = false;
      const again = st.again;
      st.again = undefined;
      if (again !== undefined) this.scheduleAck(peer, again);
    }
  }
}
