// The topology driver of one site (ARCHITECTURE.md, "Topology, leases and failover"): its voter,
// its lease, the ownership checks the write path makes, and the moves of ownership — automatic
// when an owner's lease lapses at a majority, or asked by an operator.
//
// A move is two epochs. `revoke` takes the units away from their owner (nobody may write them);
// voters stop granting the old owner anything that covers them, because they grant only at their
// newest epoch. `install` gives each unit its new owner, with the cut: proposed by the new owner
// once a majority of voters vouch that the old lease has certainly expired (each has gone
// L·(1+ρ)/(1−ρ) on its own monotonic clock since its last grant at an epoch where the old owner
// held the units), and once it holds durably every entry of the old owner's origins that a read
// quorum of data sites holds (the cut). Entries of the old owner beyond the cut are void.
import { RequestError } from '../core/errors.js';
import { dominates, joinVectors, siteOfOrigin, type VersionVector } from '../core/vector.js';
import type { ClusterConfig, TableConfig } from '../config/schema.js';
import type { Env } from '../platform/env.js';
import { Periodic } from '../platform/periodic.js';
import { Backoff } from '../platform/backoff.js';
import { limits } from '../limits.js';
import type { Store } from '../store/types.js';
import { callPeer } from '../replication/peer-call.js';
import type { PeerAuthConfig } from '../replication/auth.js';
import { msgpackResponse, problem } from '../replication/feed-server.js';
import { decodeMessage } from '../replication/protocol.js';
import type { IncomingRequest, TransportResponse } from '../platform/env.js';
import { LeaseHolder } from './lease.js';
import { partitionOf, type HomeDirectory, type HomeResolveMode } from './home-registry.js';
import { grantAgeMs, propose, silentForMs, Voter, type VoterReply, type VoterRequest, type VoterStorage, type VoterView } from './paxos.js';
import {
  addCut,
  cutSeq,
  cutsBounding,
  dataSites,
  entryCounts,
  genesisTopology,
  isTopology,
  majority,
  member,
  movesAway,
  nextTopology,
  ownerAt,
  ownerOfUnit,
  setOwner,
  splitUnit,
  unitOf,
  units,
  unitsOwnedBy,
  voters,
  type Topology,
} from './record.js';
import { activate, addJoining, additionRefusals, cutMemberships, markDown, markUp, noteVoterChange, readQuorumOfEach, removalRefusals, removedOriginCounts, removeMember } from './members.js';
import { describeForced, forcedRecord, planForced, unreachableMembers, type ForcedPlan, type ForcedProbe } from './forced.js';

/** What the write path asks of topology (SiteNode). */
export interface Ownership {
  /** the newest epoch this site knows */
  epoch(): number;
  /** The unit an item belongs to, or undefined for a `local` table. Throws 400 for a key naming no partition. */
  unitFor(table: string, config: TableConfig, key: string): string | undefined;
  /** The unit's owner now (null: being moved). */
  ownerOf(unit: string): string | null;
  /** Admits a write of these units here: the epoch of the lease it is admitted under. Throws 503 otherwise. */
  admit(units: string[]): number;
  /** Whether a write of these units admitted under `epoch` may be acknowledged now. */
  acknowledgeable(units: string[], epoch: number): boolean;
  /** Whether an owned item of entry (origin, seq, epoch) counts (not void). */
  counts(unit: string, origin: string, seq: number, epoch: number): boolean;
  /** Learns the record of `epoch` (or newer) from the voters; false if none has it. */
  learnEpoch(epoch: number): Promise<boolean>;
  /** Throws 503 unless this site may serve a strong read of the unit now: owner, lease valid, cut held. */
  assertStrongReadable(unit: string): void;
  /** Whether entry (origin, seq) counts by membership: false beyond a removed site's final cut (members.ts). */
  originCounts?(origin: string, seq: number): boolean;
  /** Makes the first-writer homes of these items known here before unitFor is asked (home-registry.ts). */
  resolveHomes?(items: { table: string; key: string }[], mode: HomeResolveMode): Promise<void>;
  /**
   * Whether an owned item's dot (origin, seq) counts when its entry, and so its epoch, is not at
   * hand (an item state from anti-entropy or a snapshot): false when seq is beyond the cut of a move
   * of the unit away from site(origin) and the unit never went back to that site since; undefined
   * when it is beyond such a cut but the unit went back since (only the entry's epoch can tell).
   */
  dotCounts?(unit: string, origin: string, seq: number): boolean | undefined;
  /** The cuts that bound `origin` (record.ts cutsBounding): where a site looks for its own writes a move made void. */
  cutsOf?(origin: string): { epoch: number; seq: number }[];
}

/** What the driver needs of its site. */
export interface TopologyHost {
  siteId: string;
  store: Store;
  /** pull from every peer now, without waiting out backoffs or relay delays (a promotion) */
  wakePulls(): void;
  /** whether this site has caught up with its peers (a joining site becomes active then) */
  caughtUp?: () => boolean;
  /** whether it has caught up with these sites (a `down` site becomes active again then; default: caughtUp) */
  caughtUpWith?: (sites: string[]) => boolean;
  /** the highest seq of each origin this site has heard of: applied here, or reported by a peer (forced failover's report) */
  heardVector?: () => VersionVector;
}

export interface TopologyServiceOptions {
  env: Env;
  config: ClusterConfig;
  host: TopologyHost;
  auth: PeerAuthConfig;
  storage: VoterStorage;
  /** how to reach each member (defaults: the config's URLs; tests and drills route through proxies) */
  urls?: Record<string, string>;
  /** how long a new owner waits to hold the cut durably before it gives up this attempt */
  promotionWaitMs?: number;
  /** weakened rules, only for simulation tests that show a check catches their absence */
  unsafe?: { expiryMs?: number };
}

/** One entry of a failover plan: a unit, who has it, who gets it. */
export interface MovePlan {
  unit: string;
  from: string | null;
  to: string;
}

export class TopologyService implements Ownership {
  readonly id = 'topology';
  readonly voter: Voter;
  private readonly lease: LeaseHolder;
  private readonly leaseMs: number;
  private readonly tickMs: number;
  private readonly renewMs: number;
  /** L·(1+ρ)/(1−ρ): how long after its last grant a voter vouches that a lease has expired */
  readonly expiryMs: number;
  /** how long a voter waits for a holder's first renewal after the voter started before it counts as lapsed */
  private readonly startGraceMs: number;
  /** each voter's latest view, and when (monotonic) it came */
  private readonly views = new Map<string, { view: VoterView; atMs: number }>();
  private readonly ticker: Periodic;
  private renewing = false;
  private lastRenewSentMs = -Infinity;
  private installing = false;
  private revoking = false;
  private stopped = false;
  /** shutting down: handing its units over, accepting none (handover-target), not re-activating itself */
  private stopping = false;
  private markingDown = false;
  private readonly lifetime = new AbortController();
  /** voter calls in flight: aborted by stop() */
  private readonly inFlight = new Set<AbortController>();
  /** per unit: the install epoch whose cut this site verified it holds durably */
  private readonly promoted = new Map<string, number>();
  private readonly listeners = new Set<(t: Topology) => void>();
  /** the site's registry of first-writer homes (site/home-registry.ts) */
  private homeDirectory: HomeDirectory | undefined;
  private readonly log;

  constructor(private readonly options: TopologyServiceOptions) {
    const { env, config } = options;
    this.log = env.log.child({ component: 'topology' });
    const t = config.topology;
    this.leaseMs = t.leaseMs;
    this.tickMs = Math.max(10, Math.floor(t.leaseMs / 8));
    this.renewMs = Math.max(20, Math.floor(t.leaseMs / 4));
    this.expiryMs = options.unsafe?.expiryMs ?? Math.ceil((t.leaseMs * (1 + t.driftRateMax)) / (1 - t.driftRateMax));
    this.startGraceMs = Math.max(3 * t.leaseMs, limits.ownerStartGraceMs);
    this.lease = new LeaseHolder(env.clock, this.leaseMs, this.tickMs);
    this.voter = new Voter({
      id: options.host.siteId,
      storage: options.storage,
      genesis: genesisTopology(config),
      monotonicMs: () => env.clock.monotonicMs(),
      restartQuietMs: () => this.expiryMs,
      onDecided: (record) => this.decided(record),
    });
    this.ticker = new Periodic(env.timers, this.log, 'topology-tick', this.tickMs, async () => this.tick());
  }

  get siteId(): string {
    return this.options.host.siteId;
  }

  record(): Topology {
    return this.voter.decided;
  }

