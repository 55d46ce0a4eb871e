// The operation history of a workload (invoke, ok, fail, unknown) and the checks run on it after
// the cluster converges: acknowledged writes not lost (present, in a conflict feed, or superseded
// by a causally later write), counters within their acknowledged bounds (increments that a delete
// observed excluded), no resurrected deletes. And the disk ledger, which follows what each site's
// disk holds while the workload runs (what is synced, what a power loss or a rolled-back disk takes
// away) and judges as it goes: a dot never issued twice with different content, a quorum ack only
// when a majority durably held that exact entry, no read of a site's own write before it is durable.
import { createHash } from 'node:crypto';
import { canonicalJson, type JsonValue } from '../core/canonical-json.js';
import { covers, siteOfOrigin, parseDot, type Dot, type VersionVector } from '../core/vector.js';
import { joinStates, type ItemState } from '../core/item.js';
import { materialize, type TableSemantics } from '../core/materialize.js';
import type { LogEntry } from '../store/types.js';

export type OpStatus = 'pending' | 'ok' | 'fail';

export interface HistoryOp {
  id: number;
  site: string;
  table: string;
  key: string;
  kind: 'put' | 'delete' | 'increment' | 'patch';
  /** increment amount */
  amount?: number;
  status: OpStatus;
  dot?: Dot;
  invokedAtMs: number;
  completedAtMs?: number;
}

export class History {
  readonly ops: HistoryOp[] = [];

  invoke(op: Omit<HistoryOp, 'id' | 'status'>): HistoryOp {
    const full: HistoryOp = { ...op, id: this.ops.length, status: 'pending' };
    this.ops.push(full);
    return full;
  }
}

export interface FinalItem {
  table: string;
  key: string;
  state: ItemState | undefined;
  live: boolean;
  value: unknown;
}

export interface CheckInput {
  history: History;
  /** every log entry of the converged cluster (any one site's log: all sites hold all entries) */
  log: LogEntry[];
  /** final item per table/key, from any one site */
  items: Map<string, FinalItem>;
  /** loser dots from the conflict feeds of every site */
  conflictLosers: Set<Dot>;
  /** which table is lww, which keys are counter-only */
  lwwTables: Set<string>;
  counterField: (table: string) => string | undefined;
}

export interface Anomaly {
  kind:
    | 'lost-write'
    | 'counter-out-of-bounds'
    | 'resurrected'
    | 'unlogged-ack'
    | 'reissued-dot'
    | 'unbacked-quorum-ack'
    | 'read-before-durable'
    | 'read-not-of-its-vector'
    | 'acked-write-lost'
    | 'idempotent-write-applied-twice';
  detail: string;
}

/** The identity of a log entry's content: canonical JSON of its hlc and item states, hashed. */
export function entryHash(entry: Pick<LogEntry, 'hlc' | 'items'>): string {
  const content = { hlc: entry.hlc, items: entry.items.map((i) => ({ table: i.table, key: i.key, state: i.state })) };
  return createHash('sha256').update(canonicalJson(content as unknown as JsonValue)).digest('hex').slice(0, 32);
}

interface Fact {
  dot: Dot;
  hash: string;
}

/** What one site's disk holds: entries synced (durable), entries written after the last sync started. */
interface SiteDisk {
  durable: Map<Dot, string>;
  unsynced: Fact[];
  /** how many entries this disk's unsynced list ever had before unsynced[0] (syncs may overlap) */
  base: number;
  /** bumped when unsynced is reset (crash, power loss, rollback, wipe): older sync tokens are void */
  epoch: number;
  /** what snapshots installed here cover (their entries are not held one by one) */
  snapshotVector: VersionVector;
}

/** A copy of a site's disk (`cp -a` of a running site): everything written, synced or not. */
export interface DiskCopy {
  site: string;
  entries: Map<Dot, string>;
  snapshotVector: VersionVector;
}

export interface SyncToken {
  epoch: number;
  upTo: number;
}

/**
 * The simulation's own account of every site's disk, fed by the store's commits and the injected
 * fdatasync, so that its judgements do not rest on what the store claims (its vectors are what is
 * under test). Entries are known by dot and content hash.
 */
export class DiskLedger {
  readonly anomalies: Anomaly[] = [];
  private readonly disks = new Map<string, SiteDisk>();
  /** every local commit that some site still holds: what its dot means */
  private readonly issued = new Map<Dot, { hash: string; entry: LogEntry; site: string }>();
  /** `site dot hash` for every entry a site ever held durably (a later loss does not undo a past ack) */
  private readonly everDurable = new Set<string>();

