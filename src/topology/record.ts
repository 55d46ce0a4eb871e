// The topology record (ARCHITECTURE.md, "Topology, leases and failover"): who is a member, who owns
// each `global` table and each partition of a `partitioned` table, the cuts taken when ownership
// moved, and a history of who changed what, why and when. A record is changed only by a majority of
// voters (paxos.ts); every function here is pure.
//
// Ownership is kept per *unit*: a global table `T`, or a partition `T/P` of a partitioned table.
// Every change of a unit's owner is kept in `changes` (the timeline), because whether a log entry
// of an owned item counts depends on who owned its unit at the entry's epoch and on the cuts of
// every later move away from its site (entryCounts).
import { assert } from '../core/assert.js';
import { siteOfOrigin, type VersionVector } from '../core/vector.js';
import type { ClusterConfig, TableConfig } from '../config/schema.js';

export type MemberKind = 'site' | 'witness';
export type MemberState = 'joining' | 'active' | 'draining' | 'evacuated' | 'down' | 'removed';
export const memberStates: readonly MemberState[] = ['joining', 'active', 'draining', 'evacuated', 'down', 'removed'];

export interface TopologyMember {
  id: string;
  kind: MemberKind;
  state: MemberState;
  /** where peers reach it (members added online are not in the config file) */
  url?: string;
  region?: string;
  /** the epoch that removed it: its final cut is recorded at this epoch (removedOriginCounts) */
  removedAt?: number;
  /**
   * `down` by `failover --force` at this epoch (not by a majority): its writes beyond the forced
   * cut are void by the operator's decision, so cuts no longer need a read quorum that counts it.
   */
  forcedDownAt?: number;
}

/** The highest seq of `origin` that counts for units moved at `epoch`; later entries of it are void. */
export interface Cut {
  epoch: number;
  origin: string;
  seq: number;
}

/** From `epoch` on, `unit` is owned by `owner` (null: revoked, nobody may write it). */
export interface OwnershipChange {
  epoch: number;
  unit: string;
  owner: string | null;
}

export interface HistoryEntry {
  epoch: number;
  action: string;
  by: string;
  why: string;
  atMs: number;
  detail?: string;
  /** written by `failover --force` to the voters it reached, without a majority */
  forced?: boolean;
}

/** A planned handover in progress: `from` fences these units and parks their writes. */
export interface Handover {
  units: string[];
  from: string;
  to: string;
}

export interface Topology {
  epoch: number;
  members: TopologyMember[];
  /** owner of each `global` table (null while being moved) */
  owners: Record<string, string | null>;
  /** per partitioned table: partition → owner */
  homes: Record<string, Record<string, string | null>>;
  cuts: Cut[];
  changes: OwnershipChange[];
  history: HistoryEntry[];
  /** revoked units and the site an operator chose to take each (default: the table's failoverOrder) */
  targets?: Record<string, string>;
  handover?: Handover;
  /**
   * The data memberships in force before the latest changes of data membership (newest last, at
   * most priorDataMax): quorum writes need a majority of the newest of them as well as of the
   * current one (joint quorum), and a cut reads |M|−Q(M)+1 sites of each (members.ts).
   */
  priorData?: string[][];
  /** the latest epoch that changed the voters (a member became active or was removed) */
  voterChangeEpoch?: number;
}

/** Bounds of the record's lists: the oldest entries go first. */
export const changesMax = 10_000;
export const cutsMax = 10_000;
export const historyMax = 1_000;

export function unitOf(table: string, partition?: string): string {
  return partition === undefined ? table : `${table}/${partition}`;
}

export function splitUnit(unit: string): { table: string; partition?: string } {
  const i = unit.indexOf('/');
  return i < 0 ? { table: unit } : { table: unit.slice(0, i), partition: unit.slice(i + 1) };
}

/**
 * The home units a data site brings, owned by it, that `homes` does not have yet: for a table
 * partitioned by key prefix, its id and its region (the first site of a region homes the region's
 * prefix); for a first-writer table, its id (the registry maps each partition to a site, whose unit
 * it is). At genesis for every configured site, and when a site added online becomes active.
 */
export function homeUnitsOf(tables: Record<string, TableConfig>, site: { id: string; region?: string }, homes: Topology['homes']): [table: string, partition: string][] {
  const out: [string, string][] = [];
  for (const [name, t] of Object.entries(tables)) {
    if (t.pattern !== 'partitioned') continue;
    const prefixes = t.home?.from === 'key-prefix' && site.region !== undefined && site.region !== site.id ? [site.id, site.region] : [site.id];
    for (const p of prefixes) if (!(p in (homes[name] ?? {}))) out.push([name, p]);
  }
  return out;
}

