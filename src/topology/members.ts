// Membership online (ARCHITECTURE.md, "Quorums and membership"; CONTRACT.md, `tandem members`):
// the pure rules for adding and removing members of the topology record.
//
// - `members add` records `{ id, kind: 'site', state: 'joining', url, region }`: the site is
//   registered (so housekeeping keeps what it needs) but is neither a voter nor counted in quorums.
//   The joiner itself proposes `active` once it has caught up (topology-service.ts, activateSelf).
// - `members remove` records `removed` with a final cut of the removed site's origins (the durable
//   vectors of a read quorum of every data membership in force, as for `install`): its entries
//   beyond the cut are logged and relayed but never applied (removedOriginCounts).
// - Joint quorum: every epoch that changes the set of data sites keeps the set before it in
//   `priorData`; a quorum write needs a majority of the current set *and* of the newest prior set,
//   and a cut reads |M|−Q(M)+1 members of each set kept.
// - Voters change one at a time: a change of the voter set is proposed only once a voter set
//   change before it has settled (settledForVoterChange, checked by the proposer): a majority of
//   the voters of record v (counted as if the set had one more member, so that it also is a majority
//   of record v−1's voters) report epoch ≥ v, and L·(1+ρ)/(1−ρ) has passed since — then every
//   lease granted at an epoch before v was renewed at v or has expired.
import { siteOfOrigin, type VersionVector } from '../core/vector.js';
import type { Membership, MemberState as StoreMemberState } from '../core/membership.js';
import type { TableConfig } from '../config/schema.js';
import { addCut, dataSites, homeUnitsOf, majority, member, setOwner, unitOf, unitsOwnedBy, voters, type Topology } from './record.js';

/** Prior data memberships kept (each change of data membership pushes one). */
export const priorDataMax = 8;

export const memberIdPattern = /^[a-z0-9-]{1,32}$/;

/** Adds a joining data site to a draft record. */
export function addJoining(draft: Topology, m: { id: string; url: string; region?: string }): void {
  draft.members.push({ id: m.id, kind: 'site', state: 'joining', url: m.url, ...(m.region !== undefined ? { region: m.region } : {}) });
}

/** Records, in a draft, that the data sites of `before` are no longer the current ones (joint quorum). */
export function noteDataChange(before: Topology, draft: Topology): void {
  const old = dataSites(before);
  const now = dataSites(draft);
  if (sameSet(old, now)) return;
  const prior = [...(draft.priorData ?? []), old];
  draft.priorData = prior.slice(-priorDataMax);
  if (!sameSet(voters(before), voters(draft))) draft.voterChangeEpoch = draft.epoch;
}

/**
 * Makes a joining member active in a draft (a voter from this epoch on), owning the home units it
 * brings to partitioned tables (homeUnitsOf: new units, never owned before, so no cut): without
 * them, no partition could be homed at it.
 */
export function activate(before: Topology, draft: Topology, id: string, tables: Record<string, TableConfig>): void {
  const m = member(draft, id)!;
  m.state = 'active';
  for (const [table, partition] of homeUnitsOf(tables, m, draft.homes)) setOwner(draft, unitOf(table, partition), id);
  noteDataChange(before, draft);
}

/** Marks a member removed in a draft, with the final cut of its origins read from `cut`. */
export function removeMember(before: Topology, draft: Topology, id: string, cut: VersionVector): void {
  const m = member(draft, id)!;
  m.state = 'removed';
  m.removedAt = draft.epoch;
  if (m.kind === 'site') {
    addCut(draft, new Set([id]), cut);
    // an origin the cut did not see at all: nothing of it counts (seq 0), recorded so it is explicit
  }
  noteDataChange(before, draft);
  if (!sameSet(voters(before), voters(draft))) draft.voterChangeEpoch = draft.epoch;
}

/**
 * Whether entry (origin, seq) counts by membership: false for an origin of a removed site beyond
 * that site's final cut (it is logged and relayed, never applied; reported as void).
 */
export function removedOriginCounts(t: Topology, origin: string, seq: number): boolean {
  const m = member(t, siteOfOrigin(origin));
  if (m === undefined || m.state !== 'removed' || m.kind !== 'site') return true;
  const cut = t.cuts.find((c) => c.epoch === m.removedAt && c.origin === origin);
  return seq <= (cut?.seq ?? 0);
}

/** What `topology.degradedDurability` says about quorums while a data site is `down`. */
export type DegradedDurability = 'refuse' | 'allow';

/**
 * The data sites a quorum counts over: with `refuse`, a `down` site still counts (so quorum writes
 * are refused while too few answer, as before it was marked); with `allow`, only the serving ones
 * (Q over the active sites: such writes are at risk, and reported so).
 */
export function quorumMembers(t: Topology, degraded: DegradedDurability): string[] {
  return degraded === 'allow' ? dataSites(t) : t.members.filter((m) => m.kind === 'site' && (dataSites(t).includes(m.id) || m.state === 'down')).map((m) => m.id);
}