  private disk(site: string): SiteDisk {
    let d = this.disks.get(site);
    if (d === undefined) {
      d = { durable: new Map(), unsynced: [], base: 0, epoch: 0, snapshotVector: {} };
      this.disks.set(site, d);
    }
    return d;
  }

  /** A local write committed at `site` (in the WAL, not yet synced). */
  committedLocal(site: string, entry: LogEntry): void {
    const dot = `${entry.origin}:${entry.seq}`;
    const hash = entryHash(entry);
    const before = this.issued.get(dot);
    if (before !== undefined && before.hash !== hash)
      this.anomalies.push({
        kind: 'reissued-dot',
        detail: `${site} issued ${dot} again with different content (first by ${before.site}, still held by ${this.holders(dot, before.hash).join(', ')})`,
      });
    this.issued.set(dot, { hash, entry, site });
    this.disk(site).unsynced.push({ dot, hash });
  }

  /**
   * A peer's entry applied at `site` (not yet synced). It may arrive after every site that held it
   * lost it (in flight when its origin's disk was rolled back): its dot means this content again.
   */
  committedRemote(site: string, entry: LogEntry): void {
    const dot = `${entry.origin}:${entry.seq}`;
    const hash = entryHash(entry);
    const before = this.issued.get(dot);
    if (before === undefined) this.issued.set(dot, { hash, entry, site: siteOfOrigin(entry.origin) });
    else if (before.hash !== hash)
      this.anomalies.push({ kind: 'reissued-dot', detail: `${site} received ${dot} with content other than what ${before.site} issued under it` });
    this.disk(site).unsynced.push({ dot, hash });
  }

  /** A snapshot installed at `site`: it covers `vector` without holding the entries. */
  installedSnapshot(site: string, vector: VersionVector): void {
    const d = this.disk(site);
    for (const [o, s] of Object.entries(vector)) if (s > (d.snapshotVector[o] ?? 0)) d.snapshotVector[o] = s;
  }

  /** An fdatasync of `site`'s WAL starts: it covers everything committed before. */
  syncStarted(site: string): SyncToken {
    const d = this.disk(site);
    return { epoch: d.epoch, upTo: d.base + d.unsynced.length };
  }

  syncDone(site: string, token: SyncToken): void {
    const d = this.disk(site);
    if (token.epoch !== d.epoch || token.upTo <= d.base) return;
    const covered = token.upTo - d.base;
    for (const f of d.unsynced.slice(0, covered)) this.makeDurable(site, d, f);
    d.unsynced = d.unsynced.slice(covered);
    d.base = token.upTo;
  }

  private resetUnsynced(d: SiteDisk): void {
    d.unsynced = [];
    d.base = 0;
    d.epoch++;
  }

  private makeDurable(site: string, d: SiteDisk, f: Fact): void {
    d.durable.set(f.dot, f.hash);
    this.everDurable.add(`${site} ${f.dot} ${f.hash}`);
  }

  /** kill -9: the OS keeps what was written, synced or not. */
  processCrash(site: string): void {
    const d = this.disk(site);
    for (const f of d.unsynced) this.makeDurable(site, d, f);
    this.resetUnsynced(d);
  }

  /** The machine loses power: what was not synced is gone. Returns the lost entries. */
  powerLoss(site: string): Fact[] {
    const d = this.disk(site);
    const lost = d.unsynced.filter((f) => d.durable.get(f.dot) !== f.hash);
    this.resetUnsynced(d);
    this.forgetUnheld(lost);
    return lost;
  }

  copyDisk(site: string): DiskCopy {
    const d = this.disk(site);
    const entries = new Map(d.durable);
    for (const f of d.unsynced) entries.set(f.dot, f.hash);
    return { site, entries, snapshotVector: { ...d.snapshotVector } };
  }

  /** The site's disk is replaced by `copy` (empty for a wipe). Returns what it held and the copy does not. */
  rollBack(site: string, copy: DiskCopy | undefined): Fact[] {
    const d = this.disk(site);
    const now = this.copyDisk(site).entries;
    const lost = [...now].filter(([dot, hash]) => copy?.entries.get(dot) !== hash).map(([dot, hash]) => ({ dot, hash }));
    d.durable = new Map(copy?.entries ?? []);
    this.resetUnsynced(d);
    d.snapshotVector = { ...(copy?.snapshotVector ?? {}) };
    for (const [dot, hash] of d.durable) this.everDurable.add(`${site} ${dot} ${hash}`);
    this.forgetUnheld(lost);
    return lost;
  }

