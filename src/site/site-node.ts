// The site node's domain: the data API over the durable store, independent of HTTP. It owns the
// site's hybrid clock, the group committer, table semantics and session waits. The HTTP layer
// (http-server.ts) validates requests and calls these methods; replication calls applyRemote.
import { hash } from 'node:crypto';
import { assert } from '../core/assert.js';
import { RequestError } from '../core/errors.js';
import { HybridClock, hlcFromHex, hlcMs, hlcToHex } from '../core/hlc.js';
import { emptyState, joinStatesTracked, type ItemState } from '../core/item.js';
import { applyLocalWrite, compensatingState, type ItemOp } from '../core/write.js';
import { canonicalJson, sameJson, type JsonValue } from '../core/canonical-json.js';
import { dominates, dotOf, parseDot, siteOfOrigin, type VersionVector } from '../core/vector.js';
import type { ClusterConfig } from '../config/schema.js';
import type { Env } from '../platform/env.js';
import { limits } from '../limits.js';
import { GroupCommitter } from '../store/group-commit.js';
import type { ConflictRecord, CurrentItem, IdempotencyRecord, ItemRecord, LogEntry, Store, StoreIdentity, VoidedWrite } from '../store/types.js';
import { buildRecord } from './records.js';
import { buildTables, ownerOf, type TableRuntime } from './tables.js';
import type { SiteMetrics } from './metrics.js';
import { loadCustomMerge } from './custom-merge.js';
import type { CustomMerge } from '../core/materialize.js';
import type { Member, Membership } from '../core/membership.js';
import type { Ownership } from '../topology/topology-service.js';

export type Consistency = 'eventual' | 'session' | 'strong';
export type Durability = 'local' | 'quorum' | 'all';

export interface WriteOptions {
  /** `*`: the item must exist (be live); a version: it must be live at exactly that version */
  ifMatch?: '*' | { version: string };
  ifNoneMatch?: boolean;
  /** the caller will wait for peers' acks (quorum or all durability): peers ack this entry at once */
  awaitsAck?: boolean;
  /**
   * Decides the operation inside the commit, from the item as the commit reads it (a rewind's
   * diff): no read-then-write race. Undefined: nothing is written.
   */
  decide?: (current: CurrentItem | undefined) => ItemOp | undefined;
  /**
   * The client's Idempotency-Key (validated): if this site knows it already, nothing is written and
   * the first write's answer comes back (ReplayedWrite); the same key with another request is 422.
   */
  idempotencyKey?: string;
}

/** A repeat of a write under its Idempotency-Key: what the first write answered; nothing was written now. */
export interface ReplayedWrite {
  replayed: true;
  /** owned units of the write: the answer is given only while this site still owns them under its lease */
  units?: string[];
  /** the first write's dot, origin and seq */
  dot: string;
  origin: string;
  seq: number;
  /** per item, in the request's order: the version and writing site the first write answered */
  items: IdempotencyRecord['items'];
}

export interface WriteOutcome {
  record: ItemRecord;
  dot: string;
  seq: number;
  /** false when nothing was written (delete of an already deleted item) */
  wrote: boolean;
  /** owned units the write touched, and the epoch of the lease it was admitted under */
  owned?: { units: string[]; epoch: number };
}

export interface BatchOp {
  op: 'put' | 'patch' | 'delete';
  table: string;
  key: string;
  itemOp: ItemOp;
}

export interface SiteNodeDeps {
  env: Env;
  config: ClusterConfig;
  siteId: string;
  store: Store;
  nextTurn: (fn: () => void) => void;
  metrics?: SiteMetrics;
  /** where the config file lives: custom merge module paths are relative to it */
  configPath?: string;
}

interface SessionWaiter {
  token: VersionVector;
  resolve: () => void;
}

export class SiteNode {
  readonly siteId: string;
  readonly tables: Map<string, TableRuntime>;
  private identity: StoreIdentity | undefined;
  private clock: HybridClock | undefined;
  private committer: GroupCommitter;
  private sessionWaiters = new Set<SessionWaiter>();
  private commitListeners = new Set<() => void>();
  /** told when items change without a log entry (a repair, a snapshot install): a backup snapshots then */
  private outsideLogListeners = new Set<(why: string) => void>();
  private stopping = false;
  private confirmedOrigin = false;
  /** the config's sites, all active: the members until a topology epoch says otherwise */
  private readonly configMembers: Member[];
  private ownership: Ownership | undefined;
  /** void owned items this site (their owner) applied nowhere and must compensate where others did */
  private voidBacklog: VoidItem[] = [];
  private compensating = false;
  private readonly log;