/** Epoch 0: what the config says, the same at every member without any vote. */
export function genesisTopology(config: ClusterConfig): Topology {
  const owners: Topology['owners'] = {};
  const homes: Topology['homes'] = {};
  const changes: OwnershipChange[] = [];
  for (const [name, t] of Object.entries(config.tables)) {
    if (t.pattern === 'global') {
      owners[name] = t.writeSite!;
      changes.push({ epoch: 0, unit: unitOf(name), owner: t.writeSite! });
    } else if (t.pattern === 'partitioned')
      for (const s of config.sites)
        for (const [, partition] of homeUnitsOf({ [name]: t }, s, homes)) {
          (homes[name] ??= {})[partition] = s.id;
          changes.push({ epoch: 0, unit: unitOf(name, partition), owner: s.id });
        }
  }
  return {
    epoch: 0,
    members: [
      ...config.sites.map((s) => ({ id: s.id, kind: 'site' as const, state: 'active' as const, url: s.url, ...(s.region ? { region: s.region } : {}) })),
      ...config.witnesses.map((w) => ({ id: w.id, kind: 'witness' as const, state: 'active' as const, url: w.url })),
    ],
    owners,
    homes,
    cuts: [],
    changes,
    history: [{ epoch: 0, action: 'genesis', by: 'config', why: 'the cluster config', atMs: 0 }],
  };
}

/** Voting members: witnesses and every data site that is not joining, down or removed. */
export function voters(t: Topology): string[] {
  return t.members.filter((m) => m.state !== 'removed' && m.state !== 'down' && (m.kind === 'witness' || m.state !== 'joining')).map((m) => m.id);
}

export function majority(n: number): number {
  return Math.floor(n / 2) + 1;
}

/** Data sites that serve: whose acks count for quorums (never joining or down ones, never witnesses). */
export function dataSites(t: Topology): string[] {
  return t.members.filter((m) => m.kind === 'site' && (m.state === 'active' || m.state === 'draining' || m.state === 'evacuated')).map((m) => m.id);
}

export function member(t: Topology, id: string): TopologyMember | undefined {
  return t.members.find((m) => m.id === id);
}

/** The owner of a unit in this record (null: revoked; undefined: no such unit). */
export function ownerOfUnit(t: Topology, unit: string): string | null | undefined {
  const { table, partition } = splitUnit(unit);
  if (partition === undefined) return t.owners[table];
  return t.homes[table]?.[partition];
}

/** Every unit and its owner in this record. */
export function units(t: Topology): { unit: string; owner: string | null }[] {
  const out: { unit: string; owner: string | null }[] = [];
  for (const [table, owner] of Object.entries(t.owners)) out.push({ unit: unitOf(table), owner });
  for (const [table, map] of Object.entries(t.homes)) for (const [p, owner] of Object.entries(map)) out.push({ unit: unitOf(table, p), owner });
  return out;
}

export function unitsOwnedBy(t: Topology, site: string): string[] {
  return units(t)
    .filter((u) => u.owner === site)
    .map((u) => u.unit);
}

/** Who owned `unit` at `epoch` (by the timeline), or undefined if the timeline does not say. */
export function ownerAt(t: Topology, unit: string, epoch: number): string | null | undefined {
  let owner: string | null | undefined;
  for (const c of t.changes) {
    if (c.epoch > epoch) break;
    if (c.unit === unit) owner = c.owner;
  }
  return owner;
}

/**
 * Whether an owned item written by entry (origin, seq) admitted under `entryEpoch` counts
 * ("voiding is per item, by epoch"): the entry's site owned the unit at that epoch, and for every
 * later move of the unit away from that site, seq is within that move's cut for the origin. A move
 * whose cut is not taken yet (revoked, not installed) does not void anything yet.
 */
export function entryCounts(t: Topology, unit: string, origin: string, seq: number, entryEpoch: number): boolean {
  const site = siteOfOrigin(origin);
  const timeline = t.changes.filter((c) => c.unit === unit);
  // an entry older than the kept timeline: its moves are long settled and it was judged then
  if (timeline.length === 0 || timeline[0]!.epoch > entryEpoch) return true;
  let owner: string | null | undefined;
  for (const c of timeline) if (c.epoch <= entryEpoch) owner = c.owner;
  if (owner !== site) return false;
  return movesAway(timeline, site).every((m) => timeline[m.at]!.epoch <= entryEpoch || m.installEpoch === undefined || seq <= cutSeq(t, m.installEpoch, origin));
}