  /** Lost entries that no site holds any more never happened: their dots may be issued again. */
  private forgetUnheld(lost: Fact[]): void {
    for (const f of lost) if (this.issued.get(f.dot)?.hash === f.hash && this.holders(f.dot, f.hash).length === 0) this.issued.delete(f.dot);
  }

  /**
   * The sites holding this exact entry, or its effect: a site that installed a snapshot covering the
   * dot holds the states it wrote without the entry itself (the snapshot cannot tell one content of
   * a dot from another, so this errs on the side of "still held").
   */
  holders(dot: Dot, hash: string): string[] {
    const { origin, seq } = parseDot(dot);
    const out: string[] = [];
    for (const [site, d] of this.disks)
      if (d.durable.get(dot) === hash || d.unsynced.some((f) => f.dot === dot && f.hash === hash) || (d.snapshotVector[origin] ?? 0) >= seq) out.push(site);
    return out;
  }

  /** True while some site holds this exact entry (after a loss: whether it survived elsewhere). */
  isHeld(fact: Fact): boolean {
    return this.holders(fact.dot, fact.hash).length > 0;
  }

  /** The highest seq of `origin` that `site` holds durably. */
  durableSeq(site: string, origin: string): number {
    let max = 0;
    for (const dot of this.disk(site).durable.keys()) {
      const p = parseDot(dot);
      if (p.origin === origin && p.seq > max) max = p.seq;
    }
    return max;
  }

  /**
   * A quorum write `dot` was acknowledged: a majority of `dataSites` must have durably held that
   * exact entry (the one its origin issued last under this dot), now or before a later loss.
   */
  quorumAcked(dot: Dot, dataSites: string[], detail: string): void {
    const issued = this.issued.get(dot);
    const { origin, seq } = parseDot(dot);
    const backing = dataSites.filter(
      (s) => (issued !== undefined && this.everDurable.has(`${s} ${dot} ${issued.hash}`)) || (this.disks.get(s)?.snapshotVector[origin] ?? 0) >= seq,
    );
    const needed = Math.floor(dataSites.length / 2) + 1;
    if (backing.length < needed)
      this.anomalies.push({
        kind: 'unbacked-quorum-ack',
        detail: `${detail}: quorum ack of ${dot} but only ${backing.length} of ${dataSites.length} sites durably held it (${backing.join(', ') || 'none'}; needed ${needed})`,
      });
  }

  /** A read at `site` (own origin `origin`) returned a state whose context is `context`. */
  readReturned(site: string, origin: string, context: VersionVector, detail: string): void {
    const seen = context[origin] ?? 0;
    const durable = this.durableSeq(site, origin);
    if (seen > durable)
      this.anomalies.push({ kind: 'read-before-durable', detail: `${detail}: read at ${site} saw ${origin}:${seen}, durable there only up to ${durable}` });
  }

  /**
   * A read at a site whose store covered `vector` when it read (Store.committedVector, taken in the
   * same turn) returned `read` (undefined: no live item). Every site's state of an item is the join
   * of the writes its vector covers, whatever arrived how (entries, snapshots, repairs) and whatever
   * was purged on the way; so the read must show what that join shows. A purged tombstone whose
   * concurrent write arrives later, or a counter pair that came back from an older disk, shows here.
   */
  readAgainstLog(table: string, key: string, semantics: TableSemantics, vector: VersionVector, read: { live: boolean; value: unknown } | undefined, detail: string): void {
    let joined: ItemState | undefined;
    for (const { entry } of this.issued.values()) {
      if ((vector[entry.origin] ?? 0) < entry.seq) continue;
      for (const item of entry.items) {
        if (item.table !== table || item.key !== key) continue;
        joined = joined === undefined ? item.state : joinStates(joined, item.state, { pruneToMax: semantics.conflict === 'lww' });
      }
    }
    const expected = joined === undefined ? undefined : materialize(semantics, joined);
    const want = expected?.live ? canonicalJson(expected.value) : 'absent';
    const got = read?.live ? canonicalJson(read.value as JsonValue) : 'absent';
    if (want !== got) this.anomalies.push({ kind: 'read-not-of-its-vector', detail: `${detail}: read ${got}, but the writes its vector covers make ${want}` });
  }

  /** Every local commit some site holds: the history checker's view of the whole log. */
  entries(): LogEntry[] {
    return [...this.issued.values()].map((i) => i.entry);
  }
}

const ref = (t: string, k: string) => `${t}\u0000${k}`;