  constructor(private readonly deps: SiteNodeDeps) {
    this.siteId = deps.siteId;
    assert(
      deps.config.sites.some((s) => s.id === deps.siteId),
      `site ${deps.siteId} is not in the config`,
    );
    this.log = deps.env.log.child({ site: deps.siteId });
    const merges: Record<string, CustomMerge> = {};
    for (const [name, t] of Object.entries(deps.config.tables)) {
      if (t.conflict !== 'custom') continue;
      const loaded = loadCustomMerge(t.merge!, deps.configPath, t.mergeTimeoutMs, name, { log: this.log });
      merges[name] = loaded.merge;
      deps.metrics?.watchCustomMerge(name, loaded);
    }
    this.tables = buildTables(deps.config, merges);
    this.configMembers = deps.config.sites.map((s) => ({ site: s.id, state: 'active' }));
    this.committer = new GroupCommitter({
      store: deps.store,
      nextTurn: deps.nextTurn,
      writesPerCommitMax: limits.groupCommitWritesMax,
      queueMax: limits.writeQueueMax,
      monotonicMs: () => deps.env.clock.monotonicMs(),
      onCommit: (size, ms) => deps.metrics?.observeCommit(size, ms),
      afterCommit: () => {
        this.wakeSessions();
        for (const l of this.commitListeners) l();
      },
    });
  }

  get config(): ClusterConfig {
    return this.deps.config;
  }

  get origin(): string {
    assert(this.identity !== undefined, 'site node not started');
    return this.identity.origin;
  }

  get store(): Store {
    return this.deps.store;
  }

  /** The membership in force: the newest topology epoch's, or the config's sites (epoch 0). */
  membership(): Membership {
    const stored = this.deps.store.membership();
    return stored.epoch > 0 ? stored : { epoch: 0, members: this.configMembers.map((m) => ({ ...m })) };
  }

  /**
   * Whether this site may number new writes under its origin. A store opened anew may at once (no
   * one holds its new origin); a reopened one only once its peers confirm they hold no more of its
   * origin than it does (confirmOrigin): its disk may have been rolled back (a VM snapshot, a
   * restored copy), and numbering again what peers already hold would give one dot two meanings.
   */
  get originConfirmed(): boolean {
    return this.confirmedOrigin;
  }

  /**
   * Asks the peers how much of this site's origin they hold (`peersHold`: the highest seq of the
   * origin any current peer holds and the highest incarnation of this site any of them has seen,
   * or undefined if not every one answered). Keeps the origin if none holds more than this store;
   * otherwise, or if it cannot tell, takes a new incarnation (and pulls the old origin's missing
   * entries back like any peer's). Then writes are taken.
   */
  async confirmOrigin(peersHold: (origin: string) => Promise<{ seq: number; incarnationMax: number } | undefined>): Promise<'kept' | 'renewed'> {
    assert(this.identity !== undefined, 'site node not started');
    if (this.confirmedOrigin) return 'kept';
    const origin = this.identity.origin;
    const mine = this.deps.store.vector()[origin] ?? 0;
    const held = await peersHold(origin);
    let outcome: 'kept' | 'renewed' = 'kept';
    if (held === undefined || held.seq > mine) {
      this.identity = await this.deps.store.takeNewIncarnation(held?.incarnationMax ?? 0);
      outcome = 'renewed';
      this.log.warn(
        { was: origin, now: this.identity.origin, heldHere: mine, heldByPeers: held?.seq ?? 'unknown' },
        held === undefined
          ? 'took a new incarnation: not every peer could tell how much of this site\'s origin it holds'
          : 'took a new incarnation: a peer holds more of this site\'s origin than its store (a rolled-back or restored disk)',
      );
    }
    this.confirmedOrigin = true;
    return outcome;
  }

  get serving(): boolean {
    return this.identity !== undefined && !this.stopping;
  }

  async start(): Promise<StoreIdentity> {
    this.identity = await this.deps.store.open();
    this.confirmedOrigin = this.identity.created;
    // Until a topology epoch says otherwise, the members are the config's sites, all active.
    if (this.deps.store.membership().epoch < 0) await this.deps.store.setMembership({ epoch: 0, members: this.configMembers });
    this.clock = new HybridClock({
      wallMs: () => this.deps.env.clock.wallMs(),
      skewMsMax: limits.clockSkewMsMax,
      floor: hlcFromHex(this.identity.hlcHighWater),
      onSkew: (aheadMs) => {
        this.deps.metrics?.clockSkewAlarms.inc();
        this.log.warn({ aheadMs }, 'remote timestamp beyond clockSkewMsMax: applied without moving the clock');
      },
    });
    this.log.info({ origin: this.identity.origin, created: this.identity.created }, 'store open');
    return this.identity;
  }

