// The replicated state of one item, and its join. Every write ships the item's whole state after the
// write; every site joins states. The join is commutative, associative and idempotent, so replicas
// that received the same writes hold the same state whatever the order (a state-based CRDT with
// dotted entries and a causal context, in the style of ORSWOT / DVV).
//
//   state = { c: context (version vector), entries…, w: the latest write }
//
// An entry carries the dot of the write that created it. Joining two states keeps an entry if both
// have it, or if the other side has not seen its dot (so a write that observed and overwrote or
// removed an entry wins over it, and a concurrent one survives). Counters are per-origin cumulative
// (p, n) pairs merged by max, with resets that record what they observed, so nothing is re-added.
//
// The context is a version vector of the dots merged into this item. It is prefix-closed per item:
// an origin's writes reach a site in seq order, and each shipped state already contains its origin's
// earlier writes to the same item. So equal contexts mean equal states, and the context hash
// identifies the state (it is part of the version, the ETag).
import { hash } from 'node:crypto';
import { assert } from './assert.js';
import { canonicalJson, type JsonValue } from './canonical-json.js';
import { canonicalVector, covers, joinVectors, type Dot, type VersionVector } from './vector.js';

/** One register value (or a whole-item value in `lww` / `custom`), stamped by the write that made it. */
export interface Sibling {
  /** dot of the write */
  d: Dot;
  /** hlc of the write, 16 hex digits */
  h: string;
  /** site id of the write */
  s: string;
  /** the value; absent when `t` (a whole-item tombstone in lww/custom) */
  v?: JsonValue;
  t?: true;
}

/** Per-origin cumulative increments `[p, n]`, and what resets observed of them. */
export interface CounterState {
  inc: Record<string, [number, number]>;
  rst: Record<string, [number, number]>;
}

export interface WriteStamp {
  h: string;
  s: string;
  d: Dot;
}

export interface ItemState {
  c: VersionVector;
  /** registers: the whole item under '' (lww, custom) or one per top-level field (merge, crdt) */
  r: Record<string, Sibling[]>;
  /** counters (crdt) */
  k: Record<string, CounterState>;
  /** sets (crdt): element (canonical JSON) -> add dots */
  s: Record<string, Record<string, Dot[]>>;
  /** existence dots (merge, crdt): the item exists while one survives */
  x: Dot[];
  /** the latest write merged into this state (max by hlc, site, dot) */
  w: WriteStamp;
}

export const wholeItem = '';

export function emptyState(): ItemState {
  return { c: {}, r: {}, k: {}, s: {}, x: [], w: { h: '0'.repeat(16), s: '', d: '' } };
}

export function compareStamps(a: { h: string; s: string; d: Dot }, b: { h: string; s: string; d: Dot }): number {
  if (a.h !== b.h) return a.h < b.h ? -1 : 1;
  if (a.s !== b.s) return a.s < b.s ? -1 : 1;
  if (a.d !== b.d) return a.d < b.d ? -1 : 1;
  return 0;
}

/** Join of two dotted collections: keep what both have, and what the other side has not seen. */
function joinDotted<T>(a: T[], ca: VersionVector, b: T[], cb: VersionVector, dotOfEntry: (e: T) => Dot): T[] {
  const inB = new Map(b.map((e) => [dotOfEntry(e), e]));
  const out: T[] = [];
  const seen = new Set<Dot>();
  for (const e of a) {
    const d = dotOfEntry(e);
    if (inB.has(d) || !covers(cb, d)) {
      out.push(e);
      seen.add(d);
    }
  }
  for (const e of b) {
    const d = dotOfEntry(e);
    if (!seen.has(d) && !covers(ca, d)) out.push(e);
  }
  return out.sort((x, y) => (dotOfEntry(x) < dotOfEntry(y) ? -1 : dotOfEntry(x) > dotOfEntry(y) ? 1 : 0));
}

function maxPair(a: [number, number] | undefined, b: [number, number] | undefined): [number, number] {
  return [Math.max(a?.[0] ?? 0, b?.[0] ?? 0), Math.max(a?.[1] ?? 0, b?.[1] ?? 0)];
}

