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
import type { ConflictRecord, CurrentItem, IdempotencyRecord, ItemRecord, LogEntry, Store, StoreIdentity, VoidBacklogItem, VoidBookkeeping, VoidedWrite } from '../store/types.js';
import { buildRecord } from './records.js';
import { buildTables, ownerOf, type TableRuntime } from './tables.js';
import type { SiteMetrics } from './metrics.js';
import { loadCustomMerge } from './custom-merge.js';
import type { CustomMerge } from '../core/materialize.js';
import type { Member, Membership } from '../core/membership.js';
import type { Ownership } from '../topology/topology-service.js';
import { SerialTask } from '../core/serial-task.js';

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
  private voidedListeners = new Set<(voids: VoidedWrite[]) => void>();
  private stopping = false;
  private confirmedOrigin = false;
  /** the config's sites, all active: the members until a topology epoch says otherwise */
  private readonly configMembers: Member[];
  private ownership: Ownership | undefined;
  /**
   * Void owned items kept until their unit's owner compensates them (whichever site owns it then
   * does): the store's void backlog, which commits find and forget them in; this is its copy.
   */
  private voidBacklog = new Map<string, VoidBacklogItem>();
  /** compensations, one run at a time; one asked for during a run gets another (its items were not in that run's list) */
  private readonly compensation = new SerialTask(
    () => this.compensateOnce(),
    (err) => this.log.error({ err }, 'compensating void owned writes failed: tried again on the next change'),
  );
  /** per own origin, the newest cut epoch whose void writes of this site were looked for (findOwnVoidsOnce) */
  private ownVoidsScanned = new Map<string, number>();
  /** the scan for own void writes, one at a time; a cut learned during a scan gets another */
  private readonly ownVoidsScan = new SerialTask(
    () => this.findOwnVoidsOnce(),
    (err) => this.log.error({ err }, 'looking for own writes a cut made void failed: looked for again on the next change'),
  );
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
    // compensations wait for the origin too (they are writes of this site): the ones kept meanwhile run now
    if (this.voidBacklog.size > 0) this.compensate();
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
    for (const v of await this.deps.store.voidBacklog(limits.voidBacklogMax)) this.voidBacklog.set(voidId(v), v);
    this.deps.metrics?.voidBacklog.set(this.voidBacklog.size);
    this.log.info({ origin: this.identity.origin, created: this.identity.created, voidBacklog: this.voidBacklog.size }, 'store open');
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
    this.ownershipChanged();
  }

  /**
   * The topology changed: units this site gained may hold void items it must compensate, and a new
   * cut may have made void writes of its own (it applied them at commit).
   */
  ownershipChanged(): void {
    this.ownVoidsScan.request();
    if (this.voidBacklog.size > 0) this.compensate();
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

  /** Called with the writes a compensation undid, once it is committed or applied here. */
  onVoided(listener: (voids: VoidedWrite[]) => void): () => void {
    this.voidedListeners.add(listener);
    return () => this.voidedListeners.delete(listener);
  }

  /** Whether the write `dot` of this item counts: false if a cut of a move of its unit made it void. */
  async writeCounts(table: TableRuntime, key: string, dot: string): Promise<boolean> {
    const unit = this.ownership?.unitFor(table.name, table.config, key);
    if (unit === undefined) return true;
    const { origin, seq } = parseDot(dot);
    return !(await this.dotIsVoid(unit, origin, seq));
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
        let book: VoidBookkeeping | undefined;
        return this.committer
          .submit({
            kind: 'remote',
            entry,
            clock: hlcToHex(clock.current()),
            ...(bytes !== undefined ? { raw: bytes } : {}),
            merge: (current) => {
              const joined = this.joinItems(entry.items, current, entry);
              book = joined.voidBacklog;
              return joined;
            },
          })
          .then((r) => {
            if (r.kind === 'remote' && r.applied && r.quarantined === undefined) this.settleVoids(book);
            return r;
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
      if (r.applied && r.quarantined === undefined && entry.voids !== undefined) for (const l of this.voidedListeners) l(entry.voids);
      if (r.applied && r.quarantined !== undefined) {
        quarantined++;
        this.log.error({ origin: entry.origin, seq: entry.seq, reason: r.quarantined }, 'a peer entry could not be applied: quarantined (logged and relayed, its items unchanged here)');
      } else if (r.applied) {
        applied++;
        this.deps.metrics?.replicationLagMs.observe({ origin: siteOfOrigin(entry.origin) }, Math.max(0, nowMs - hlcMs(hlcFromHex(entry.hlc))));
      } else if (r.reason === 'duplicate') duplicates++;
      else gaps++;
    }
    if (this.voidBacklog.size > 0) this.compensate();
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

  /** Void owned items kept here until their unit's owner compensates them (0 once settled). */
  pendingVoids(): number {
    return this.voidBacklog.size;
  }

  /**
   * Undoes void owned items (ARCHITECTURE.md, "Voiding is per item, by epoch"): as their owner, this
   * site commits for each a write of its own current value (or a tombstone) whose context covers the
   * void dots, so the sites that applied them take this value instead; the entry names them, so every
   * site records the voided values in its conflict feed.
   */
  private compensate(): void {
    this.compensation.request();
  }

  private async compensateOnce(): Promise<void> {
    // a compensation is a write numbered under this site's origin: not before its peers confirmed it
    // (confirmOrigin may yet take a new incarnation; a dot numbered before would have two meanings)
    if (this.ownership === undefined || this.stopping || !this.confirmedOrigin) return;
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
    // they stay in the backlog until the commit that undoes them forgets them (a crash meanwhile loses nothing)
    const todo = [...this.voidBacklog.values()].filter(mine);
    while (todo.length > 0 && this.serving) {
      const batch = todo.splice(0, limits.groupCommitWritesMax);
      const byItem = new Map<string, VoidBacklogItem[]>();
      for (const v of batch) byItem.set(`${v.table}\u0000${v.key}`, [...(byItem.get(`${v.table}\u0000${v.key}`) ?? []), v]);
      for (const voids of byItem.values()) {
        const { table, key } = voids[0]!;
        const runtime = this.table(table);
        const unit = this.ownership.unitFor(table, runtime.config, key);
        if (unit === undefined) continue;
        const clock = this.clock!;
        const identity = this.identity!;
        const resolve = voids.map((v) => ({ table: v.table, key: v.key, dot: v.dot }));
        let built: VoidedWrite[] = [];
        const result = await this.committer.submit({
          kind: 'local',
          refs: [{ table, key }],
          build: (current, seq) => {
            const cur = current[0];
            // to undo: what this site has not seen (others may have applied it), and what it holds itself
            const undo = voids.filter((v) => (cur?.state.c[v.origin] ?? 0) < v.seq || (cur !== undefined && stateHolds(cur.state, v.dot)));
            if (undo.length === 0) throw new UnchangedSignal();
            const epoch = this.ownership!.admit([unit]);
            const dot = dotOf(identity.origin, seq);
            let after = cur ? hlcFromHex(cur.state.w.h) : 0n;
            for (const v of undo) after = maxBig(after, hlcFromHex(v.state.w.h));
            const hlc = clock.tickAfter(after);
            const state = compensatingState(cur?.state, undo, { dot, hlc, site: identity.siteId, origin: identity.origin }, this.deps.store.gcFloor());
            built = undo.map((v) => ({ table: v.table, key: v.key, dot: v.dot, value: v.value }));
            return {
              records: [buildRecord(table, key, runtime.semantics, state)],
              hlc: hlcToHex(hlc),
              clock: hlcToHex(clock.current()),
              epoch,
              voids: built,
              voidBacklog: { resolve, voidedDots: undo.map((v) => ({ origin: v.origin, seq: v.seq })) },
            };
          },
        });
        if (result.kind === 'local' && result.ok) {
          this.settleVoids({ resolve });
          const rec = result.records[0]!;
          await this.recordConflicts(this.voidConflicts(built, rec.state.w));
          for (const l of this.voidedListeners) l(built);
          this.log.warn({ table, key, voided: built.map((v) => v.dot), dot: dotOf(identity.origin, result.seq) }, 'compensated void owned writes');
        } else if (result.kind === 'local' && result.error instanceof UnchangedSignal) {
          // undone already (by an earlier compensation): forgotten, nothing written
          await this.commitVoids({ resolve });
        } else {
          // not admitted yet (a lease being renewed, a promotion pulling): kept for the next try
          retry = true;
        }
      }
    }
    if (retry && !this.stopping) this.deps.env.timers.after(limits.compensateRetryMs, () => this.compensate());
  }

  /** Commits void bookkeeping on its own (no item changes, no log entry), then updates the copy. */
  private async commitVoids(book: VoidBookkeeping): Promise<void> {
    const result = await this.committer.submit({ kind: 'repair', refs: [], merge: () => ({ records: [], conflicts: [], voidBacklog: book }) });
    assert(result.kind === 'repair', 'repair result');
    if (result.failed === undefined) this.settleVoids(book);
  }

  /** The store committed `book`: the copy follows. */
  private settleVoids(book: VoidBookkeeping | undefined): void {
    if (book === undefined) return;
    for (const r of book.resolve ?? []) this.voidBacklog.delete(voidId(r));
    for (const v of book.add ?? []) this.voidBacklog.set(voidId(v), v);
    this.deps.metrics?.voidBacklog.set(this.voidBacklog.size);
  }

  /**
   * Void items a peer's snapshot carried (its void backlog): kept here too, so that whichever site
   * owns their unit compensates them even if it learned of them only through this site.
   */
  async keepVoids(items: VoidBacklogItem[]): Promise<void> {
    const add = this.admitToBacklog(items.filter((v) => !this.voidBacklog.has(voidId(v))));
    if (add.length > 0) await this.commitVoids({ add });
    if (this.voidBacklog.size > 0) this.compensate();
  }

  /**
   * The void items that fit in the backlog (limits.voidBacklogMax). Beyond it they are not kept:
   * still not applied here, but no site may learn of them from this one; each is counted and logged
   * as an error with its dot, for an operator (the entry stays in the log).
   */
  private admitToBacklog(items: VoidBacklogItem[]): VoidBacklogItem[] {
    const room = Math.max(0, limits.voidBacklogMax - this.voidBacklog.size);
    const refused = items.slice(room);
    if (refused.length > 0) {
      this.deps.metrics?.voidBacklogOverflow.inc(refused.length);
      for (const v of refused.slice(0, 10))
        this.log.error({ table: v.table, key: v.key, dot: v.dot, backlogMax: limits.voidBacklogMax }, 'void backlog full: a void owned item is not kept for compensation (not applied here; a site that applied it keeps its value until an operator compensates it)');
    }
    return items.slice(0, room);
  }

  /**
   * Writes of this site that a cut made void: it applied them at commit, so no apply here ever
   * judged them. Once per cut bounding each of its origins (again after a restart: a crash may have
   * come between learning the cut and keeping them; a cut that names no write of the origin bounds
   * it at 0), its own log entries beyond the cut are judged; the
   * void items it still holds go to the backlog, and their Idempotency-Keys stop answering, in one
   * commit per page.
   */
  private async findOwnVoidsOnce(): Promise<void> {
    const ownership = this.ownership;
    if (ownership?.cutsOf === undefined || this.identity === undefined || this.stopping) return;
    const vector = this.vector();
    const floor = this.deps.store.logFloor();
    for (const origin of Object.keys(vector)) {
      if (siteOfOrigin(origin) !== this.siteId) continue;
      const scanned = this.ownVoidsScanned.get(origin) ?? -1;
      const cuts = ownership.cutsOf(origin).filter((c) => c.epoch > scanned);
      if (cuts.length === 0) continue;
      const newest = Math.max(...cuts.map((c) => c.epoch));
      let from = Math.max(Math.min(...cuts.map((c) => c.seq)), floor[origin] ?? 0);
      const upTo = { [origin]: vector[origin]! };
      while (from < upTo[origin]! && this.serving) {
        const entries = await this.deps.store.readLog({ [origin]: from }, limits.feedBatchEntriesMax, limits.feedBatchBytesMax, upTo);
        if (entries.length === 0) break;
        from = entries[entries.length - 1]!.seq;
        const found: VoidBacklogItem[] = [];
        for (const e of entries) {
          // an origin's owned entries carry nondecreasing epochs; none admitted at or after the
          // newest cut's epoch is beyond a cut taken then (the origin may be younger than the cut)
          if (e.epoch !== undefined && e.epoch >= newest) {
            from = upTo[origin]!;
            break;
          }
          if (e.epoch === undefined || e.voids !== undefined) continue;
          for (const item of e.items) {
            const runtime = this.tables.get(item.table);
            const unit = runtime === undefined ? undefined : ownedUnit(ownership, runtime, item.key);
            if (unit === undefined || ownership.counts(unit, e.origin, e.seq, e.epoch)) continue;
            const rec = buildRecord(item.table, item.key, runtime!.semantics, item.state);
            found.push({ table: item.table, key: item.key, dot: dotOf(e.origin, e.seq), value: rec.live ? rec.value! : null, origin: e.origin, seq: e.seq, state: item.state });
          }
        }
        if (found.length === 0) continue;
        let book: VoidBookkeeping = {};
        const result = await this.committer.submit({
          kind: 'repair',
          refs: found.map((f) => ({ table: f.table, key: f.key })),
          merge: (current) => {
            // only what it still holds: a compensation it applied since took the rest away
            const held = found.filter((f, i) => current[i] !== undefined && stateHolds(current[i]!.state, f.dot) && !this.voidBacklog.has(voidId(f)));
            book = { add: this.admitToBacklog(held), voidedDots: found.map((f) => ({ origin: f.origin, seq: f.seq })) };
            return { records: [], conflicts: [], voidBacklog: book };
          },
        });
        assert(result.kind === 'repair', 'repair result');
        if (result.failed !== undefined) return;
        this.settleVoids(book);
        if ((book.add?.length ?? 0) > 0) this.log.warn({ origin, dots: book.add!.slice(0, 10).map((v) => v.dot) }, 'writes of this site found void by a cut: kept for compensation, their Idempotency-Keys dropped');
      }
      this.ownVoidsScanned.set(origin, newest);
    }
    if (this.voidBacklog.size > 0) this.compensate();
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
    // "Voiding is per item, by epoch": a peer's state may hold void writes (its own, as an old owner
    // that applied them at commit, or taken from another state). Anti-entropy keeps them for
    // compensation instead of joining them. A snapshot holding them is refused: joining the rest of
    // such an item would lose nothing here, but leaving it out would lose the valid writes under it
    // that the snapshot's vector says this site has; another peer's (or this one's, once the owner
    // compensated) will do.
    const voidDots = await this.voidDotsOf(items);
    if (covering !== undefined && voidDots.some((d) => d !== undefined)) {
      const named = items.flatMap((it, i) => (voidDots[i] ?? []).map((d) => `${it.table}/${it.key}@${d.dot}`)).slice(0, 5);
      throw new Error(`the peer's snapshot holds void owned writes not compensated yet (${named.join(', ')}): not installed; trying again later`);
    }
    let book: VoidBookkeeping | undefined;
    const result = await this.committer.submit({
      kind: 'repair',
      refs: items.map((i) => ({ table: i.table, key: i.key })),
      merge: (current) => {
        const superseded = current.map((c) => covering !== undefined && c !== undefined && dominates(covering, c.state.c));
        const joined = this.joinItems(items, current.map((c, i) => (superseded[i] ? undefined : c)), undefined, voidDots);
        book = joined.voidBacklog;
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
        return { records, conflicts: joined.conflicts, ...(book !== undefined ? { voidBacklog: book } : {}) };
      },
    });
    assert(result.kind === 'repair', 'repair result');
    if (result.failed === undefined) this.settleVoids(book);
    if (this.voidBacklog.size > 0) this.compensate();
    if (result.failed !== undefined) {
      this.log.error({ keys: items.slice(0, 10).map((i) => `${i.table}/${i.key}`), reason: result.failed }, 'peer item states could not be joined here: not repaired');
      return 0;
    }
    if (changed > 0 && covering === undefined) for (const l of this.outsideLogListeners) l('anti-entropy repair');
    return changed;
  }

  /** Per item of an owned unit, the dots of writes it holds that do not count (undefined: none). */
  private async voidDotsOf(items: { table: string; key: string; state: ItemState }[]): Promise<(VoidDot[] | undefined)[]> {
    const ownership = this.ownership;
    if (ownership === undefined) return [];
    const out: (VoidDot[] | undefined)[] = [];
    for (const item of items) {
      const runtime = this.tables.get(item.table);
      const unit = runtime === undefined ? undefined : ownedUnit(ownership, runtime, item.key);
      const found: VoidDot[] = [];
      if (unit !== undefined)
        for (const dot of dotsHeld(item.state)) {
          const { origin, seq } = parseDot(dot);
          if (await this.dotIsVoid(unit, origin, seq)) found.push({ dot, origin, seq });
        }
      out.push(found.length > 0 ? found : undefined);
    }
    return out;
  }

  /**
   * Whether the write (origin, seq) of an owned item does not count. Item states carry dots, not
   * epochs: by the topology's timeline and cuts alone where they tell (Ownership.dotCounts); where
   * the unit went back to the dot's site since a cut the dot is beyond, by the epoch of its entry
   * if this site still has it, and otherwise it counts (the one case left undecided).
   */
  private async dotIsVoid(unit: string, origin: string, seq: number): Promise<boolean> {
    const ownership = this.ownership!;
    const verdict = ownership.dotCounts === undefined ? true : ownership.dotCounts(unit, origin, seq);
    if (verdict !== undefined) return !verdict;
    const [entry] = await this.deps.store.readLog({ [origin]: seq - 1 }, 1, limits.feedBatchBytesMax, { [origin]: seq });
    if (entry === undefined || entry.seq !== seq || entry.epoch === undefined || entry.voids !== undefined) return false;
    return !ownership.counts(unit, origin, seq, entry.epoch);
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
    entry: LogEntry | undefined,
    voidDots?: (VoidDot[] | undefined)[],
  ): { records: ItemRecord[]; conflicts: ConflictRecord[]; voided?: boolean; voidBacklog?: VoidBookkeeping } {
    const records: ItemRecord[] = [];
    const conflicts: ConflictRecord[] = [];
    const found: VoidBacklogItem[] = [];
    const book: VoidBookkeeping = {};
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
      // and forgets them, in this commit; a key of a void write stops answering
      book.resolve = entry.voids.map((v) => ({ table: v.table, key: v.key, dot: v.dot }));
      book.voidedDots = entry.voids.map((v) => parseDot(v.dot));
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
          const dot = dotOf(entry.origin, entry.seq);
          // the owner's compensation came first (its state has seen the dot and does not hold it): nothing left to undo
          const cur = current[i]?.state;
          if (cur !== undefined && (cur.c[entry.origin] ?? 0) >= entry.seq && !stateHolds(cur, dot)) {
            this.log.warn({ unit, table: item.table, key: item.key, dot, epoch: entry.epoch ?? 0 }, 'void owned item not applied: beyond the cut of a move of its unit, compensated already');
            return;
          }
          // every site keeps it, durably with this entry: whichever owns the unit (now or after a later move) compensates
          const voidRec = buildRecord(item.table, item.key, runtime.semantics, item.state);
          found.push({ table: item.table, key: item.key, dot, value: voidRec.live ? voidRec.value! : null, origin: entry.origin, seq: entry.seq, state: item.state });
          this.log.warn({ unit, table: item.table, key: item.key, dot, epoch: entry.epoch ?? 0 }, 'void owned item not applied: beyond the cut of a move of its unit');
          return;
        }
      }
      // An item state from anti-entropy or a snapshot holding void dots this site has not seen (or
      // holds itself): kept for compensation; one it has not seen is not joined.
      const suspects = voidDots?.[i];
      if (suspects !== undefined && runtime !== undefined) {
        const cur = current[i]?.state;
        const unseen = suspects.filter((d) => (cur?.c[d.origin] ?? 0) < d.seq);
        const held = suspects.filter((d) => cur !== undefined && (cur.c[d.origin] ?? 0) >= d.seq && stateHolds(cur, d.dot));
        const voidRec = buildRecord(item.table, item.key, runtime.semantics, item.state);
        for (const d of [...unseen, ...held])
          found.push({ table: item.table, key: item.key, dot: d.dot, value: voidRec.live ? voidRec.value! : null, origin: d.origin, seq: d.seq, state: item.state });
        if (unseen.length > 0) {
          this.deps.metrics?.voidedItems.inc();
          this.log.warn({ table: item.table, key: item.key, dots: unseen.map((d) => d.dot) }, 'a peer\'s item state holds void owned writes: not joined, kept for compensation');
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
    const fresh = found.filter((v, i) => !this.voidBacklog.has(voidId(v)) && found.findIndex((w) => voidId(w) === voidId(v)) === i);
    if (fresh.length > 0) book.add = this.admitToBacklog(fresh);
    const voidBacklog = book.add !== undefined || book.resolve !== undefined ? { voidBacklog: book } : {};
    return voided ? { records, conflicts, voided, ...voidBacklog } : { records, conflicts, ...voidBacklog };
  }
}

class UnchangedSignal extends Error {}
class NothingToWrite extends Error {}

/** A dot of an owned item found void. */
interface VoidDot {
  dot: string;
  origin: string;
  seq: number;
}

/** A void item's place in the backlog. */
function voidId(v: { table: string; key: string; dot: string }): string {
  return `${v.table}\u0000${v.key}\u0000${v.dot}`;
}

/** Whether a state still holds an entry (a register, a set add, an existence dot) of the write `dot`. */
function stateHolds(state: ItemState, dot: string): boolean {
  if (state.x.includes(dot)) return true;
  for (const siblings of Object.values(state.r)) if (siblings.some((x) => x.d === dot)) return true;
  for (const elements of Object.values(state.s)) for (const dots of Object.values(elements)) if (dots.includes(dot)) return true;
  return false;
}

/** The dots of the writes a state holds entries of. */
function dotsHeld(state: ItemState): Set<string> {
  const out = new Set<string>(state.x);
  for (const siblings of Object.values(state.r)) for (const x of siblings) out.add(x.d);
  for (const elements of Object.values(state.s)) for (const dots of Object.values(elements)) for (const d of dots) out.add(d);
  return out;
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