  /** Stops taking writes, commits what is queued, closes the store. */
  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    await this.committer.drain();
    for (const w of this.sessionWaiters) w.resolve();
    this.sessionWaiters.clear();
    await this.deps.store.close();
  }

  table(name: string): TableRuntime {
    const t = this.tables.get(name);
    if (!t) throw RequestError.notFound(`unknown table ${name}`);
    return t;
  }

  /**
   * From now on ownership of `global` and `partitioned` items comes from topology epochs and leases
   * (topology/): writes of owned items are admitted only under the owner's lease, carry its epoch,
   * and peers' owned items are applied only if they count. Without it (single-process tests), the
   * config's owners stand forever and no lease is needed.
   */
  attachOwnership(ownership: Ownership): void {
    this.ownership = ownership;
  }

  /** The topology changed: units this site gained may hold void items it must compensate. */
  ownershipChanged(): void {
    if (this.voidBacklog.length > 0) void this.compensate();
  }

  /** Throws 503 unless a strong read of this owned item may be served here (owner, valid lease, cut held). */
  assertStrongReadable(table: TableRuntime, key: string): void {
    const unit = this.ownership?.unitFor(table.name, table.config, key);
    if (unit !== undefined) this.ownership!.assertStrongReadable(unit);
  }

  /** Makes the first-writer homes of these items known before their units are asked (topology/home-registry.ts). */
  async resolveHomes(items: { table: string; key: string }[], mode: 'write' | 'read'): Promise<void> {
    await this.ownership?.resolveHomes?.(items, mode);
  }

  /** The unit (topology/record.ts) an item belongs to, or undefined for a `local` table. */
  unitOf(table: TableRuntime, key: string): string | undefined {
    return this.ownership?.unitFor(table.name, table.config, key);
  }

  /** The site that must accept this write, or undefined if this site may. */
  writeOwner(table: TableRuntime, key: string): string | undefined {
    if (this.ownership !== undefined) {
      const unit = this.ownership.unitFor(table.name, table.config, key);
      if (unit === undefined) return undefined;
      const owner = this.ownership.ownerOf(unit);
      if (owner === null)
        throw RequestError.unavailable('owner-changed', `${unit} is being moved to a new owner (epoch ${this.ownership.epoch()}); nothing was written: retry shortly`);
      return owner === this.siteId ? undefined : owner;
    }
    const owner = ownerOf(this.deps.config, table, key);
    return owner === undefined || owner === this.siteId ? undefined : owner;
  }

  /**
   * Whether a committed write may be acknowledged now: a write of owned items only while the lease
   * it was admitted under (or its renewal, with no move between) is still certainly valid.
   */
  acknowledgeable(outcome: WriteOutcome | ReplayedWrite): boolean {
    if (this.ownership === undefined) return true;
    if ('replayed' in outcome) {
      try {
        for (const u of outcome.units ?? []) this.ownership.assertStrongReadable(u);
        return true;
      } catch {
        return false;
      }
    }
    if (outcome.owned === undefined) return true;
    return this.ownership.acknowledgeable(outcome.owned.units, outcome.owned.epoch);
  }

  vector(): VersionVector {
    return this.deps.store.vector();
  }

  async get(table: TableRuntime, key: string): Promise<ItemRecord | undefined> {
    const rec = await this.deps.store.getItem(table.name, key);
    return rec?.live ? rec : undefined;
  }

  async scan(
    table: TableRuntime,
    range: { start?: string; end?: string; prefix?: string; after?: string; limit: number },
  ): Promise<ItemRecord[]> {
    return this.deps.store.scanItems({ table: table.name, ...range });
  }

  onCommit(listener: () => void): () => void {
    this.commitListeners.add(listener);
    return () => this.commitListeners.delete(listener);
  }

  onChangeOutsideLog(listener: (why: string) => void): () => void {
    this.outsideLogListeners.add(listener);
    return () => this.outsideLogListeners.delete(listener);
  }

  /** Waits (bounded) until this site's vector covers the session token; false if it did not. */
  async waitForSession(token: VersionVector, waitMs: number): Promise<boolean> {
    if (dominates(this.vector(), token)) return true;
    if (waitMs <= 0) return false;
    let waiter: SessionWaiter | undefined;
    const covered = new Promise<void>((resolve) => {
      waiter = { token, resolve };
      this.sessionWaiters.add(waiter);
    });
    const timer = this.deps.env.timers.after(waitMs, () => waiter!.resolve());
    await covered;
    timer.cancel();
    this.sessionWaiters.delete(waiter!);
    return dominates(this.vector(), token);
  }

  private wakeSessions(): void {
    if (this.sessionWaiters.size === 0) return;
    const vv = this.vector();
    for (const w of this.sessionWaiters) if (dominates(vv, w.token)) w.resolve();
  }

  write(table: TableRuntime, key: string, op: ItemOp, options?: WriteOptions & { idempotencyKey?: undefined }): Promise<WriteOutcome>;
  write(table: TableRuntime, key: string, op: ItemOp, options: WriteOptions): Promise<WriteOutcome | ReplayedWrite>;
  async write(table: TableRuntime, key: string, op: ItemOp, options: WriteOptions = {}): Promise<WriteOutcome | ReplayedWrite> {
    const outcomes = await this.commitLocal([{ op: op.op, table: table.name, key, itemOp: op }], options, 'item');
    return 'replayed' in outcomes ? outcomes : outcomes[0]!;
  }

  /** An atomic batch: one log entry, one dot, all items or none. */
  batch(ops: BatchOp[], options?: Pick<WriteOptions, 'awaitsAck'> & { idempotencyKey?: undefined }): Promise<WriteOutcome[]>;
  batch(ops: BatchOp[], options: Pick<WriteOptions, 'awaitsAck' | 'idempotencyKey'>): Promise<WriteOutcome[] | ReplayedWrite>;
  async batch(ops: BatchOp[], options: Pick<WriteOptions, 'awaitsAck' | 'idempotencyKey'> = {}): Promise<WriteOutcome[] | ReplayedWrite> {
    const seen = new Set<string>();
    ops.forEach((o, i) => {
      const id = `${o.table}\u0000${o.key}`;
      if (seen.has(id))
        throw RequestError.badRequest(`ops[${i}]: the same item appears twice in one batch`, [
          { path: `ops[${i}].key`, message: 'duplicate item in batch' },
        ]);
      seen.add(id);
    });
    return this.commitLocal(ops, options, 'batch');
  }

  /**
   * One write whose operation `decide` chooses inside the commit from the item as it is then;
   * undefined when it chose none (nothing was written).
   */
  async writeDecided(table: TableRuntime, key: string, decide: NonNullable<WriteOptions['decide']>, options: Pick<WriteOptions, 'awaitsAck'> = {}): Promise<WriteOutcome | undefined> {
    const outcomes = await this.commitLocal([{ op: 'put', table: table.name, key, itemOp: { op: 'put', value: {} } }], { ...options, decide }, 'item');
    return 'replayed' in outcomes ? undefined : outcomes[0];
  }

  private async commitLocal(planned: BatchOp[], options: WriteOptions, kind: 'item' | 'batch'): Promise<WriteOutcome[] | ReplayedWrite> {
    let ops = planned;
    if (!this.serving) throw RequestError.unavailable('shutting-down', 'this site is not serving');
    if (!this.confirmedOrigin)
      throw RequestError.unavailable('starting', `site ${this.siteId} is starting: it takes writes once its peers confirm how much of its origin they hold`);
    const clock = this.clock!;
    const identity = this.identity!;
    let unchanged: ItemRecord | undefined;
    const ownership = this.ownership;
    const units = ownership === undefined ? [] : [...new Set(ops.map((o) => ownership.unitFor(o.table, this.table(o.table).config, o.key)).filter((u): u is string => u !== undefined))];
    let admittedEpoch: number | undefined;
    const idempotency = options.idempotencyKey === undefined ? undefined : { key: options.idempotencyKey, fingerprint: requestFingerprint(kind, ops, options) };
    const result = await this.committer.submit({
      kind: 'local',
      refs: ops.map((o) => ({ table: o.table, key: o.key })),
      ...(options.awaitsAck ? { awaitsAck: true } : {}),
      ...(idempotency !== undefined ? { idempotency } : {}),
      build: (current, seq) => {
        if (options.decide !== undefined) {
          const op = options.decide(current[0]);
          if (op === undefined) throw new NothingToWrite();
          ops = [{ ...planned[0]!, op: op.op, itemOp: op }];
        }
        const dot = dotOf(identity.origin, seq);
        const runtimes = ops.map((o) => this.table(o.table));
        // Admission of owned items happens here, where seqs are assigned: a fence or a lost lease
        // stops every write not yet numbered, and none numbered before it is left out of a cut.
        if (units.length > 0) admittedEpoch = ownership!.admit(units);
        // Preconditions and no-op deletes are decided before anything is built.
        ops.forEach((o, i) => {
          const cur = current[i];
          if (options.ifNoneMatch && cur?.live)
            throw RequestError.preconditionFailed(`If-None-Match: * failed: item ${o.key} exists (version ${cur.version})`);
          const ifMatch = options.ifMatch;
          if (ifMatch !== undefined && (!cur?.live || (ifMatch !== '*' && cur.version !== ifMatch.version)))
            throw RequestError.preconditionFailed(
              `If-Match${ifMatch === '*' ? ': *' : ''} failed: item ${o.key} is ${cur?.live ? `at version ${cur.version}` : cur ? 'deleted' : 'absent'}`,
            );
        });
        if (ops.length === 1 && ops[0]!.op === 'delete') {
          const cur = current[0];
          if (cur === undefined) throw RequestError.notFound(`item ${ops[0]!.key} not found`);
          if (!cur.live) {
            // a tombstone has no value
            unchanged = { ...cur, value: undefined };
            throw new UnchangedSignal();
          }
        }
        let after = 0n;
        for (const cur of current) if (cur) after = maxBig(after, hlcFromHex(cur.state.w.h));
        const hlc = clock.tickAfter(after);
        const stamp = { dot, hlc, site: identity.siteId, origin: identity.origin };
        const floor = this.deps.store.gcFloor();
        const records = ops.map((o, i) => {
          const state = applyLocalWrite(runtimes[i]!.semantics, current[i]?.state, o.itemOp, stamp, floor);
          const rec = buildRecord(o.table, o.key, runtimes[i]!.semantics, state);
          // a PUT's value was bounded when validated; a PATCH can grow an item past the bound
          if (o.itemOp.op === 'patch' && rec.live && Buffer.byteLength(canonicalJson(rec.value!)) > limits.itemBodyBytesMax)
            throw RequestError.tooLarge(`item ${o.key} would exceed ${limits.itemBodyBytesMax} bytes`);
          return rec;
        });
        return { records, hlc: hlcToHex(hlc), clock: hlcToHex(clock.current()), ...(admittedEpoch !== undefined ? { epoch: admittedEpoch } : {}) };
      },
    });
    if (result.kind === 'local' && !result.ok && result.replayed !== undefined) {
      const first = result.replayed;
      if (first.fingerprint !== idempotency!.fingerprint)
        throw new RequestError(
          422,
          'idempotency-key-reused',
          'Idempotency-Key reused',
          `Idempotency-Key "${first.key}" was used first for a different request (written as ${dotOf(first.origin, first.seq)}: ${first.items.slice(0, 3).map((i) => `${i.table}/${i.key.slice(0, 64)}`).join(', ')}${first.items.length > 3 ? ', …' : ''}); a key names one request: send a new request under a new key`,
          [{ path: 'header.idempotency-key', message: 'already used for a different request' }],
        );
      // A repeat of an owned write is answered only by the owner under its lease: a site that lost
      // the lease may hold the key of a write a new owner cut off (void)
      for (const u of units) this.ownership!.assertStrongReadable(u);
      this.deps.metrics?.idempotentReplays.inc();
      return { replayed: true, dot: dotOf(first.origin, first.seq), origin: first.origin, seq: first.seq, items: first.items, ...(units.length > 0 ? { units } : {}) };
    }
    if (result.kind === 'local' && !result.ok) {
      if (result.error instanceof NothingToWrite) return [];
      if (result.error instanceof UnchangedSignal) {
        // the tombstone may be this site's own delete whose sync is still in flight: answer only once it is durable
        if ((unchanged!.state.c[identity.origin] ?? 0) > (this.deps.store.durableVector()[identity.origin] ?? 0)) await this.deps.store.sync();
        return [{ record: unchanged!, dot: unchanged!.state.w.d, seq: 0, wrote: false }];
      }
      throw result.error;
    }
    assert(result.kind === 'local' && result.ok, 'local commit result');
    this.deps.metrics?.writes.inc(ops.length);
    const dot = dotOf(identity.origin, result.seq);
    const owned = admittedEpoch !== undefined ? { units, epoch: admittedEpoch } : undefined;
    return result.records.map((record) => ({ record, dot, seq: result.seq, wrote: true, ...(owned ? { owned } : {}) }));
  }

  /** Applies entries from a peer (any origin), joining states by each table's policy. */
  async applyRemote(entries: LogEntry[], raw?: Uint8Array[]): Promise<{ applied: number; duplicates: number; gaps: number; quarantined: number }> {
    const clock = this.clock!;
    assert(raw === undefined || raw.length === entries.length, 'one raw body per entry');
    // whether an owned item counts is judged by the record of its entry's epoch: learn it first
    if (this.ownership !== undefined) {
      const newest = Math.max(0, ...entries.map((e) => e.epoch ?? 0));
      if (newest > this.ownership.epoch() && !(await this.ownership.learnEpoch(newest)))
        throw new Error(`entries of topology epoch ${newest} arrived before this site could learn that epoch (it knows ${this.ownership.epoch()}); will retry`);
      // so is the unit of a first-writer item: its partition's home must be known here first
      await this.ownership.resolveHomes?.(entries.flatMap((e) => e.items), 'apply');
    }
    // what this site already has (from another peer, usually) is not worth a place in a commit
    const have = this.vector();
    let duplicates = 0;
    const fresh: number[] = [];
    entries.forEach((e, i) => {
      if (e.seq <= (have[e.origin] ?? 0)) duplicates++;
      else fresh.push(i);
    });
    const results = await Promise.all(
      fresh.map((i) => {
        const entry = entries[i]!;
        clock.observe(hlcFromHex(entry.hlc));
        const bytes = raw?.[i];
        return this.committer.submit({
          kind: 'remote',
          entry,
          clock: hlcToHex(clock.current()),
          ...(bytes !== undefined ? { raw: bytes } : {}),
          merge: (current) => this.joinItems(entry.items, current, entry),
        });
      }),
    );
    let applied = 0;
    let gaps = 0;
    let quarantined = 0;
    const nowMs = this.deps.env.clock.wallMs();
    for (const [j, r] of results.entries()) {
      assert(r.kind === 'remote', 'remote result');
      const entry = entries[fresh[j]!]!;
      if (r.applied && r.quarantined !== undefined) {
        quarantined++;
        this.log.error({ origin: entry.origin, seq: entry.seq, reason: r.quarantined }, 'a peer entry could not be applied: quarantined (logged and relayed, its items unchanged here)');
      } else if (r.applied) {
        applied++;
        this.deps.metrics?.replicationLagMs.observe({ origin: siteOfOrigin(entry.origin) }, Math.max(0, nowMs - hlcMs(hlcFromHex(entry.hlc))));
      } else if (r.reason === 'duplicate') duplicates++;
      else gaps++;
    }
    if (this.voidBacklog.length > 0) void this.compensate();
    this.deps.metrics?.entriesReceived.inc({ result: 'applied' }, applied);
    this.deps.metrics?.entriesReceived.inc({ result: 'duplicate' }, duplicates);
    if (quarantined > 0) this.deps.metrics?.entriesReceived.inc({ result: 'quarantined' }, quarantined);
    return { applied, duplicates, gaps, quarantined };
  }

  private voidConflicts(voids: VoidedWrite[], winner: ItemState['w'] | undefined): ConflictRecord[] {
    return voids.map((v) => ({
      reason: 'voided' as const,
      table: v.table,
      key: v.key,
      loserDot: v.dot,
      field: '',
      winner: { version: winner ? `${winner.h}-${winner.s}` : '', origin: winner?.s ?? '' },
      loser: { value: v.value, deleted: v.value === null, version: '', origin: siteOfOrigin(parseDot(v.dot).origin) },
      atMs: Math.floor(this.deps.env.clock.wallMs()),
    }));
  }

  /**
   * Undoes void owned items (ARCHITECTURE.md, "Voiding is per item, by epoch"): as their owner, this
   * site commits for each a write of its own current value (or a tombstone) whose context covers the
   * void dots, so the sites that applied them take this value instead; the entry names them, so every
   * site records the voided values in its conflict feed.
   */
  private async compensate(): Promise<void> {
    if (this.compensating || this.ownership === undefined || this.stopping) return;
    this.compensating = true;
    try {
      const ownership = this.ownership;
      const mine = (v: { table: string; key: string }) => {
        try {
          const unit = ownership.unitFor(v.table, this.table(v.table).config, v.key);
          return unit !== undefined && ownership.ownerOf(unit) === this.siteId;
        } catch {
          return false;
        }
      };
      let retry = false;
      const todo = this.voidBacklog.filter(mine);
      this.voidBacklog = this.voidBacklog.filter((v) => !mine(v));
      while (todo.length > 0 && this.serving) {
        const batch = todo.splice(0, limits.groupCommitWritesMax);
        const byItem = new Map<string, VoidItem[]>();
        for (const v of batch) byItem.set(`${v.table}\u0000${v.key}`, [...(byItem.get(`${v.table}\u0000${v.key}`) ?? []), v]);
        for (const voids of byItem.values()) {
          const { table, key } = voids[0]!;
          const runtime = this.table(table);
          const unit = this.ownership.unitFor(table, runtime.config, key);
          if (unit === undefined) continue;
          const clock = this.clock!;
          const identity = this.identity!;
          let built: VoidedWrite[] = [];
          const result = await this.committer.submit({
            kind: 'local',
            refs: [{ table, key }],
            build: (current, seq) => {
              const cur = current[0];
              const undo = voids.filter((v) => (cur?.state.c[v.origin] ?? 0) < v.seq);
              if (undo.length === 0) throw new UnchangedSignal();
              const epoch = this.ownership!.admit([unit]);
              const dot = dotOf(identity.origin, seq);
              let after = cur ? hlcFromHex(cur.state.w.h) : 0n;
              for (const v of undo) after = maxBig(after, hlcFromHex(v.state.w.h));
              const hlc = clock.tickAfter(after);
              const state = compensatingState(cur?.state, undo, { dot, hlc, site: identity.siteId, origin: identity.origin }, this.deps.store.gcFloor());
              built = undo.map((v) => ({ table: v.table, key: v.key, dot: v.dot, value: v.value }));
              return { records: [buildRecord(table, key, runtime.semantics, state)], hlc: hlcToHex(hlc), clock: hlcToHex(clock.current()), epoch, voids: built };
            },
          });
          if (result.kind === 'local' && result.ok) {
            const rec = result.records[0]!;
            await this.recordConflicts(this.voidConflicts(built, rec.state.w));
            this.log.warn({ table, key, voided: built.map((v) => v.dot), dot: dotOf(identity.origin, result.seq) }, 'compensated void owned writes');
          } else if (result.kind === 'local' && !(result.error instanceof UnchangedSignal)) {
            // not admitted yet (a lease being renewed, a promotion pulling): kept for the next try
            this.voidBacklog.push(...voids);
            retry = true;
          }
        }
      }
      if (retry && !this.stopping) this.deps.env.timers.after(limits.compensateRetryMs, () => void this.compensate());
    } finally {
      this.compensating = false;
    }
  }

  async recordConflicts(records: ConflictRecord[]): Promise<void> {
    if (records.length === 0) return;
    const result = await this.committer.submit({ kind: 'repair', refs: [], merge: () => ({ records: [], conflicts: records }) });
    assert(result.kind === 'repair', 'repair result');
  }

  async advanceVector(vector: VersionVector, gcFloor?: VersionVector): Promise<void> {
    const result = await this.committer.submit({ kind: 'advance-vector', vector, ...(gcFloor !== undefined ? { gcFloor } : {}) });
    assert(result.kind === 'advance-vector', 'advance-vector result');
    for (const l of this.outsideLogListeners) l('snapshot installed');
  }

  /** Anti-entropy and snapshots: joins peers' states into local items (no log entry, vector unchanged). */
  /**
   * `supersededBy` (a snapshot being installed): a local item whose whole context the snapshot's
   * vector covers holds nothing the snapshot's source had not seen, so the snapshot's state replaces
   * it rather than being joined into it. Joining would be the same for every CRDT part but one: a
   * stale local copy (a disk put back from an older copy) can hold counter increments whose reset
   * went with a tombstone its peers have since purged, and a join by max would bring them back.
   */
  async repairItems(items: { table: string; key: string; state: ItemState }[], options: { reportAs?: string; supersededBy?: VersionVector } = {}): Promise<number> {
    if (items.length === 0) return 0;
    let changed = 0;
    const covering = options.supersededBy;
    const result = await this.committer.submit({
      kind: 'repair',
      refs: items.map((i) => ({ table: i.table, key: i.key })),
      merge: (current) => {
        const superseded = current.map((c) => covering !== undefined && c !== undefined && dominates(covering, c.state.c));
        const joined = this.joinItems(items, current.map((c, i) => (superseded[i] ? undefined : c)));
        const records = joined.records.filter((rec, i) => {
          const before = current[i];
          if (before !== undefined && rec.version === before.version) return false;
          if (options.reportAs !== undefined)
            this.log.warn(
              { table: rec.table, key: rec.key, before: before?.version ?? null, after: rec.version, by: options.reportAs },
              'repaired an item that differed from a peer at the same vector',
            );
          return true;
        });
        changed += records.length;
        return { records, conflicts: joined.conflicts };
      },
    });
    assert(result.kind === 'repair', 'repair result');
    if (result.failed !== undefined) {
      this.log.error({ keys: items.slice(0, 10).map((i) => `${i.table}/${i.key}`), reason: result.failed }, 'peer item states could not be joined here: not repaired');
      return 0;
    }
    if (changed > 0 && covering === undefined) for (const l of this.outsideLogListeners) l('anti-entropy repair');
    return changed;
  }

  /**
   * The end of a snapshot install: a local item whose context `vector` covers and which the
   * snapshot did not hold was deleted at the source and its tombstone purged there; it becomes an
   * empty tombstone here (its context kept, nothing that could come back in a join). Returns how many.
   */
  async retireItemsCoveredBy(vector: VersionVector, inSnapshot: (table: string, key: string) => boolean): Promise<number> {
    let retired = 0;
    for (const table of this.tables.keys()) {
      let after: string | undefined;
      for (;;) {
        const page = await this.deps.store.scanAll(table, after, limits.feedBatchEntriesMax);
        if (page.length === 0) break;
        after = page[page.length - 1]!.key;
        const stale = page.filter((r) => !inSnapshot(table, r.key) && dominates(vector, r.state.c) && !isEmptyState(r.state));
        if (stale.length === 0) continue;
        const runtime = this.table(table);
        const result = await this.committer.submit({
          kind: 'repair',
          refs: stale.map((r) => ({ table, key: r.key })),
          merge: (current) => {
            const records = current.flatMap((cur) =>
              cur !== undefined && dominates(vector, cur.state.c) && !isEmptyState(cur.state)
                ? [buildRecord(table, cur.key, runtime.semantics, { ...emptyState(), c: cur.state.c, w: cur.state.w })]
                : [],
            );
            retired += records.length;
            return { records, conflicts: [] };
          },
        });
        assert(result.kind === 'repair', 'repair result');
      }
    }
    return retired;
  }

  /** Joins incoming item states into the current records by each table's policy; losers become conflicts. */
  private joinItems(
    items: { table: string; key: string; state: ItemState }[],
    current: (CurrentItem | undefined)[],
    entry?: LogEntry,
  ): { records: ItemRecord[]; conflicts: ConflictRecord[]; voided?: boolean } {
    const records: ItemRecord[] = [];
    const conflicts: ConflictRecord[] = [];
    // an entry of a removed site beyond its final cut is logged and relayed, never applied (reported)
    if (entry !== undefined && this.ownership?.originCounts?.(entry.origin, entry.seq) === false) {
      this.deps.metrics?.voidedItems.inc(items.length);
      this.log.warn({ dot: dotOf(entry.origin, entry.seq), items: items.length }, 'entry of a removed site beyond its final cut: logged and relayed, not applied');
      return { records, conflicts };
    }
    let voided = false;
    // a compensating write: every site records the values it undid, whether it had applied them or not
    if (entry?.voids !== undefined) {
      conflicts.push(...this.voidConflicts(entry.voids, entry.items[0]?.state.w));
      const done = new Set(entry.voids.map((v) => v.dot));
      this.voidBacklog = this.voidBacklog.filter((v) => !done.has(v.dot));
    }
    items.forEach((item, i) => {
      const runtime = this.tables.get(item.table);
      // An owned item of an entry admitted under a lease whose epoch was later cut short does not
      // count: it is logged and relayed (the entry is), never applied.
      if (entry !== undefined && runtime !== undefined && this.ownership !== undefined) {
        const unit = ownedUnit(this.ownership, runtime, item.key);
        if (unit !== undefined && !this.ownership.counts(unit, entry.origin, entry.seq, entry.epoch ?? 0)) {
          this.deps.metrics?.voidedItems.inc();
          voided = true;
          // every site keeps it: whichever owns the unit (now or after a later move) compensates
          if (this.voidBacklog.length < limits.voidBacklogMax) {
            const voided = buildRecord(item.table, item.key, runtime.semantics, item.state);
            this.voidBacklog.push({ table: item.table, key: item.key, dot: dotOf(entry.origin, entry.seq), value: voided.live ? voided.value! : null, origin: entry.origin, seq: entry.seq, state: item.state });
          }
          this.log.warn({ unit, table: item.table, key: item.key, dot: dotOf(entry.origin, entry.seq), epoch: entry.epoch ?? 0 }, 'void owned item not applied: beyond the cut of a move of its unit');
          return;
        }
      }
      // An unknown table (config skew between sites during a rolling change) is kept as lww.
      const semantics = runtime?.semantics ?? { conflict: 'lww' as const, fields: {} };
      const cur: ItemState | undefined = current[i]?.state;
      const pruneToMax = semantics.conflict === 'lww';
      const options = { pruneToMax, siblingsMax: semantics.conflict === 'custom' ? limits.siblingsMax : undefined };
      const joined = cur ? joinStatesTracked(cur, item.state, options) : joinStatesTracked(item.state, item.state, options);
      // Usually the join is the incoming state itself (a new item, or a causally later write): then
      // the store keeps the bytes it received instead of encoding the state again (Store.commit).
      const state = sameJson(joined.state, item.state) ? item.state : joined.state;
      const rec = buildRecord(item.table, item.key, semantics, state);
      records.push(rec);
      // a custom table's siblings are all inputs of its merge, not losers, except those the siblings bound dropped
      const losers = semantics.conflict === 'custom' ? joined.losers.filter((l) => l.pruned) : joined.losers;
      for (const l of losers) {
        conflicts.push({
          table: item.table,
          key: item.key,
          loserDot: l.loser.d,
          field: l.field,
          winner: { version: `${l.winner.h}-${l.winner.s}`, origin: l.winner.s },
          loser: { value: l.loser.t ? null : l.loser.v!, deleted: l.loser.t === true, version: `${l.loser.h}-${l.loser.s}`, origin: l.loser.s },
          atMs: Math.floor(this.deps.env.clock.wallMs()),
        });
      }
      this.deps.metrics?.conflicts.inc(losers.length);
    });
    return voided ? { records, conflicts, voided } : { records, conflicts };
  }
}