  epoch(): number {
    return this.record().epoch;
  }

  onChange(listener: (t: Topology) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  run(): void {
    this.ticker.start();
    void this.renew();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.lifetime.abort(new Error('stopping'));
    for (const ac of this.inFlight) ac.abort(new Error('stopping'));
    await this.ticker.stop();
  }

  /** The peer routes: voter requests, and the durable vector a cut reads. */
  routes(): Record<string, (req: IncomingRequest, from: string) => Promise<TransportResponse>> {
    return {
      'POST /v1/peer/topology': async (req) => {
        const msg = decodeMessage<VoterRequest>(req.body);
        if (!isVoterRequest(msg)) return problem(400, 'bad-request', 'malformed topology request');
        return msgpackResponse(200, await this.voter.handle(msg));
      },
      'POST /v1/peer/topology/durable-vector': async () =>
        msgpackResponse(200, { vector: await this.options.host.store.sync(), ...(this.options.host.heardVector ? { heard: this.options.host.heardVector() } : {}) }),
      // before a handover on shutdown: a target that is stopping too (tandem up stops every site at once) says no
      'POST /v1/peer/topology/handover-target': async () => {
        const me = member(this.record(), this.siteId);
        const accepting = !this.stopping && !this.stopped && me?.state === 'active';
        return msgpackResponse(200, { accepting, ...(accepting ? {} : { reason: this.stopping || this.stopped ? `${this.siteId} is stopping` : `${this.siteId} is ${me?.state ?? 'not a member'}` }) });
      },
      // switchover step 2, at the old owner: fence (by learning the handover epoch), drain, reply s
      'POST /v1/peer/topology/fence': async (req) => {
        const msg = decodeMessage<{ record?: unknown }>(req.body);
        if (!isTopology(msg.record)) return problem(400, 'bad-request', 'malformed fence request');
        await this.learn(msg.record);
        const h = this.record().handover;
        if (h === undefined || h.from !== this.siteId) return problem(409, 'no-handover', `no handover from ${this.siteId} at epoch ${this.epoch()}`);
        // every build from now on sees the fence; everything numbered before is committed: sync it
        return msgpackResponse(200, { vector: await this.options.host.store.sync() });
      },
      // switchover step 3, at the new owner: hold the old owner's entries up to s durably
      'POST /v1/peer/topology/hold': async (req) => {
        const msg = decodeMessage<{ vector?: unknown; waitMs?: unknown }>(req.body);
        if (msg.vector === null || typeof msg.vector !== 'object' || typeof msg.waitMs !== 'number') return problem(400, 'bad-request', 'malformed hold request');
        try {
          await this.holdDurably(msg.vector as VersionVector, Math.min(msg.waitMs, 60_000));
          return msgpackResponse(200, { ok: true });
        } catch (e) {
          return problem(409, 'not-caught-up', (e as Error).message);
        }
      },
    };
  }

  useHomeDirectory(directory: HomeDirectory): void {
    this.homeDirectory = directory;
  }

  resolveHomes(items: { table: string; key: string }[], mode: HomeResolveMode): Promise<void> {
    return this.homeDirectory?.resolve(items, mode) ?? Promise.resolve();
  }

  // ---- the write path -------------------------------------------------------------------------

  unitFor(table: string, config: TableConfig, key: string): string | undefined {
    if (config.pattern === 'local') return undefined;
    if (config.pattern === 'global') return unitOf(table);
    const home = config.home!;
    if (home.from === 'first-writer') {
      // the partition's home site names its unit; who owns that unit now is the topology's
      const partition = partitionOf(table, home.separator, key);
      const site = this.homeDirectory?.homeOf(table, partition);
      if (site === undefined)
        throw RequestError.unavailable('home-assignment-unavailable', `the home of partition "${partition}" of table ${table} is not known at ${this.siteId} yet; nothing was written: retry shortly`, 1);
      if (!(site in (this.record().homes[table] ?? {})))
        throw RequestError.unavailable('home-assignment-unavailable', `partition "${partition}" of table ${table} is homed at ${site}, which has no unit of ${table} at epoch ${this.epoch()}`, 5);
      return unitOf(table, site);
    }
    const i = key.indexOf(home.separator);
    if (i <= 0)
      throw RequestError.badRequest(`key must start with a home site or region followed by "${home.separator}" (table ${table} is partitioned by key prefix)`, [
        { path: 'key', message: `expected <site or region>${home.separator}<id>` },
      ]);
    const partition = key.slice(0, i);
    const homes = this.record().homes[table] ?? {};
    if (!(partition in homes))
      throw RequestError.badRequest(`key prefix "${partition}" names no partition of table ${table}`, [
        { path: 'key', message: `unknown home ${partition}; expected one of ${Object.keys(homes).join(', ')}` },
      ]);
    return unitOf(table, partition);
  }

  ownerOf(unit: string): string | null {
    return ownerOfUnit(this.record(), unit) ?? null;
  }

  admit(list: string[]): number {
    const rec = this.record();
    const self = this.siteId;
    for (const unit of list) {
      const owner = ownerOfUnit(rec, unit);
      if (owner !== self)
        throw RequestError.unavailable(
          'owner-changed',
          owner === null || owner === undefined
            ? `${unit} is being moved to a new owner (epoch ${rec.epoch}); nothing was written: retry shortly`
            : `${unit} is owned by ${owner} since epoch ${rec.epoch}, not ${self}; nothing was written`,
        );
      if (rec.handover?.from === self && rec.handover.units.includes(unit))
        throw new RequestError(503, 'owner-changed', 'Service unavailable', `${unit} is being handed over to ${rec.handover.to}; nothing was written`, [], { retryAfterS: 1, parked: true });
      const install = lastInstall(rec, unit);
      if (install > 0 && this.promoted.get(unit) !== install) this.checkPromoted();
      if (install > 0 && this.promoted.get(unit) !== install)
        throw RequestError.unavailable('owner-changed', `${self} took over ${unit} at epoch ${install} and is still pulling the entries up to its cut; nothing was written`);
    }
    const lease = this.lease.remaining();
    if (lease === undefined || lease.ms < this.options.config.topology.commitBudgetMs)
      throw RequestError.unavailable('owner-changed', `the owner ${self} holds no lease with time left to commit (it is renewing); nothing was written: retry shortly`);
    for (const unit of list)
      if (!ownedThrough(rec, unit, self, lease.epoch))
        throw RequestError.unavailable('owner-changed', `the lease of ${self} (epoch ${lease.epoch}) does not cover ${unit} yet; nothing was written: retry shortly`);
    return lease.epoch;
  }

  assertStrongReadable(unit: string): void {
    const rec = this.record();
    if (ownerOfUnit(rec, unit) !== this.siteId)
      throw RequestError.unavailable('owner-changed', `${this.siteId} does not own ${unit} at epoch ${rec.epoch}: a strong read goes to its owner`);
    const install = lastInstall(rec, unit);
    if (install > 0 && this.promoted.get(unit) !== install) this.checkPromoted();
    if (install > 0 && this.promoted.get(unit) !== install)
      throw RequestError.unavailable('owner-changed', `${this.siteId} took over ${unit} at epoch ${install} and is still pulling the entries up to its cut`);
    const lease = this.lease.remaining();
    if (lease === undefined || !ownedThrough(rec, unit, this.siteId, lease.epoch))
      throw RequestError.unavailable('owner-changed', `the owner ${this.siteId} holds no valid lease covering ${unit} (it is renewing): a strong read is not served without one`);
  }

  acknowledgeable(list: string[], epoch: number): boolean {
    const lease = this.lease.remaining();
    if (lease === undefined) return false;
    const rec = this.record();
    return list.every((unit) => ownedThrough(rec, unit, this.siteId, epoch) && ownerOfUnit(rec, unit) === this.siteId);
  }

  counts(unit: string, origin: string, seq: number, epoch: number): boolean {
    return entryCounts(this.record(), unit, origin, seq, epoch);
  }

  originCounts(origin: string, seq: number): boolean {
    return removedOriginCounts(this.record(), origin, seq);
  }

  dotCounts(unit: string, origin: string, seq: number): boolean | undefined {
    return dotCountsWithoutEpoch(this.record(), unit, origin, seq);
  }

  cutsOf(origin: string): { epoch: number; seq: number }[] {
    return cutsBounding(this.record(), origin);
  }

  async learnEpoch(epoch: number): Promise<boolean> {
    if (this.epoch() >= epoch) return true;
    const replies = await Promise.all(voters(this.record()).map((v) => this.call(v, { kind: 'fetch', epoch }, this.leaseMs).catch(() => undefined)));
    for (const r of replies) if (r?.kind === 'newer' && isTopology(r.record)) await this.learn(r.record);
    return this.epoch() >= epoch;
  }

  /** ms left on this site's lease (0 without one). */
  leaseRemainingMs(): number {
    return this.lease.remaining()?.ms ?? 0;
  }

  /** Ready for traffic as far as topology goes: the first lease round came back, owned units promoted. */
  readiness(): { ready: boolean; reason?: string } {
    const me = member(this.record(), this.siteId);
    if (me?.state === 'draining' || me?.state === 'evacuated') return { ready: false, reason: `${me.state}: this site is being drained by an operator` };
    if (me?.state === 'removed') return { ready: false, reason: 'removed from the cluster' };
    if (me?.state === 'joining') return { ready: false, reason: 'joining: catching up with its peers before it serves' };
    if (me?.state === 'down') return { ready: false, reason: `down since epoch ${lastStateChange(this.record(), this.siteId)}: catching up with the active sites before it serves again` };
    return { ready: true };
  }

  // ---- leases ----------------------------------------------------------------------------------

  private tick(): void {
    if (this.stopped) return;
    this.lease.tick();
    this.checkPromoted();
    const now = this.options.env.clock.monotonicMs();
    if (!this.renewing && now - this.lastRenewSentMs >= this.renewMs) void this.renew();
    if (this.options.config.topology.autoFailover) void this.detectLapses();
    if (this.options.config.topology.autoFailover && this.options.config.topology.degradedDurability === 'allow') void this.markDownLapsed();
    void this.installPending();
    void this.activateSelf();
  }

  /** One lease round; `now`: even while another is in flight (a new epoch: a lease at it is wanted at once). */
  private async renew(now = false): Promise<void> {
    if ((this.renewing && !now) || this.stopped) return;
    this.renewing = true;
    const { clock } = this.options.env;
    const sentMono = clock.monotonicMs();
    const sentWall = clock.wallMs();
    this.lastRenewSentMs = sentMono;
    const rec = this.record();
    const vs = voters(rec);
    const need = majority(vs.length);
    let granted = 0;
    try {
      await new Promise<void>((resolve) => {
        let settled = 0;
        for (const v of vs) {
          const ask = () => this.call(v, { kind: 'lease', holder: this.siteId, epoch: rec.epoch }, this.leaseMs / 2);
          ask()
            .then(async (first) => {
              let reply = first;
              // a voter behind this site's epoch learns it, then is asked again in the same round
              // (the round's sentAt is earlier than either grant, so the lease is still sound)
              if (reply.kind === 'lease' && reply.record === undefined && reply.view.epoch < rec.epoch) {
                await this.call(v, { kind: 'learn', record: rec }, this.leaseMs / 2);
                reply = await ask();
              }
              if (reply.kind !== 'lease') return;
              this.views.set(reply.view.voter, { view: reply.view, atMs: this.options.env.clock.monotonicMs() });
              if (reply.record !== undefined && isTopology(reply.record)) void this.learn(reply.record);
              if (reply.granted && ++granted === need) {
                this.lease.granted(rec.epoch, sentMono, sentWall);
                // the round is won: the next may start; answers still coming update the views
                resolve();
              }
            })
            .catch(() => undefined)
            .finally(() => {
              if (++settled === vs.length) resolve();
            });
        }
      });
    } finally {
      this.renewing = false;
    }
    // the views just refreshed: judge lapses on them rather than on the previous round's
    if (this.options.config.topology.autoFailover && !this.stopped) void this.detectLapses();
  }

  private async learn(record: Topology): Promise<void> {
    if (record.epoch > this.record().epoch) await this.voter.handle({ kind: 'learn', record });
  }

  private decided(record: Topology): void {
    this.log.info({ epoch: record.epoch, last: record.history[record.history.length - 1] }, 'topology epoch decided');
    for (const l of this.listeners) l(record);
    if (!this.stopped) {
      void this.renew(true);
      // a revoke whose units come here: install without waiting for the next tick
      void this.installPending();
    }
  }

  private call(voter: string, req: VoterRequest, timeoutMs = this.leaseMs): Promise<VoterReply> {
    if (voter === this.siteId) return this.voter.handle(req);
    const url = this.urlOf(voter);
    if (url === undefined) return Promise.reject(new Error(`no URL for voter ${voter}`));
    const ac = new AbortController();
    const timer = this.options.env.timers.after(timeoutMs, () => ac.abort(new Error('timeout')));
    this.inFlight.add(ac);
    return callPeer<VoterReply>({
      env: this.options.env,
      auth: this.options.auth,
      from: this.siteId,
      peer: voter,
      peerUrl: url,
      method: 'POST',
      path: '/v1/peer/topology',
      body: req,
      replyBytesMax: 16 << 20,
      signal: ac.signal,
    }).finally(() => {
      timer.cancel();
      this.inFlight.delete(ac);
    });
  }

  private urlOf(id: string): string | undefined {
    return this.options.urls?.[id] ?? member(this.record(), id)?.url ?? this.options.config.sites.find((s) => s.id === id)?.url ?? this.options.config.witnesses.find((w) => w.id === id)?.url;
  }

  /** Fresh views of the voters (for vouching): as soon as `enough` of them vouch, or every call settled. */
  private async freshViews(enough: (views: VoterView[]) => boolean): Promise<VoterView[]> {
    const vs = voters(this.record());
    const out: VoterView[] = [];
    await this.answersUntil(vs, (v) => this.call(v, { kind: 'view' }, this.leaseMs / 2), (r) => {
      if (r.kind === 'view') out.push(r.view);
      return enough(out);
    });
    return out;
  }

  /**
   * Calls each of `targets`; resolves once `onAnswer` says enough came (plus a short grace for the
   * rest, which cost nothing to wait for when they are alive), or once every call settled: a dead or
   * cut-off member must not hold a failover up for its timeout.
   */
  private answersUntil<T>(targets: string[], call: (t: string) => Promise<T>, onAnswer: (answer: T) => boolean): Promise<void> {
    const graceMs = Math.max(5, Math.floor(this.leaseMs / 20));
    return new Promise((resolve) => {
      let settled = 0;
      let done = false;
      const finish = () => {
        if (done) return;
        done = true;
        resolve();
      };
      if (targets.length === 0) finish();
      for (const t of targets)
        call(t)
          .then((a) => {
            if (!done && onAnswer(a)) this.options.env.timers.after(graceMs, finish);
          })
          .catch(() => undefined)
          .finally(() => {
            if (++settled === targets.length) finish();
          });
    });
  }

  /** A voter's view if it came within the last half lease (older ones say nothing about now). */
  private freshView(voter: string, maxAgeMs = this.leaseMs / 2): VoterView | undefined {
    const v = this.views.get(voter);
    return v !== undefined && this.options.env.clock.monotonicMs() - v.atMs <= maxAgeMs ? v.view : undefined;
  }

  /** Whether `site`'s lease has lapsed at a majority of voters: none granted it anything for L while granting. */
  private lapsedAtMajority(site: string): boolean {
    // a holder this voter has not granted since it started may just be starting itself: it gets
    // a few leases' time first (a cluster whose sites start seconds apart must not fail over)
    return this.silentAtMajority(site, (never) => (never ? this.startGraceMs : this.leaseMs));
  }

  /** Whether a majority of voters (views at most `maxAgeMs` old) granted `site` nothing for `forMs(never granted since the voter started)`. */
  private silentAtMajority(site: string, forMs: (never: boolean) => number, maxAgeMs = this.leaseMs / 2): boolean {
    const vs = voters(this.record());
    let silent = 0;
    for (const v of vs) {
      const view = this.freshView(v, maxAgeMs);
      if (view !== undefined && silentForMs(view, site) >= forMs((view.grants[site] ?? []).length === 0)) silent++;
    }
    return silent >= majority(vs.length);
  }

  /** Alive by the voters: granted a lease within L at a majority (this site: holds one). */
  private aliveAtMajority(site: string): boolean {
    if (site === this.siteId) return this.lease.remaining() !== undefined;
    const vs = voters(this.record());
    let fresh = 0;
    for (const v of vs) {
      const view = this.freshView(v);
      if (view !== undefined && (view.grants[site] ?? []).some((g) => g.ageMs < this.leaseMs)) fresh++;
    }
    return fresh >= majority(vs.length);
  }

  // ---- moves ----------------------------------------------------------------------------------

  /** The site a unit goes to when its owner fails: the first serving, live site in the table's failoverOrder. */
  candidateFor(unit: string, excluding: string | null): string | undefined {
    const rec = this.record();
    const target = rec.targets?.[unit];
    if (target !== undefined) return target;
    const { table } = splitUnit(unit);
    const order = this.options.config.tables[table]?.failoverOrder ?? this.options.config.sites.map((s) => s.id);
    // then any other data site (members added online are in no config list)
    const sites = [...order, ...rec.members.filter((m) => m.kind === 'site').map((m) => m.id)];
    for (const s of sites) {
      if (s === excluding) continue;
      const m = member(rec, s);
      if (m?.kind !== 'site' || m.state !== 'active') continue;
      if (this.aliveAtMajority(s)) return s;
    }
    return undefined;
  }

  private revokeInFlight: Promise<unknown> | undefined;

  /** Automatic failover, step 1: an owner whose lease lapsed at a majority loses its units. */
  private async detectLapses(): Promise<void> {
    if (this.revoking) return;
    const rec = this.record();
    const owners = new Set(units(rec).map((u) => u.owner).filter((o): o is string => o !== null && o !== this.siteId));
    for (const owner of owners) {
      if (!this.lapsedAtMajority(owner)) continue;
      // only the site the first of its units would go to acts, so that sites do not race
      const mine = unitsOwnedBy(rec, owner).some((u) => this.candidateFor(u, owner) === this.siteId);
      if (!mine) continue;
      this.revoking = true;
      this.revokeInFlight = this.revoke(owner, undefined, { by: this.siteId, why: `the lease of ${owner} lapsed at a majority of voters` })
        .catch((e: unknown) => this.log.warn({ owner, err: (e as Error).message }, 'automatic revoke failed; will retry'))
        .finally(() => (this.revoking = false));
      await this.revokeInFlight;
      return;
    }
  }

  /** Takes `unitsToMove` (default: all) away from `from`; `targets` names who takes each. */
  async revoke(from: string, unitsToMove: string[] | undefined, who: { by: string; why: string }, targets?: Record<string, string>): Promise<Topology> {
    return this.propose((cur) => {
      const moving = (unitsToMove ?? unitsOwnedBy(cur, from)).filter((u) => ownerOfUnit(cur, u) === from);
      if (moving.length === 0) return undefined;
      return nextTopology(
        cur,
        (d) => {
          for (const u of moving) setOwner(d, u, null);
          // a handover from the site that lost them will not complete (the unplanned path took over)
          if (d.handover?.from === from) delete d.handover;
          if (targets !== undefined) {
            d.targets ??= {};
            for (const u of moving) if (targets[u] !== undefined) d.targets[u] = targets[u]!;
          }
        },
        { action: 'revoke', by: who.by, why: who.why, atMs: Math.floor(this.options.env.clock.wallMs()), detail: `${moving.join(', ')} from ${from}` },
      );
    });
  }

  /** Automatic failover, step 2: revoked units whose new owner is this site are installed here. */
  private async installPending(): Promise<void> {
    if (this.installing) return;
    const rec = this.record();
    const mine = units(rec)
      .filter((u) => u.owner === null)
      .map((u) => ({ unit: u.unit, from: previousOwner(rec, u.unit) }))
      .filter((u) => this.candidateFor(u.unit, u.from) === this.siteId);
    if (mine.length === 0) return;
    this.installing = true;
    try {
      await this.install(mine);
    } catch (e) {
      this.log.warn({ units: mine.map((u) => u.unit), err: (e as Error).message }, 'promotion not possible yet; will retry');
    } finally {
      this.installing = false;
    }
  }

  private async install(moves: { unit: string; from: string | null }[]): Promise<Topology> {
    const rec = this.record();
    const revokedAt = new Map(moves.map((m) => [m.unit, lastChangeEpoch(rec, m.unit)]));
    const formers = new Set(moves.map((m) => m.from).filter((f): f is string => f !== null));
    // 1. every voter majority vouches that the former owners' leases covering these units expired
    const need = majority(voters(rec).length);
    for (const from of formers) {
      const below = Math.max(...moves.filter((m) => m.from === from).map((m) => revokedAt.get(m.unit)!));
      const vouches = (v: VoterView) => !v.quiet && grantAgeMs(v, from, below) >= this.expiryMs;
      const views = await this.freshViews((vs) => vs.filter(vouches).length >= need);
      const vouching = views.filter(vouches).length;
      if (vouching < need)
        throw new Error(`waiting for ${from}'s lease to expire at a majority of voters (${vouching} vouch so far)`);
    }
    // 2. the cut: what a read quorum of data sites holds durably of the former owners' origins
    const cutSites = new Set([...formers, this.siteId]);
    const cut = await this.readCut(cutSites);
    // 3. hold it durably here before the first write; whatever of those origins this site applied
    // meanwhile joins the cut (it holds it, and entries it applied must count)
    await this.holdDurably(cut);
    for (const [o, seq] of Object.entries(await this.options.host.store.sync())) if (cutSites.has(siteOfOrigin(o)) && seq > (cut[o] ?? 0)) cut[o] = seq;
    const installed = await this.propose((cur) => {
      const still = moves.filter((m) => ownerOfUnit(cur, m.unit) === null && this.candidateFor(m.unit, m.from) === this.siteId);
      if (still.length === 0) return undefined;
      return nextTopology(
        cur,
        (d) => {
          for (const m of still) {
            setOwner(d, m.unit, this.siteId);
            if (d.targets) delete d.targets[m.unit];
          }
          if (d.targets && Object.keys(d.targets).length === 0) delete d.targets;
          addCut(d, cutSites, cut);
        },
        { action: 'install', by: this.siteId, why: `promoted after ${[...formers].join(', ') || 'a revoke'}`, atMs: Math.floor(this.options.env.clock.wallMs()), detail: `${still.map((m) => m.unit).join(', ')} to ${this.siteId}` },
      );
    });
    for (const m of moves) if (ownerOfUnit(installed, m.unit) === this.siteId) this.promoted.set(m.unit, lastInstall(installed, m.unit));
    void this.renew(true);
    return installed;
  }

  /** The pointwise max of durable vectors of at least N−Q+1 data sites (this one included), over `sites`' origins. */
  private async readCut(sites: Set<string>, everyReachable = false): Promise<VersionVector> {
    const rec = this.record();
    // a read quorum of every data membership in force since the changes kept (joint quorums)
    const sets = cutMemberships(rec);
    const data = [...new Set(sets.flat())];
    const answered = new Set([this.siteId]);
    const own = await this.options.host.store.sync();
    const vectors: VersionVector[] = [own];
    const others = data.filter((s) => s !== this.siteId && member(rec, s)?.state !== 'removed');
    await this.answersUntil(
      others,
      (s) => {
        const url = this.urlOf(s);
        if (url === undefined) return Promise.reject(new Error(`no URL for ${s}`));
        const ac = new AbortController();
        const timer = this.options.env.timers.after(this.leaseMs, () => ac.abort(new Error('timeout')));
        return callPeer<{ vector: VersionVector }>({
          env: this.options.env,
          auth: this.options.auth,
          from: this.siteId,
          peer: s,
          peerUrl: url,
          method: 'POST',
          path: '/v1/peer/topology/durable-vector',
          replyBytesMax: 1 << 20,
          signal: ac.signal,
        })
          .then((r) => ({ ...r, site: s }))
          .finally(() => timer.cancel());
      },
      (r) => {
        if (r.vector !== null && typeof r.vector === 'object') {
          vectors.push(r.vector);
          answered.add(r.site);
        }
        // a removal's final cut waits for every reachable data site (answersUntil ends once all settled)
        return !everyReachable && readQuorumOfEach(sets, answered);
      },
    );
    if (!readQuorumOfEach(sets, answered))
      throw new Error(`the cut needs the durable vectors of a read quorum of each data membership (${sets.map((m) => `[${m.join(', ')}]`).join(' and ')}); only ${[...answered].join(', ')} answered`);
    const out: VersionVector = {};
    for (const v of vectors) for (const [o, s] of Object.entries(joinVectors({}, v))) if (sites.has(siteOfOrigin(o)) && s > (out[o] ?? 0)) out[o] = s;
    return out;
  }

  /**
   * A unit this site was installed as owner of (after a restart too) is written only once the
   * site's durable vector covers that install's cut.
   */
  private checkPromoted(): void {
    const rec = this.record();
    let durable: VersionVector | undefined;
    for (const unit of unitsOwnedBy(rec, this.siteId)) {
      const install = lastInstall(rec, unit);
      if (install === 0 || this.promoted.get(unit) === install) continue;
      durable ??= this.options.host.store.durableVector();
      const cut = rec.cuts.filter((c) => c.epoch === install);
      if (cut.every((c) => (durable![c.origin] ?? 0) >= c.seq)) this.promoted.set(unit, install);
      else this.options.host.wakePulls();
    }
  }

  private async holdDurably(cut: VersionVector, waitMs = this.options.promotionWaitMs ?? 10_000): Promise<void> {
    const { env, host } = this.options;
    const deadline = env.clock.monotonicMs() + waitMs;
    for (;;) {
      const durable = await host.store.sync();
      if (dominates(durable, cut)) return;
      if (env.clock.monotonicMs() >= deadline || this.stopped) {
        const missing = Object.entries(cut).filter(([o, s]) => (durable[o] ?? 0) < s).map(([o, s]) => `${o}: holds ${durable[o] ?? 0} of ${s}`);
        throw new Error(`promotion blocked: this site does not hold the cut durably (${missing.join('; ')})`);
      }
      host.wakePulls();
      await env.timers.sleep(20, this.lifetime.signal).catch(() => undefined);
    }
  }

  private propose(change: (cur: Topology) => Topology | undefined): Promise<Topology> {
    const backoff = new Backoff(this.options.env.random, 20, 500);
    return propose(
      {
        self: this.siteId,
        call: (v, req) => this.call(v, req),
        known: () => this.record(),
        learn: (r) => void this.learn(r),
        backoff: () => this.options.env.timers.sleep(backoff.next(), this.lifetime.signal),
        // a stopping site (its handover on SIGTERM) gives up soon when no majority answers: when a
        // whole cluster stops at once, its peers are gone and twenty attempts only delay its exit
        ...(this.stopping ? { attemptsMax: 4 } : {}),
      },
      change,
    );
  }

  // ---- degraded durability (members.ts, quorumMembers) ----------------------------------------

  /**
   * With `degradedDurability: allow`: an active data site whose lease lapsed at a majority of voters
   * is marked `down` by a majority epoch, so that quorum writes count Q over the active sites (and
   * say they are at risk). One site acts: the first active site, in record order, alive at a majority.
   */
  private async markDownLapsed(): Promise<void> {
    if (this.markingDown || this.stopping || this.stopped) return;
    const rec = this.record();
    if (member(rec, this.siteId)?.state !== 'active') return;
    for (const m of rec.members) {
      if (m.kind !== 'site' || m.state !== 'active' || m.id === this.siteId || !this.lapsedAtMajority(m.id)) continue;
      const actor = rec.members.find((x) => x.kind === 'site' && x.state === 'active' && x.id !== m.id && this.aliveAtMajority(x.id));
      if (actor?.id !== this.siteId) continue;
      this.markingDown = true;
      try {
        await this.awaitVoterChangeSettled(0);
        await this.setMemberState(m.id, 'down', { by: this.siteId, why: `the lease of ${m.id} lapsed at a majority of voters; degradedDurability: allow (quorums count over the active sites)` });
      } catch (e) {
        this.log.info({ site: m.id, err: (e as Error).message }, 'could not mark a lapsed site down yet; will retry');
      } finally {
        this.markingDown = false;
      }
      return;
    }
  }

  /**
   * Whether `site` looks stopped to the voters: a majority of them (fresh views) granted it nothing
   * for half a lease, though it renews every quarter (paused, dead or cut off). A write forwarded to
   * it would likely wait out the forward timeout: the HTTP layer holds it instead (http-server.ts).
   * False without fresh views from a majority (this site could not fail it over either).
   */
  ownerSilent(site: string): boolean {
    // a site never granted since a voter started may be starting: not judged silent there. A hint,
    // not a safety rule (a held write is tried again, nothing written): views up to a lease old
    // count, so one late lease round here does not send a held write into a silent owner's socket
    return site !== this.siteId && this.silentAtMajority(site, (never) => (never ? Infinity : this.leaseMs / 2), this.leaseMs);
  }

  /** Whether voters granted `site` a lease within L at a majority (an operator's `failover --site` checks it). */
  isAliveAtMajority(site: string): boolean {
    return this.aliveAtMajority(site);
  }

  /** Voters of the current record that answer now (a plain failover needs a majority of them). */
  async reachableVoters(timeoutMs = Math.min(this.leaseMs, 2_000)): Promise<string[]> {
    const out: string[] = [];
    await Promise.all(
      voters(this.record()).map((v) =>
        this.call(v, { kind: 'view' }, timeoutMs).then(
          () => void out.push(v),
          () => undefined,
        ),
      ),
    );
    return out;
  }

  // ---- forced failover (forced.ts) ---------------------------------------------------------------

  /**
   * Asks every member whether it answers: each voter for a newer record than this site's (learned
   * here), each data site for its durable vector and what it has heard of. Repeated while answers
   * bring a newer record (its members are asked then).
   */
  async probeMembers(timeoutMs = Math.min(this.leaseMs, 2_000)): Promise<ForcedProbe> {
    const { host } = this.options;
    for (let round = 0; ; round++) {
      const rec = this.record();
      const reachableVoters: string[] = [];
      await Promise.all(
        voters(rec).map(async (v) => {
          try {
            const r = await this.call(v, { kind: 'fetch', epoch: rec.epoch + 1 }, timeoutMs);
            if (r.kind === 'newer' && isTopology(r.record)) await this.learn(r.record);
            reachableVoters.push(v);
          } catch {
            // did not answer: unreachable
          }
        }),
      );
      if (this.epoch() !== rec.epoch && round < 3) continue;
      const durable: Record<string, VersionVector> = { [this.siteId]: await host.store.sync() };
      const heard: Record<string, VersionVector> = { [this.siteId]: joinVectors(durable[this.siteId]!, host.heardVector?.() ?? {}) };
      const sites = rec.members.filter((m) => m.kind === 'site' && m.state !== 'removed' && m.id !== this.siteId).map((m) => m.id);
      await Promise.all(
        sites.map(async (s) => {
          try {
            const r = await this.peerCall<{ vector?: unknown; heard?: unknown }>(s, '/v1/peer/topology/durable-vector', {}, timeoutMs);
            if (r.vector === null || typeof r.vector !== 'object') return;
            durable[s] = r.vector as VersionVector;
            heard[s] = joinVectors(r.vector as VersionVector, r.heard !== null && typeof r.heard === 'object' ? (r.heard as VersionVector) : {});
          } catch {
            // did not answer: unreachable
          }
        }),
      );
      return { reachableVoters, durable, heard };
    }
  }

  /** What a forced failover moves: the units asked for, each to `to` or the first reachable active site of its failoverOrder. */
  private forcedMoves(rec: Topology, probe: ForcedProbe, args: { table?: string; site?: string; to?: string }, refused: string[]): MovePlan[] {
    const down = new Set(unreachableMembers(rec, probe));
    const serving = (s: string) => member(rec, s)?.kind === 'site' && member(rec, s)?.state === 'active' && probe.durable[s] !== undefined && !down.has(s);
    if (args.to !== undefined && !serving(args.to)) refused.push(`target: ${args.to} is ${probe.durable[args.to] === undefined ? 'unreachable' : member(rec, args.to)?.state ?? 'not a member'}; it must be an active data site that answers`);
    const picked = units(rec).filter((u) =>
      args.table !== undefined ? splitUnit(u.unit).table === args.table : u.owner === args.site || (u.owner === null && previousOwner(rec, u.unit) === args.site),
    );
    const moves: MovePlan[] = [];
    for (const u of picked) {
      if (u.owner !== null && u.owner === args.to) continue;
      if (u.owner !== null && serving(u.owner) && args.to === undefined) continue;
      const order = [...(this.options.config.tables[splitUnit(u.unit).table]?.failoverOrder ?? this.options.config.sites.map((s) => s.id)), ...rec.members.map((m) => m.id)];
      const to = args.to ?? order.find((s) => s !== u.owner && serving(s));
      if (to === undefined) refused.push(`target: no active data site that answers can take ${u.unit}`);
      else moves.push({ unit: u.unit, from: u.owner ?? previousOwner(rec, u.unit), to });
    }
    return moves;
  }

  /**
   * `tandem failover --force`: probes every member, marks the ones that do not answer `down` and
   * revokes the units toward their targets in one forced epoch written to every voter that answered
   * (forced.ts); the targets then install themselves once the remaining voters vouch that the old
   * leases expired. `dryRun`: the plan only. Resolves with the plan, what was refused, and after a
   * run the record with the units installed and the cut actually taken.
   */
  async forceFailover(
    args: { table?: string; site?: string; to?: string },
    who: { by: string; why: string },
    options: { dryRun: boolean; waitMs: number },
  ): Promise<{ plan: ForcedPlan; refused: string[]; topology?: Topology; installedCut?: { origin: string; seq: number }[] }> {
    const probe = await this.probeMembers();
    const rec = this.record();
    const refused: string[] = [];
    const moves = this.forcedMoves(rec, probe, args, refused);
    const plan = planForced(rec, probe, moves);
    if (plan.down.length === 0) refused.push('force: every member answered, nothing needs forcing; use failover or switchover (a majority decides)');
    if (args.site !== undefined && probe.durable[args.site] !== undefined) refused.push(`force: ${args.site} answers; a forced failover gives up only members that do not (use switchover or evacuate)`);
    if (options.dryRun || refused.length > 0) return { plan, refused };
    const forced = forcedRecord(rec, plan, { action: 'forced-failover', by: who.by, why: who.why, atMs: Math.floor(this.options.env.clock.wallMs()), detail: describeForced(plan) });
    this.log.warn({ epoch: forced.epoch, down: plan.down, moves: plan.moves, dropped: plan.dropped, by: who.by }, 'FORCED topology epoch: written without a majority of the former voters');
    let stored = 0;
    await Promise.all(
      plan.votersAfter.map(async (v) => {
        try {
          const r = await this.call(v, { kind: 'learn', record: forced });
          if (r.kind === 'learned' && r.epoch >= forced.epoch) stored++;
        } catch {
          // counted below
        }
      }),
    );
    if (stored < majority(plan.votersAfter.length))
      throw new Error(`the forced epoch ${forced.epoch} reached only ${stored} of the ${plan.votersAfter.length} voters that answered the probe; run it again`);
    const { env } = this.options;
    const deadline = env.clock.monotonicMs() + options.waitMs;
    for (;;) {
      const now = this.record();
      if (plan.moves.every((m) => ownerOfUnit(now, m.unit) === m.to)) {
        const installs = new Set(plan.moves.map((m) => lastInstall(now, m.unit)));
        const installedCut = now.cuts.filter((c) => installs.has(c.epoch)).map((c) => ({ origin: c.origin, seq: c.seq }));
        return { plan, refused: [], topology: now, installedCut };
      }
      if (env.clock.monotonicMs() >= deadline)
        throw new Error(
          `the forced epoch ${forced.epoch} is decided (${plan.down.join(', ')} down) but not every unit was installed within ${options.waitMs} ms (the targets wait for the old leases to expire at the remaining voters, then pull the cut): ${plan.moves.filter((m) => ownerOfUnit(now, m.unit) !== m.to).map((m) => m.unit).join(', ')}`,
        );
      void this.renew();
      await env.timers.sleep(this.tickMs, this.lifetime.signal);
    }
  }

  // ---- handover on shutdown ------------------------------------------------------------------------

  /** Whether `site` takes a handover now (not stopping itself, active); why not, if not (it may not answer). */
  private async acceptsHandover(site: string, timeoutMs: number): Promise<{ ok: boolean; why?: string }> {
    try {
      const r = await this.peerCall<{ accepting?: unknown; reason?: unknown }>(site, '/v1/peer/topology/handover-target', {}, timeoutMs);
      return r.accepting === true ? { ok: true } : { ok: false, why: `${site}: ${String(r.reason ?? 'declines')}` };
    } catch (e) {
      return { ok: false, why: `${site}: ${(e as Error).message}` };
    }
  }

  /**
   * On SIGTERM (and stop()): a site that owns units hands each over by the planned switchover (RPO 0,
   * no lease wait) to the first site of the unit's failoverOrder that is active and not stopping too,
   * within `waitMs` in all; then the caller stops it. A handover that cannot be done in time is
   * logged and left (the units fail over the unplanned way once the lease lapses). From the call on
   * this site accepts no handover itself, so a whole cluster stopping at once does not pass units
   * around.
   */
  async handOverBeforeStop(waitMs: number): Promise<{ moved: string[]; left: string[]; reason?: string }> {
    this.stopping = true;
    const rec = this.record();
    const owned = unitsOwnedBy(rec, this.siteId);
    if (owned.length === 0 || this.stopped) return { moved: [], left: [] };
    const { env } = this.options;
    const deadline = env.clock.monotonicMs() + waitMs;
    const left = () => Math.max(0, deadline - env.clock.monotonicMs());
    const accepts = new Map<string, Promise<{ ok: boolean; why?: string }>>();
    const plan: MovePlan[] = [];
    for (const unit of owned) {
      const order = [...(this.options.config.tables[splitUnit(unit).table]?.failoverOrder ?? this.options.config.sites.map((s) => s.id)), ...rec.members.map((m) => m.id)];
      for (const s of order) {
        const m = member(rec, s);
        if (s === this.siteId || m?.kind !== 'site' || m.state !== 'active') continue;
        if (!accepts.has(s)) accepts.set(s, this.acceptsHandover(s, Math.min(this.leaseMs, left())));
        if ((await accepts.get(s)!).ok) {
          plan.push({ unit, from: this.siteId, to: s });
          break;
        }
      }
    }
    const unplanned = owned.filter((u) => !plan.some((m) => m.unit === u));
    if (plan.length === 0) {
      const declined = (await Promise.all(accepts.values())).map((a) => a.why).filter((w) => w !== undefined);
      const reason = `no other active site takes a handover (${declined.join('; ') || 'there is none'})`;
      this.log.warn({ units: owned }, `shutting down without handing over: ${reason}`);
      return { moved: [], left: owned, reason };
    }
    const budgetMs = left();
    let reason: string | undefined = await Promise.race([
      this.switchover(plan, { by: this.siteId, why: 'shutting down (SIGTERM): planned handover before it stops' }, budgetMs).then(
        () => undefined,
        (e: unknown) => (e as Error).message,
      ),
      env.timers.sleep(budgetMs, this.lifetime.signal).then(
        () => `not done within ${waitMs} ms`,
        () => 'stopped',
      ),
    ]);
    const now = this.record();
    const moved = plan.filter((m) => ownerOfUnit(now, m.unit) === m.to).map((m) => m.unit);
    // the proposal's learns are sent without waiting; stopping would cut them off, and the new owner
    // would hear of its epoch only at its next lease round: tell every voter now (bounded)
    if (moved.length > 0)
      await Promise.all(voters(now).filter((v) => v !== this.siteId).map((v) => this.call(v, { kind: 'learn', record: now }, Math.max(1, Math.min(this.leaseMs, left()))).catch(() => undefined)));
    const notMoved = [...unplanned, ...plan.filter((m) => ownerOfUnit(now, m.unit) !== m.to).map((m) => m.unit)];
    if (notMoved.length > 0) {
      reason ??= unplanned.length > 0 ? 'no target took some units' : 'unknown';
      this.log.warn({ moved, left: notMoved, reason }, 'shutting down: not every owned unit was handed over; those fail over once the lease lapses');
    } else this.log.info({ moved: plan }, 'shutting down: every owned unit was handed over');
    return { moved, left: notMoved, ...(reason !== undefined && notMoved.length > 0 ? { reason } : {}) };
  }

  // ---- operator actions --------------------------------------------------------------------------

  /** The moves a failover would make: of `table` (to `to`, default its failoverOrder), or of everything `site` owns. */
  planFailover(args: { table?: string; site?: string; to?: string }): MovePlan[] {
    const rec = this.record();
    const list = units(rec).filter((u) => (args.table !== undefined ? splitUnit(u.unit).table === args.table : u.owner === args.site));
    return list
      .filter((u) => u.owner !== args.to)
      .map((u) => ({ unit: u.unit, from: u.owner, to: args.to ?? this.candidateFor(u.unit, u.owner) ?? '(none)' }));
  }

  /** Runs a failover plan: one revoke epoch, then each target installs its units; resolves when all are installed. */
  async failover(plan: MovePlan[], who: { by: string; why: string }, waitMs: number): Promise<Topology> {
    const byFrom = new Map<string, MovePlan[]>();
    for (const m of plan) if (m.from !== null) byFrom.set(m.from, [...(byFrom.get(m.from) ?? []), m]);
    for (const [from, moves] of byFrom)
      await this.revoke(
        from,
        moves.map((m) => m.unit),
        who,
        Object.fromEntries(moves.map((m) => [m.unit, m.to])),
      );
    // targets without an owner already revoked
    const stray = plan.filter((m) => m.from === null);
    if (stray.length > 0)
      await this.propose((cur) => {
        const todo = stray.filter((m) => ownerOfUnit(cur, m.unit) === null && cur.targets?.[m.unit] !== m.to);
        if (todo.length === 0) return undefined;
        return nextTopology(cur, (d) => {
          d.targets ??= {};
          for (const m of todo) d.targets[m.unit] = m.to;
        }, { action: 'target', by: who.by, why: who.why, atMs: Math.floor(this.options.env.clock.wallMs()) });
      });
    const { env } = this.options;
    const deadline = env.clock.monotonicMs() + waitMs;
    for (;;) {
      const rec = this.record();
      if (plan.every((m) => ownerOfUnit(rec, m.unit) === m.to)) return rec;
      if (env.clock.monotonicMs() >= deadline) throw new Error(`not every unit was installed within ${waitMs} ms: ${plan.filter((m) => ownerOfUnit(rec, m.unit) !== m.to).map((m) => `${m.unit} (owner ${ownerOfUnit(rec, m.unit) ?? 'none'})`).join(', ')}`);
      void this.renew();
      await env.timers.sleep(this.tickMs, this.lifetime.signal);
    }
  }

  /**
   * Planned handover with RPO 0 and no lease wait (ARCHITECTURE.md, "Planned switchover"):
   * (1) epoch e+1 names the handover; (2) the old owner fences the units where seqs are assigned,
   * syncs, and replies s, its durable vector; (3) the new owner pulls until it holds s durably;
   * (4) epoch e+2 installs the new owner with cut s. Writes the old owner refuses meanwhile are
   * parked there and sent on to the new owner once the epoch changes (site/http-server.ts). If the
   * new owner cannot catch up, an abort epoch lifts the fence; if the old owner cannot be reached,
   * nothing is fenced and the unplanned path (failover) remains.
   */
  async switchover(plan: MovePlan[], who: { by: string; why: string }, waitMs: number): Promise<Topology> {
    const groups = new Map<string, MovePlan[]>();
    for (const m of plan) groups.set(`${m.from ?? ''}>${m.to}`, [...(groups.get(`${m.from ?? ''}>${m.to}`) ?? []), m]);
    for (const moves of groups.values()) {
      const from = moves[0]!.from;
      const to = moves[0]!.to;
      if (from === null || from === to) {
        await this.failover(moves, who, waitMs);
        continue;
      }
      const unitList = moves.map((m) => m.unit);
      const atMs = () => Math.floor(this.options.env.clock.wallMs());
      const fenced = await this.propose((cur) => {
        if (cur.handover !== undefined) throw new Error(`another handover is in progress (${cur.handover.units.join(', ')} from ${cur.handover.from} to ${cur.handover.to})`);
        const still = unitList.filter((u) => ownerOfUnit(cur, u) === from);
        if (still.length === 0) return undefined;
        return nextTopology(cur, (d) => (d.handover = { units: still, from, to }), { action: 'handover', by: who.by, why: who.why, atMs: atMs(), detail: `${still.join(', ')} from ${from} to ${to}` });
      });
      if (fenced.handover === undefined) continue;
      const abort = async (why: string): Promise<never> => {
        await this.propose((cur) =>
          cur.handover === undefined ? undefined : nextTopology(cur, (d) => delete d.handover, { action: 'handover-abort', by: who.by, why, atMs: atMs() }),
        );
        throw new Error(`switchover aborted: ${why}`);
      };
      let s: VersionVector;
      try {
        s =
          from === this.siteId
            ? await this.learn(fenced).then(() => this.options.host.store.sync())
            : (await this.peerCall<{ vector: VersionVector }>(from, '/v1/peer/topology/fence', { record: fenced }, waitMs)).vector;
      } catch (e) {
        return abort(`the owner ${from} could not be fenced (${(e as Error).message}); use failover for the unplanned path`);
      }
      const cut: VersionVector = {};
      for (const [o, seq] of Object.entries(s)) if (siteOfOrigin(o) === from) cut[o] = seq;
      try {
        if (to === this.siteId) await this.holdDurably(cut, waitMs);
        else await this.peerCall(to, '/v1/peer/topology/hold', { vector: cut, waitMs }, waitMs + 1_000);
      } catch (e) {
        return abort(`${to} did not catch up with ${from} (${(e as Error).message})`);
      }
      await this.propose((cur) => {
        const h = cur.handover;
        if (h === undefined || h.from !== from || h.to !== to) throw new Error('the handover was aborted meanwhile');
        return nextTopology(
          cur,
          (d) => {
            for (const u of h.units) setOwner(d, u, to);
            delete d.handover;
            addCut(d, new Set([from]), cut);
          },
          { action: 'switchover', by: who.by, why: who.why, atMs: atMs(), detail: `${h.units.join(', ')} from ${from} to ${to}` },
        );
      });
    }
    return this.record();
  }

  private async peerCall<T>(site: string, path: string, body: unknown, timeoutMs: number): Promise<T> {
    const url = this.urlOf(site);
    if (url === undefined) throw new Error(`no URL for ${site}`);
    const ac = new AbortController();
    const timer = this.options.env.timers.after(timeoutMs, () => ac.abort(new Error('timeout')));
    try {
      return await callPeer<T>({ env: this.options.env, auth: this.options.auth, from: this.siteId, peer: site, peerUrl: url, method: 'POST', path, body, replyBytesMax: 1 << 20, signal: ac.signal });
    } finally {
      timer.cancel();
    }
  }

  /** Resolves once the epoch is past `epoch`, or after `waitMs` (parked writes wait for a handover this way). */
  waitForEpochAfter(epoch: number, waitMs: number): Promise<void> {
    if (this.epoch() > epoch) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = this.options.env.timers.after(waitMs, () => {
        off();
        resolve();
      });
      const off = this.onChange((t) => {
        if (t.epoch <= epoch) return;
        timer.cancel();
        off();
        resolve();
      });
    });
  }

  /** Sets a member's state (evacuate, failback, down) in a new epoch. */
  async setMemberState(id: string, state: Topology['members'][number]['state'], who: { by: string; why: string }): Promise<Topology> {
    return this.propose((cur) => {
      const m = member(cur, id);
      if (m === undefined) throw new Error(`no member ${id}`);
      if (m.state === state) return undefined;
      return nextTopology(cur, (d) => {
        if (state === 'down') markDown(cur, d, id);
        else if (m.state === 'down') {
          markUp(cur, d, id);
          member(d, id)!.state = state;
        } else member(d, id)!.state = state;
        noteVoterChange(cur, d);
      }, { action: `member-${state}`, by: who.by, why: who.why, atMs: Math.floor(this.options.env.clock.wallMs()), detail: id });
    });
  }

  // ---- membership online (members.ts) ----------------------------------------------------------

  private activatingSelf = false;
  /** per voter-changing epoch: when (monotonic) this site first saw it settled at the voters */
  private readonly voterChangeSeen = new Map<number, number>();

  /** `tandem members add`: a new epoch with the site `joining` (no voter, no quorum ack until active). */
  async addMember(m: { id: string; url: string; region?: string }, who: { by: string; why: string }): Promise<Topology> {
    return this.propose((cur) => {
      const refused = additionRefusals(cur, m.id, m.url).filter((c) => !c.ok);
      if (refused.length > 0) {
        if (member(cur, m.id)?.state === 'joining' && member(cur, m.id)?.url === m.url) return undefined;
        throw new Error(refused.map((c) => `${c.name}: ${c.detail}`).join('; '));
      }
      return nextTopology(cur, (d) => addJoining(d, m), { action: 'member-add', by: who.by, why: who.why, atMs: Math.floor(this.options.env.clock.wallMs()), detail: `${m.id} at ${m.url}` });
    });
  }

  /**
   * `tandem members remove`: once an earlier change of the voters has settled, reads the final cut
   * of the site's origins (a read quorum of every data membership in force) and proposes `removed`
   * with it: the site's later entries are reported, never applied, and it stops gating GC.
   */
  async removeMember(id: string, who: { by: string; why: string }, waitMs: number): Promise<Topology> {
    const before = this.record();
    const refused = removalRefusals(before, id).filter((c) => !c.ok);
    if (refused.length > 0) throw new Error(refused.map((c) => `${c.name}: ${c.detail}`).join('; '));
    if (voters(before).includes(id)) await this.awaitVoterChangeSettled(waitMs);
    const settledAt = this.record().voterChangeEpoch;
    // the final cut: every reachable data site's durable vector (at least a read quorum of each
    // membership), so that entries some site already applied are rarely beyond it
    const cut = await this.readCut(new Set([id]), true);
    const removed = await this.propose((cur) => {
      const m = member(cur, id);
      if (m?.state === 'removed') return undefined;
      const again = removalRefusals(cur, id).filter((c) => !c.ok);
      if (again.length > 0) throw new Error(again.map((c) => `${c.name}: ${c.detail}`).join('; '));
      if (cur.voterChangeEpoch !== settledAt) throw new Error('the voters changed meanwhile: run the removal again');
      return nextTopology(cur, (d) => removeMember(cur, d, id, cut), {
        action: 'member-remove',
        by: who.by,
        why: who.why,
        atMs: Math.floor(this.options.env.clock.wallMs()),
        detail: `${id}, final cut ${Object.entries(cut).map(([o, q]) => `${o}:${q}`).join(' ') || '(nothing held)'}`,
      });
    });
    await this.awaitCutHeld(cut, dataSites(removed), waitMs);
    return removed;
  }

  /**
   * A removal completes once a majority of the new data membership holds the final cut durably
   * (then the removed site may be stopped: nothing that counts lives only there). Polls the sites'
   * durable vectors; on timeout the removal stands and the gap is logged.
   */
  private async awaitCutHeld(cut: VersionVector, sites: string[], waitMs: number): Promise<void> {
    const { env } = this.options;
    const deadline = env.clock.monotonicMs() + waitMs;
    const need = majority(sites.length);
    for (;;) {
      let holding = 0;
      await Promise.all(
        sites.map(async (s) => {
          try {
            const v = s === this.siteId ? await this.options.host.store.sync() : (await this.peerCall<{ vector: VersionVector }>(s, '/v1/peer/topology/durable-vector', {}, this.leaseMs)).vector;
            if (dominates(v, cut)) holding++;
          } catch {
            // unreachable: does not hold it as far as we know
          }
        }),
      );
      if (holding >= need) return;
      if (env.clock.monotonicMs() >= deadline || this.stopped) {
        this.log.warn({ holding, need, cut }, 'removal decided, but a majority of the remaining data sites does not hold its final cut yet');
        return;
      }
      this.options.host.wakePulls();
      await env.timers.sleep(this.tickMs, this.lifetime.signal).catch(() => undefined);
    }
  }

  /**
   * A joining site that has caught up proposes itself `active` (a voter, counted in quorums); so does
   * a `down` site once it has caught up with every active data site (it owns nothing: what it owned
   * moved when it went down; `tandem failback` gives it back).
   */
  private async activateSelf(): Promise<void> {
    if (this.activatingSelf || this.stopped || this.stopping) return;
    const rec = this.record();
    const me = member(rec, this.siteId);
    if (me?.state !== 'joining' && me?.state !== 'down') return;
    const from = me.state;
    const others = dataSites(rec).filter((s) => s !== this.siteId);
    const caughtUp = from === 'down' && this.options.host.caughtUpWith !== undefined ? others.length > 0 && this.options.host.caughtUpWith(others) : this.options.host.caughtUp?.() === true;
    if (!caughtUp) return;
    this.activatingSelf = true;
    try {
      await this.awaitVoterChangeSettled(0);
      const settledAt = this.record().voterChangeEpoch;
      await this.propose((cur) => {
        if (member(cur, this.siteId)?.state !== from) return undefined;
        if (cur.voterChangeEpoch !== settledAt) throw new Error('the voters changed meanwhile');
        return nextTopology(cur, (d) => (from === 'joining' ? activate(cur, d, this.siteId, this.options.config.tables) : markUp(cur, d, this.siteId)), {
          action: 'member-active',
          by: this.siteId,
          why: from === 'joining' ? 'caught up after joining' : 'caught up after being down',
          atMs: Math.floor(this.options.env.clock.wallMs()),
          detail: this.siteId,
        });
      });
    } catch (e) {
      this.log.info({ err: (e as Error).message }, 'not active yet; will retry');
    } finally {
      this.activatingSelf = false;
    }
  }

  /**
   * Voters change one at a time: resolves once the latest change of the voters (epoch v) has
   * settled — a majority of v's voters counted as if there were one more (so also a majority of
   * v−1's) report epoch ≥ v, and expiryMs has passed since this site saw that. Every lease granted
   * at an epoch before v has then been renewed at v or has expired. waitMs 0: check once, throw if not yet.
   */
  private async awaitVoterChangeSettled(waitMs: number): Promise<void> {
    const { env } = this.options;
    const deadline = env.clock.monotonicMs() + waitMs;
    for (;;) {
      const rec = this.record();
      const v = rec.voterChangeEpoch;
      if (v === undefined) return;
      const now = env.clock.monotonicMs();
      let seen = this.voterChangeSeen.get(v);
      if (seen === undefined) {
        const vs = voters(rec);
        // (a single voter left by a forced failover is the whole set: its word is enough)
        const need = Math.min(majority(vs.length + 1), vs.length);
        const views = await this.freshViews((list) => list.filter((x) => x.epoch >= v && vs.includes(x.voter)).length >= need);
        if (views.filter((x) => x.epoch >= v && vs.includes(x.voter)).length >= need) {
          seen = env.clock.monotonicMs();
          this.voterChangeSeen.set(v, seen);
        }
      }
      if (seen !== undefined && now - seen >= this.expiryMs) return;
      if (now >= deadline || this.stopped) throw new Error(`the change of voters at epoch ${v} has not settled yet (leases granted before it may still be in use)`);
      await env.timers.sleep(this.tickMs, this.lifetime.signal);
    }
  }
}