/**
 * The moves of one unit away from `site` in its kept timeline: where each starts (its index) and
 * the epoch of the install that takes its cut, where the unit gets its next owner (undefined while
 * it has none yet).
 */
export function movesAway(timeline: readonly OwnershipChange[], site: string): { at: number; installEpoch: number | undefined }[] {
  const out: { at: number; installEpoch: number | undefined }[] = [];
  let prev: string | null | undefined;
  for (let i = 0; i < timeline.length; i++) {
    const c = timeline[i]!;
    if (prev === site && c.owner !== site) out.push({ at: i, installEpoch: timeline.slice(i).find((x) => x.owner !== null)?.epoch });
    prev = c.owner;
  }
  return out;
}

/** What the cut taken at `epoch` holds of `origin` (0 where it names none of its writes). */
export function cutSeq(t: Pick<Topology, 'cuts'>, epoch: number, origin: string): number {
  return t.cuts.find((k) => k.epoch === epoch && k.origin === origin)?.seq ?? 0;
}

/**
 * The cuts that bound `origin`'s owned writes: one for each move of a unit away from site(origin),
 * at the seq the cut names for the origin, or at 0 where it names none (no voter whose vector was
 * read had any write of it, so every one is beyond the cut).
 */
export function cutsBounding(t: Pick<Topology, 'changes' | 'cuts'>, origin: string): { epoch: number; seq: number }[] {
  const site = siteOfOrigin(origin);
  const timelines = new Map<string, OwnershipChange[]>();
  for (const c of t.changes) {
    const timeline = timelines.get(c.unit);
    if (timeline === undefined) timelines.set(c.unit, [c]);
    else timeline.push(c);
  }
  const epochs = new Set<number>();
  for (const timeline of timelines.values()) for (const m of movesAway(timeline, site)) if (m.installEpoch !== undefined) epochs.add(m.installEpoch);
  return [...epochs].map((epoch) => ({ epoch, seq: cutSeq(t, epoch, origin) }));
}

/** The next record: epoch + 1, the change applied, its history entry appended; lists bounded. */
export function nextTopology(t: Topology, change: (draft: Topology) => void, entry: Omit<HistoryEntry, 'epoch'>): Topology {
  const draft = structuredClone(t);
  draft.epoch = t.epoch + 1;
  change(draft);
  draft.history.push({ ...entry, epoch: draft.epoch });
  if (draft.history.length > historyMax) draft.history.splice(0, draft.history.length - historyMax);
  if (draft.cuts.length > cutsMax) draft.cuts.splice(0, draft.cuts.length - cutsMax);
  if (draft.changes.length > changesMax) draft.changes.splice(0, draft.changes.length - changesMax);
  assert(draft.epoch === t.epoch + 1, 'a change keeps its epoch');
  return draft;
}

/** Sets a unit's owner in a draft and records it in the timeline. */
export function setOwner(draft: Topology, unit: string, owner: string | null): void {
  const { table, partition } = splitUnit(unit);
  if (partition === undefined) draft.owners[table] = owner;
  else (draft.homes[table] ??= {})[partition] = owner;
  draft.changes.push({ epoch: draft.epoch, unit, owner });
}

/** Records a cut over the origins of `sites` in a draft, from the vector read for it. */
export function addCut(draft: Topology, sites: Set<string>, vector: VersionVector): void {
  for (const [origin, seq] of Object.entries(vector)) if (sites.has(siteOfOrigin(origin))) draft.cuts.push({ epoch: draft.epoch, origin, seq });
}

/** Structural checks of a record received from a peer (a malformed one is refused, never stored). */
export function isTopology(x: unknown): x is Topology {
  if (x === null || typeof x !== 'object') return false;
  const t = x as Partial<Topology>;
  return (
    Number.isSafeInteger(t.epoch) &&
    (t.epoch ?? -1) >= 0 &&
    Array.isArray(t.members) &&
    t.members.every((m) => typeof m?.id === 'string' && (m.kind === 'site' || m.kind === 'witness') && memberStates.includes(m.state)) &&
    typeof t.owners === 'object' &&
    t.owners !== null &&
    typeof t.homes === 'object' &&
    t.homes !== null &&
    Array.isArray(t.cuts) &&
    Array.isArray(t.changes) &&
    Array.isArray(t.history)
  );
}
