// Rewind writes values, never old states (ARCHITECTURE.md, "Backups"): every site already covers
// the old dots, so an old state joined in would change nothing. Given an item's current state, its
// value at the cut V(T) and the table's policy, this decides what the rewind does to it, as one
// ordinary local write computed inside the commit (no read-then-write race):
//   unchanged       nothing written after T (its context is within the cut), or already the value at T;
//   deleted-after   live at T, deleted since: recreated;
//   changed-after   live at T and now, written since: skipped, or reverted with `overwrite`;
//   created-after   absent at T, live now: skipped, or deleted with `overwrite`.
// lww and custom PUT the value at T; merge and crdt PATCH only what differs: registers set or unset
// field by field, counters incremented by v(T) − v(now) (increments made concurrently elsewhere
// survive the join), sets given the adds and removes of the difference.
import { canonicalJson, type JsonValue } from './canonical-json.js';
import type { ItemState } from './item.js';
import { materialize, type TableSemantics } from './materialize.js';
import { dominates, type VersionVector } from './vector.js';
import type { ItemOp, JsonObject, PatchOp } from './write.js';

export type RewindClass = 'unchanged' | 'deleted-after' | 'changed-after' | 'created-after';

export interface RewindDecision {
  class: RewindClass;
  /** the value now (null: absent or deleted) */
  now: JsonObject | null;
  /** the write to make; undefined: nothing (unchanged, or skipped without overwrite) */
  op?: ItemOp;
}

export function decideRewind(semantics: TableSemantics, current: ItemState | undefined, atT: JsonObject | null, cut: VersionVector, overwrite: boolean): RewindDecision {
  const m = current === undefined ? undefined : materialize(semantics, current);
  const now = m?.live ? m.value : null;
  const writtenSince = current !== undefined && !dominates(cut, current.c);
  if (!writtenSince) {
    // nothing written since T here; an item with no record at all that was live at T lost its
    // tombstone to GC after a delete after T: recreate it
    if (current === undefined && atT !== null) return { class: 'deleted-after', now, op: opTo(semantics, null, atT) };
    return { class: 'unchanged', now };
  }
  if (atT !== null && now === null) return { class: 'deleted-after', now, op: opTo(semantics, null, atT) };
  if (atT === null && now === null) return { class: 'unchanged', now };
  if (atT === null) return { class: 'created-after', now, ...(overwrite ? { op: { op: 'delete' as const } } : {}) };
  if (canonicalJson(atT) === canonicalJson(now!)) return { class: 'unchanged', now };
  return { class: 'changed-after', now, ...(overwrite ? { op: opTo(semantics, now, atT) } : {}) };
}

/** The write that turns the value `now` (null: not live) into `target`, by the table's policy. */
export function opTo(semantics: TableSemantics, now: JsonObject | null, target: JsonObject | null): ItemOp {
  if (target === null) return { op: 'delete' };
  if (semantics.conflict === 'lww' || semantics.conflict === 'custom') return { op: 'put', value: target };
  const cur = now ?? {};
  const patch: PatchOp = {};
  const set: JsonObject = {};
  const unset: string[] = [];
  const increment: Record<string, number> = {};
  const add: Record<string, JsonValue[]> = {};
  const remove: Record<string, JsonValue[]> = {};
  for (const f of new Set([...Object.keys(cur), ...Object.keys(target)])) {
    const kind = semantics.fields[f];
    const want = target[f];
    const have = cur[f];
    if (want === undefined) {
      if (have !== undefined) unset.push(f);
    } else if (kind === 'counter') {
      const delta = (typeof want === 'number' ? want : 0) - (typeof have === 'number' ? have : 0);
      if (delta !== 0) increment[f] = delta;
    } else if (kind === 'set') {
      const wantSet = new Map((Array.isArray(want) ? want : []).map((v) => [canonicalJson(v), v]));
      const haveSet = new Map((Array.isArray(have) ? have : []).map((v) => [canonicalJson(v), v]));
      const adds = [...wantSet].filter(([k]) => !haveSet.has(k)).map(([, v]) => v);
      const removes = [...haveSet].filter(([k]) => !wantSet.has(k)).map(([, v]) => v);
      if (adds.length > 0) add[f] = adds;
      if (removes.length > 0) remove[f] = removes;
    } else if (have === undefined || canonicalJson(want) !== canonicalJson(have)) {
      set[f] = want;
    }
  }
  if (Object.keys(set).length > 0) patch.set = set;
  if (unset.length > 0) patch.unset = unset;
  if (Object.keys(increment).length > 0) patch.increment = increment;
  if (Object.keys(add).length > 0) patch.add = add;
  if (Object.keys(remove).length > 0) patch.remove = remove;
  return { op: 'patch', patch };
}