/** The epoch of the latest history entry naming `id` (when it went down, for /ready's reason). */
function lastStateChange(t: Topology, id: string): number {
  for (let i = t.history.length - 1; i >= 0; i--) if (t.history[i]!.detail?.includes(id)) return t.history[i]!.epoch;
  return t.epoch;
}

/** The owner before the unit's latest change (the one it was revoked from). */
function previousOwner(t: Topology, unit: string): string | null {
  const list = t.changes.filter((c) => c.unit === unit);
  for (let i = list.length - 1; i >= 0; i--) if (list[i]!.owner !== null) return list[i]!.owner;
  return null;
}

function lastChangeEpoch(t: Topology, unit: string): number {
  let e = 0;
  for (const c of t.changes) if (c.unit === unit) e = c.epoch;
  return e;
}

/** The epoch at which the unit's current owner was installed (0: the config's owner). */
function lastInstall(t: Topology, unit: string): number {
  let e = 0;
  for (const c of t.changes) if (c.unit === unit && c.owner !== null) e = c.epoch;
  return e;
}

/** See Ownership.dotCounts: entryCounts for a dot whose entry's epoch is unknown. */
export function dotCountsWithoutEpoch(t: Topology, unit: string, origin: string, seq: number): boolean | undefined {
  const site = siteOfOrigin(origin);
  const timeline = t.changes.filter((c) => c.unit === unit);
  let verdict: boolean | undefined = true;
  for (const m of movesAway(timeline, site))
    if (m.installEpoch !== undefined && seq > cutSeq(t, m.installEpoch, origin)) {
      // written before this move (void), or after a return of the unit to its site (counts)
      if (!timeline.slice(m.at + 1).some((x) => x.owner === site)) return false;
      verdict = undefined;
    }
  return verdict;
}