/** The data sites a quorum write does not count on now (`down` under `allow`): its answer says it is at risk. */
export function degradedSites(t: Topology, degraded: DegradedDurability): string[] {
  return degraded === 'allow' ? t.members.filter((m) => m.kind === 'site' && m.state === 'down').map((m) => m.id) : [];
}

/** The data memberships whose majorities a quorum write needs now: the current one, and the newest prior one. */
export function quorumSets(t: Topology, degraded: DegradedDurability = 'refuse'): string[][] {
  const prior = t.priorData?.[t.priorData.length - 1];
  const current = quorumMembers(t, degraded);
  return prior === undefined ? [current] : [current, prior];
}

/**
 * Every data membership a cut reads a read quorum of: the current one and each prior one kept. A
 * site marked `down` by a majority still counts in it (quorum writes acknowledged before it went
 * down may rest on it: the cut must meet them); one forced down does not (the operator gave up its
 * writes beyond the forced cut).
 */
export function cutMemberships(t: Topology): string[][] {
  const current = t.members.filter((m) => m.kind === 'site' && (dataSites(t).includes(m.id) || (m.state === 'down' && m.forcedDownAt === undefined))).map((m) => m.id);
  return [current, ...(t.priorData ?? [])];
}

/** Marks a data site `down` in a draft (not a voter, not counted in `allow` quorums) by a majority epoch. */
export function markDown(before: Topology, draft: Topology, id: string): void {
  member(draft, id)!.state = 'down';
  noteVoterChange(before, draft);
}

/** A `down` site caught up again: `active` in a draft (a voter, counted in quorums). */
export function markUp(before: Topology, draft: Topology, id: string): void {
  const m = member(draft, id)!;
  m.state = 'active';
  delete m.forcedDownAt;
  noteVoterChange(before, draft);
}

/** Records, in a draft, that the voters changed (the next change of voters waits until it settled). */
export function noteVoterChange(before: Topology, draft: Topology): void {
  if (!sameSet(voters(before), voters(draft))) draft.voterChangeEpoch = draft.epoch;
}

/** Whether the answers of `answered` make a read quorum (|M|−Q(M)+1) of every membership in `sets`. */
export function readQuorumOfEach(sets: string[][], answered: Set<string>): boolean {
  return sets.every((m) => m.filter((s) => answered.has(s)).length >= m.length - majority(m.length) + 1);
}

/** The store's membership (core/membership.ts) that follows a topology record: data sites only. */
export function storeMembership(t: Topology): Membership {
  return {
    epoch: t.epoch,
    members: t.members
      .filter((m) => m.kind === 'site')
      .map((m) => ({ site: m.id, state: (m.state === 'removed' ? 'removed' : m.state === 'joining' ? 'joining' : 'active') as StoreMemberState })),
  };
}

/** Why `id` cannot be removed from `t` now (empty: it can). */
export function removalRefusals(t: Topology, id: string): { name: string; ok: boolean; detail: string }[] {
  const m = member(t, id);
  const checks: { name: string; ok: boolean; detail: string }[] = [];
  checks.push({ name: 'member', ok: m !== undefined && m.state !== 'removed', detail: m === undefined ? `${id} is not a member` : `${id} is ${m.state}` });
  checks.push({ name: 'data-site', ok: m?.kind === 'site', detail: m?.kind === 'witness' ? `${id} is a witness: change the config's witnesses instead` : `${id} is a data site` });
  const owned = unitsOwnedBy(t, id);
  checks.push({ name: 'owns-nothing', ok: owned.length === 0, detail: owned.length === 0 ? `${id} owns nothing` : `${id} owns ${owned.slice(0, 5).join(', ')}${owned.length > 5 ? '…' : ''}: evacuate it first (tandem evacuate ${id})` });
  const handover = t.handover !== undefined && (t.handover.from === id || t.handover.to === id);
  checks.push({ name: 'no-handover', ok: !handover, detail: handover ? `a handover involving ${id} is in progress` : 'no handover involves it' });
  const dataLeft = dataSites(t).filter((s) => s !== id);
  checks.push({ name: 'data-sites-remain', ok: dataLeft.length >= 1, detail: `${dataLeft.length} data sites remain` });
  const vs = voters(t);
  const left = vs.filter((v) => v !== id);
  checks.push({ name: 'majority-remains', ok: left.length >= majority(vs.length) || !vs.includes(id), detail: `${left.length} voters remain of ${vs.length}; a change needs ${majority(vs.length)}` });
  return checks;
}

/** Why `id` cannot be added to `t` now. */
export function additionRefusals(t: Topology, id: string, url: string): { name: string; ok: boolean; detail: string }[] {
  const m = member(t, id);
  const sameUrl = t.members.find((x) => x.url === url && x.state !== 'removed');
  return [
    { name: 'new-id', ok: m === undefined, detail: m === undefined ? `${id} is a new member` : `${id} is already a member (${m.state}); a removed id is not reused` },
    { name: 'new-url', ok: sameUrl === undefined, detail: sameUrl === undefined ? `${url} is not in use` : `${url} is already ${sameUrl.id}'s` },
  ];
}

function sameSet(a: string[], b: string[]): boolean {
  return a.length === b.length && a.every((x) => b.includes(x));
}