export function checkHistory(input: CheckInput): Anomaly[] {
  const anomalies: Anomaly[] = [];
  const entryStates = new Map<Dot, Map<string, ItemState>>();
  for (const e of input.log) {
    const m = new Map<string, ItemState>();
    for (const i of e.items) m.set(ref(i.table, i.key), i.state);
    entryStates.set(`${e.origin}:${e.seq}`, m);
  }
  const writesByItem = new Map<string, Dot[]>();
  for (const [dot, items] of entryStates)
    for (const r of items.keys()) writesByItem.set(r, [...(writesByItem.get(r) ?? []), dot]);

  for (const op of input.history.ops) {
    if (op.status !== 'ok' || op.dot === undefined || op.dot.endsWith(':0')) continue;
    const r = ref(op.table, op.key);
    const own = entryStates.get(op.dot)?.get(r);
    if (!own) {
      anomalies.push({ kind: 'unlogged-ack', detail: `op ${op.id} ${op.kind} ${op.table}/${op.key} acked as ${op.dot} but no site logged it` });
      continue;
    }
    if (!input.lwwTables.has(op.table)) continue;
    const final = input.items.get(r);
    const winner = final?.state?.r['']?.[0]?.d;
    if (winner === op.dot) continue;
    // a delete that lost to a concurrent delete left the same content: not a conflict, not lost
    if (op.kind === 'delete' && (final === undefined || !final.live)) continue;
    if (input.conflictLosers.has(op.dot)) continue;
    const superseded = (writesByItem.get(r) ?? []).some((d) => d !== op.dot && covers(entryStates.get(d)!.get(r)!.c, op.dot!));
    if (!superseded)
      anomalies.push({ kind: 'lost-write', detail: `op ${op.id} ${op.kind} ${op.table}/${op.key} ${op.dot}: not final (winner ${winner}), not in a conflict feed, not superseded` });
    if (op.kind === 'delete' && final?.live && winner !== undefined && covers(own.c, winner))
      anomalies.push({ kind: 'resurrected', detail: `${op.table}/${op.key}: ${winner} was seen by delete ${op.dot} yet is live` });
  }

  // A write sent with an Idempotency-Key, however often repeated, at whatever sites, is one entry.
  const byIdempotencyKey = new Map<string, Dot[]>();
  for (const e of input.log)
    if (e.idempotency !== undefined) byIdempotencyKey.set(e.idempotency.key, [...(byIdempotencyKey.get(e.idempotency.key) ?? []), `${e.origin}:${e.seq}`]);
  for (const [key, dots] of byIdempotencyKey)
    if (dots.length > 1) anomalies.push({ kind: 'idempotent-write-applied-twice', detail: `Idempotency-Key ${key} was written ${dots.length} times: ${dots.join(', ')}` });

  // A counter holds the increments no delete observed: a delete's entry (no existence dot left)
  // carries in its context the dots it removed. An increment of unknown outcome may count or not.
  const deletesByItem = new Map<string, ItemState[]>();
  for (const [, items] of entryStates)
    for (const [r, state] of items) if (input.counterField(r.split('\u0000')[0]!) !== undefined && state.x.length === 0) deletesByItem.set(r, [...(deletesByItem.get(r) ?? []), state]);
  // Unknown increments are summed by sign: a +5 and a -5 of unknown outcome must widen the bounds
  // both ways, not cancel out (acked + Σ negative unknowns ≤ value ≤ acked + Σ positive unknowns).
  const counters = new Map<string, { acked: number; up: number; down: number }>();
  for (const op of input.history.ops) {
    if (op.kind !== 'increment') continue;
    const r = ref(op.table, op.key);
    const c = counters.get(r) ?? { acked: 0, up: 0, down: 0 };
    const observed = op.dot !== undefined && (deletesByItem.get(r) ?? []).some((d) => covers(d.c, op.dot!));
    if (op.status === 'ok' && !observed) c.acked += op.amount!;
    else if (op.status === 'pending' && op.amount! > 0) c.up += op.amount!;
    else if (op.status === 'pending') c.down += op.amount!;
    counters.set(r, c);
  }
  for (const [r, c] of counters) {
    const final = input.items.get(r);
    const [table] = r.split('\u0000') as [string];
    const field = input.counterField(table)!;
    const value = ((final?.value as Record<string, number> | undefined)?.[field] ?? 0) as number;
    const lo = c.acked + c.down;
    const hi = c.acked + c.up;
    if (value < lo || value > hi)
      anomalies.push({ kind: 'counter-out-of-bounds', detail: `${r.replace('\u0000', '/')}: ${value} not within [${lo}, ${hi}]` });
  }
  return anomalies;
}