/** `site` owned `unit` at `fromEpoch` and every change since leaves it with `site`. */
function ownedThrough(t: Topology, unit: string, site: string, fromEpoch: number): boolean {
  if (ownerAt(t, unit, fromEpoch) !== site) return false;
  for (const c of t.changes) if (c.unit === unit && c.epoch > fromEpoch && c.owner !== site) return false;
  return true;
}

export function isVoterRequest(m: unknown): m is VoterRequest {
  if (m === null || typeof m !== 'object') return false;
  const r = m as { kind?: unknown; epoch?: unknown; holder?: unknown; record?: unknown; known?: unknown; ballot?: { n?: unknown; by?: unknown } };
  const ballotOk = () => typeof r.ballot === 'object' && r.ballot !== null && Number.isSafeInteger(r.ballot.n) && typeof r.ballot.by === 'string';
  switch (r.kind) {
    case 'prepare':
      return Number.isSafeInteger(r.epoch) && ballotOk() && isTopology(r.known);
    case 'accept':
      return Number.isSafeInteger(r.epoch) && ballotOk() && isTopology(r.record);
    case 'learn':
      return isTopology(r.record);
    case 'lease':
      return typeof r.holder === 'string' && Number.isSafeInteger(r.epoch);
    case 'view':
      return true;
    case 'fetch':
      return Number.isSafeInteger(r.epoch);
    default:
      return false;
  }
}
