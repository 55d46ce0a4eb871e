// Forced failover (`tandem failover --force`, ARCHITECTURE.md "Topology, leases and failover"): the
// only way to move ownership without a majority of voters — two data sites and no witness with one
// dead, or two of three sites lost. The pure rules: what a forced epoch says, and what it may drop.
//
// The operator's site probes every member. The ones that do not answer are marked `down` (not
// voters, not counted in quorums, granted no lease) and the units that move are revoked (their
// targets named) in ONE record, written to every voter that answered as a `learn`: a forced accept
// that overrides their promises and accepted values for lower epochs. From then on majorities and
// leases count over the remaining voters, so the target installs itself the ordinary way: once those
// voters vouch that the old owner's lease expired, with the cut read from the data sites that remain
// (the pointwise max of their durable vectors, fewer than N−Q+1 of the old membership).
//
// The forced epoch jumps `forcedEpochStep` ahead: if the unreachable members are in fact alive on
// the other side of a partition and formed a majority there, whatever they decided meanwhile has a
// lower epoch, so when the sides meet again every member learns the forced history and the other
// side's owned writes beyond the cut are void. Until then two owners may admit writes: that is the
// split-brain risk the command prints and makes the operator confirm.
import { joinVectors, siteOfOrigin, type VersionVector } from '../core/vector.js';
import { changesMax, cutsMax, historyMax, member, ownerOfUnit, setOwner, voters, type HistoryEntry, type Topology } from './record.js';

/** How far a forced epoch jumps ahead of the record it replaces. */
export const forcedEpochStep = 1_000;

/** What the probe of every member found. */
export interface ForcedProbe {
  /** voters of the current record that answered */
  reachableVoters: string[];
  /** data sites that answered, with their durable (synced) vectors */
  durable: Record<string, VersionVector>;
  /** per data site that answered: the highest seq of each origin it has heard of (applied, or reported by a peer) */
  heard: Record<string, VersionVector>;
}

export interface ForcedMove {
  unit: string;
  from: string | null;
  to: string;
}

/** An origin whose writes a forced cut may drop: seqs above `cutSeq`, at least up to `heardSeq`. */
export interface DroppedRange {
  origin: string;
  site: string;
  cutSeq: number;
  /** the highest seq a reachable site has heard of (absent: none heard of beyond the cut) */
  heardSeq?: number;
}

export interface ForcedPlan {
  /** the epoch the forced record would have */
  epoch: number;
  /** members it marks `down` */
  down: string[];
  moves: ForcedMove[];
  /** the voters that remain: every later majority (and lease) counts over them */
  votersAfter: string[];
  /** the cut it lowers, as far as the reachable data sites show it (the install may raise it) */
  cut: { origin: string; seq: number }[];
  dropped: DroppedRange[];
  risk: string;
}

/** The members that did not answer the probe (removed and joining ones aside). */
export function unreachableMembers(t: Topology, probe: ForcedProbe): string[] {
  return t.members
    .filter((m) => m.state !== 'removed' && m.state !== 'down' && m.state !== 'joining')
    .filter((m) => (m.kind === 'witness' ? !probe.reachableVoters.includes(m.id) : probe.durable[m.id] === undefined))
    .map((m) => m.id);
}

/**
 * The plan of a forced failover: `moves` (from the caller: units and targets, every target among the
 * reachable data sites), the members marked down, the cut over the former owners' and targets'
 * origins, and per origin of a former owner what may be dropped.
 */