function joinPairs(
  a: Record<string, [number, number]>,
  b: Record<string, [number, number]>,
): Record<string, [number, number]> {
  const out: Record<string, [number, number]> = {};
  for (const o of new Set([...Object.keys(a), ...Object.keys(b)])) out[o] = maxPair(a[o], b[o]);
  return out;
}

export interface JoinOptions {
  /** lww keeps only the highest sibling of the whole-item register: max is itself a join. */
  pruneToMax: boolean;
  /**
   * Most siblings a register keeps (custom: the siblings its merge is given). Beyond it only the
   * highest by version (compareStamps) are kept; see pruneToHighest for why the join stays a join.
   */
  siblingsMax?: number;
}

/** A value that lost to a concurrent one in a register: what the conflict feed keeps. */
export interface RegisterLoser {
  field: string;
  loser: Sibling;
  winner: Sibling;
  /** dropped from the state by the siblings bound (custom: no longer an input of its merge) */
  pruned: boolean;
}

export function joinStates(a: ItemState, b: ItemState, options: JoinOptions): ItemState {
  return joinStatesTracked(a, b, options).state;
}

/** The join, plus the register values that are concurrent with a higher one (identical values excluded). */
export function joinStatesTracked(
  a: ItemState,
  b: ItemState,
  options: JoinOptions,
): { state: ItemState; losers: RegisterLoser[] } {
  const losers: RegisterLoser[] = [];
  const r: Record<string, Sibling[]> = {};
  for (const f of new Set([...Object.keys(a.r), ...Object.keys(b.r)])) {
    let sibs = joinDotted(a.r[f] ?? [], a.c, b.r[f] ?? [], b.c, (e) => e.d);
    if (sibs.length > 1) {
      const winner = highestSibling(sibs)!;
      const winnerValue = winner.t ? undefined : canonicalJson(winner.v!);
      const kept = options.siblingsMax !== undefined && !options.pruneToMax ? pruneToHighest(sibs, options.siblingsMax) : sibs;
      const keptSet = new Set(kept);
      for (const sib of sibs) {
        if (sib === winner) continue;
        const pruned = !keptSet.has(sib);
        const value = sib.t ? undefined : canonicalJson(sib.v!);
        if (pruned || value !== winnerValue) losers.push({ field: f, loser: sib, winner, pruned });
      }
      sibs = options.pruneToMax ? [winner] : kept;
    }
    if (sibs.length > 0) r[f] = sibs;
  }
  const k: Record<string, CounterState> = {};
  for (const f of new Set([...Object.keys(a.k), ...Object.keys(b.k)])) {
    const ka = a.k[f] ?? { inc: {}, rst: {} };
    const kb = b.k[f] ?? { inc: {}, rst: {} };
    k[f] = { inc: joinPairs(ka.inc, kb.inc), rst: joinPairs(ka.rst, kb.rst) };
  }
  const s: Record<string, Record<string, Dot[]>> = {};
  for (const f of new Set([...Object.keys(a.s), ...Object.keys(b.s)])) {
    const sa = a.s[f] ?? {};
    const sb = b.s[f] ?? {};
    const field: Record<string, Dot[]> = {};
    for (const el of new Set([...Object.keys(sa), ...Object.keys(sb)])) {
      const dots = joinDotted(sa[el] ?? [], a.c, sb[el] ?? [], b.c, (d) => d);
      if (dots.length > 0) field[el] = dots;
    }
    if (Object.keys(field).length > 0) s[f] = field;
  }
  const x = joinDotted(a.x, a.c, b.x, b.c, (d) => d);
  const w = compareStamps(a.w, b.w) >= 0 ? a.w : b.w;
  return { state: { c: canonicalVector(joinVectors(a.c, b.c)), r, k, s, x, w }, losers };
}