class UnchangedSignal extends Error {}
class NothingToWrite extends Error {}

/** A void owned item seen in a peer's entry, kept until its unit's owner compensates it. */
interface VoidItem extends VoidedWrite {
  origin: string;
  seq: number;
  /** the item's state as the void entry carried it */
  state: ItemState;
}

/** The unit of an owned item, or undefined (a `local` table, or a key no partition names any more). */
function ownedUnit(ownership: Ownership, table: TableRuntime, key: string): string | undefined {
  try {
    return ownership.unitFor(table.name, table.config, key);
  } catch {
    return undefined;
  }
}

/**
 * What an Idempotency-Key is compared by: the kind of request (one item or a batch), each item's
 * table, key and operation with its body, and the preconditions. Not the durability asked: the same
 * write waited for differently is the same write.
 */
function requestFingerprint(kind: 'item' | 'batch', ops: BatchOp[], options: WriteOptions): string {
  const content = [kind, ops.map((o) => [o.table, o.key, o.itemOp as unknown as JsonValue]), (options.ifMatch ?? null) as JsonValue, options.ifNoneMatch === true];
  return hash('sha256', canonicalJson(content), 'hex').slice(0, 32);
}

/** A state with no entry left: nothing of it can survive a join. */
function isEmptyState(state: ItemState): boolean {
  return Object.keys(state.r).length === 0 && Object.keys(state.k).length === 0 && Object.keys(state.s).length === 0 && state.x.length === 0;
}

function maxBig(a: bigint, b: bigint): bigint {
  return a > b ? a : b;
}