export function planForced(t: Topology, probe: ForcedProbe, moves: ForcedMove[]): ForcedPlan {
  const down = unreachableMembers(t, probe);
  const formers = new Set(moves.map((m) => m.from).filter((f): f is string => f !== null));
  const cutSites = new Set([...formers, ...moves.map((m) => m.to)]);
  const durable = Object.values(probe.durable).reduce<VersionVector>((acc, v) => joinVectors(acc, v), {});
  const heard = Object.values(probe.heard).reduce<VersionVector>((acc, v) => joinVectors(acc, v), {});
  const cut: { origin: string; seq: number }[] = [];
  const dropped: DroppedRange[] = [];
  const origins = new Set([...Object.keys(durable), ...Object.keys(heard)].filter((o) => cutSites.has(siteOfOrigin(o))));
  for (const origin of [...origins].sort()) {
    const cutSeq = durable[origin] ?? 0;
    cut.push({ origin, seq: cutSeq });
    const site = siteOfOrigin(origin);
    if (!formers.has(site) || probe.durable[site] !== undefined) continue;
    const heardSeq = heard[origin] ?? 0;
    dropped.push({ origin, site, cutSeq, ...(heardSeq > cutSeq ? { heardSeq } : {}) });
  }
  const votersAfter = voters(t).filter((v) => !down.includes(v));
  const unreachableVoters = voters(t).filter((v) => down.includes(v));
  const risk =
    unreachableVoters.length === 0
      ? 'every voter answered: no second owner can be elected elsewhere'
      : `split-brain risk: ${unreachableVoters.join(', ')} did not answer. If they are alive on the other side of a partition` +
        ` and ${unreachableVoters.length >= Math.floor(voters(t).length / 2) + 1 ? 'form a majority there (they do: ' + unreachableVoters.length + ' of ' + voters(t).length + ' voters)' : 'reach enough voters there'},` +
        ' two owners admit writes until the sides meet again; then the forced epoch wins and the other side\'s owned writes beyond the cut are void.' +
        ' Make sure they are stopped (or fenced off) before you confirm.';
  return { epoch: t.epoch + forcedEpochStep, down, moves, votersAfter, cut, dropped, risk };
}

/**
 * The forced record: `t` with the plan's members down and its units revoked toward their targets,
 * at epoch t.epoch + forcedEpochStep. Joint-quorum history is dropped (the old memberships cannot be
 * reached, which is why it is forced), and the change of voters is noted.
 */
export function forcedRecord(t: Topology, plan: ForcedPlan, entry: Omit<HistoryEntry, 'epoch' | 'forced'>): Topology {
  const draft = structuredClone(t);
  draft.epoch = plan.epoch;
  for (const id of plan.down) {
    const m = member(draft, id)!;
    m.state = 'down';
    m.forcedDownAt = draft.epoch;
  }
  if (draft.handover !== undefined && (plan.down.includes(draft.handover.from) || plan.down.includes(draft.handover.to))) delete draft.handover;
  for (const m of plan.moves) {
    if (ownerOfUnit(draft, m.unit) !== null) setOwner(draft, m.unit, null);
    (draft.targets ??= {})[m.unit] = m.to;
  }
  delete draft.priorData;
  draft.voterChangeEpoch = draft.epoch;
  draft.history.push({ ...entry, epoch: draft.epoch, forced: true });
  if (draft.history.length > historyMax) draft.history.splice(0, draft.history.length - historyMax);
  if (draft.cuts.length > cutsMax) draft.cuts.splice(0, draft.cuts.length - cutsMax);
  if (draft.changes.length > changesMax) draft.changes.splice(0, draft.changes.length - changesMax);
  return draft;
}

/** The plan in words, for the history and the operator. */
export function describeForced(plan: ForcedPlan): string {
  const moves = plan.moves.map((m) => `${m.unit} ${m.from ?? '(no owner)'}->${m.to}`).join(', ');
  const dropped = plan.dropped.map((d) => `${d.origin} beyond ${d.cutSeq}${d.heardSeq !== undefined ? ` (heard of up to ${d.heardSeq})` : ''}`).join(', ');
  return `down: ${plan.down.join(', ') || 'none'}; moves: ${moves || 'none'}; may drop: ${dropped || 'nothing heard of beyond the cut'}`;
}