/**
 * The `max` highest siblings by version, in the join's order (by dot). Deterministic in the set of
 * siblings alone, so every site prunes a given set the same way.
 *
 * Why the join stays a join. Write a state as (C, R): its context C and the dots of C it has seen
 * removed, R = C minus the dots of its siblings (a write that observed a sibling removes it; so does
 * this pruning: a pruned sibling's dot stays in C). Then joinDotted is (Ca ∪ Cb, Ra ∪ Rb): a sibling
 * survives unless one side has seen it removed (observed-remove), and pruning only adds its dots to R.
 * - Commutative: union is, and the pruning after it depends only on the resulting set.
 * - Idempotent: a ⊔ a = a, and a pruned state has at most `max` siblings, so nothing more is pruned.
 * - Nothing comes back: a dot once in R stays in R through every later join, on every site.
 * - The highest sibling is never pruned (nothing ranks above it), and it is the highest write of C
 *   (a write that removed a sibling has seen it, so it has a higher hlc, and it or its own remover is
 *   live): so the LWW fallback, as lww itself, is a function of C alone, whatever the order.
 * - Associative only up to pruning: pruning in (a ⊔ b) ⊔ c can count siblings as "higher" that c
 *   has removed, where a ⊔ (b ⊔ c) never saw them live (k = 2: a = {m, e1, e2} prunes m; c has seen
 *   e1 and e2 replaced by one write w; one order ends with {w}, the other with {m, w}, at the same C).
 *   Both are valid states and the joins still converge: joining the two gives {w} from either side,
 *   and since R only grows, sites that exchange states (anti-entropy) reach the same state. That
 *   needs a repair to see the difference, so versionOf covers the siblings' dots when more than one
 *   sibling is kept, and the digest (records.ts) covers the state. With at most `max` concurrent
 *   siblings nothing is pruned and the join is exactly associative.
 */
function pruneToHighest(sibs: Sibling[], max: number): Sibling[] {
  assert(Number.isInteger(max) && max >= 1, 'siblingsMax keeps at least the highest sibling');
  if (sibs.length <= max) return sibs;
  const keep = new Set([...sibs].sort(compareStamps).slice(sibs.length - max));
  return sibs.filter((s) => keep.has(s));
}

export function highestSibling(sibs: readonly Sibling[]): Sibling | undefined {
  let best: Sibling | undefined;
  for (const sib of sibs) if (best === undefined || compareStamps(sib, best) > 0) best = sib;
  return best;
}

/** Siblings in ascending version order: what a custom merge function is given. */
export function siblingsByVersion(sibs: readonly Sibling[]): Sibling[] {
  return [...sibs].sort(compareStamps);
}

export function counterValue(c: CounterState): number {
  let total = 0;
  for (const [o, [p, n]] of Object.entries(c.inc)) {
    const [rp, rn] = c.rst[o] ?? [0, 0];
    total += p - rp - (n - rn);
  }
  return total;
}

/** A counter is shown while some increment is not covered by a reset. */
export function counterVisible(c: CounterState): boolean {
  return Object.entries(c.inc).some(([o, [p, n]]) => {
    const [rp, rn] = c.rst[o] ?? [0, 0];
    return p > rp || n > rn;
  });
}

/** Hash of the canonical context: identifies the state among all states of this item. */
export function contextHash(c: VersionVector): string {
  return hash('sha256', canonicalJson(canonicalVector(c)), 'hex').slice(0, 12);
}

/**
 * `<hlc hex>-<siteId>-<state hash>`: orders by (hlc, site) and identifies the state. The state hash
 * is the context hash; when the whole-item register keeps more than one sibling (custom), it also
 * covers their dots: after pruning, equal contexts can hold different siblings (pruneToHighest), and
 * a repair writes only what changes the version. One sibling is always the highest write of the
 * context, so lww versions (and custom ones without concurrent siblings) are unchanged.
 */
export function versionOf(state: ItemState): string {
  const sibs = state.r[wholeItem] ?? [];
  const stateHash = sibs.length > 1 ? siblingsStateHash(state.c, sibs) : contextHash(state.c);
  return `${state.w.h}-${state.w.s}-${stateHash}`;
}

function siblingsStateHash(c: VersionVector, sibs: readonly Sibling[]): string {
  const dots = sibs.map((s) => s.d).sort();
  return hash('sha256', canonicalJson([canonicalVector(c), dots]), 'hex').slice(0, 12);
}

