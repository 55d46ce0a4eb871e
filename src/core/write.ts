// Local writes: turn one operation (put, patch, delete) on an item into the item's next state, by
// the table's conflict policy and field kinds. Pure: the caller supplies the dot, hlc and site.
// A write observes the whole current state, so it supersedes every entry it replaces or removes;
// entries it did not see (concurrent writes elsewhere) survive the join.
import { canonicalJson, type JsonValue } from './canonical-json.js';
import { RequestError } from './errors.js';
import { hlcToHex, type Hlc } from './hlc.js';
import { emptyState, highestSibling, wholeItem, type CounterState, type ItemState, type Sibling } from './item.js';
import { limits } from '../limits.js';
import { canonicalVector, withDot, type Dot, type Origin, type VersionVector } from './vector.js';
import { materialize, type TableSemantics } from './materialize.js';

export type JsonObject = { [k: string]: JsonValue };

export interface PatchOp {
  set?: JsonObject;
  unset?: string[];
  increment?: Record<string, number>;
  add?: Record<string, JsonValue[]>;
  remove?: Record<string, JsonValue[]>;
}

export type ItemOp = { op: 'put'; value: JsonObject } | { op: 'patch'; patch: PatchOp } | { op: 'delete' };

export interface WriteStampInput {
  dot: Dot;
  hlc: Hlc;
  site: string;
  origin: Origin;
}

/** The next state of an item after a local write; throws RequestError for a write of the wrong kind. */
export function applyLocalWrite(
  table: TableSemantics,
  current: ItemState | undefined,
  op: ItemOp,
  stamp: WriteStampInput,
  /** context for a key with no state (the GC floor): what a purged tombstone had seen */
  floor: VersionVector = {},
): ItemState {
  const base = current ?? { ...emptyState(), c: floor };
  const next: ItemState = {
    c: canonicalVector(withDot(base.c, stamp.dot)),
    r: { ...base.r },
    k: { ...base.k },
    s: { ...base.s },
    x: base.x,
    w: { h: hlcToHex(stamp.hlc), s: stamp.site, d: stamp.dot },
  };
  const sib = (v: JsonValue | undefined): Sibling =>
    v === undefined ? { d: stamp.dot, h: next.w.h, s: stamp.site, t: true } : { d: stamp.dot, h: next.w.h, s: stamp.site, v };

  if (table.conflict === 'lww' || table.conflict === 'custom') {
    switch (op.op) {
      case 'put':
        next.r = { [wholeItem]: [sib(op.value)] };
        break;
      case 'delete':
        next.r = { [wholeItem]: [sib(undefined)] };
        break;
      case 'patch': {
        rejectCrdtOps(op.patch, 'register');
        const now = current ? materialize(table, current) : undefined;
        const value: JsonObject = { ...((now?.live ? now.value : {}) as JsonObject) };
        for (const [f, v] of Object.entries(op.patch.set ?? {})) value[f] = v;
        for (const f of op.patch.unset ?? []) delete value[f];
        next.r = { [wholeItem]: [sib(value)] };
        break;
      }
    }
    return next;
  }

  // merge and crdt: one register per field, plus declared counters and sets.
  const kinds = table.fields;
  const resetCounter = (f: string) => {
    const c = next.k[f];
    if (c) next.k[f] = { inc: c.inc, rst: { ...c.inc } };
  };
  const bumpCounter = (f: string, delta: number, path: string) => {
    const c: CounterState = next.k[f] ?? { inc: {}, rst: {} };
    const slot = counterSlot(c, stamp.origin, stamp.dot);
    const [p, n] = c.inc[slot] ?? [0, 0];
    const np = delta > 0 ? p + delta : p;
    const nn = delta < 0 ? n - delta : n;
    if (!Number.isSafeInteger(np) || !Number.isSafeInteger(nn))
      throw RequestError.badRequest(`${path}: counter would exceed the safe integer range`, [{ path, message: 'counter overflow' }]);
    next.k[f] = { inc: { ...c.inc, [slot]: [np, nn] }, rst: c.rst };
  };
  const setElements = (f: string, values: JsonValue[], path: string) => {
    const field: Record<string, Dot[]> = {};
    for (const v of values) field[canonicalJson(v)] = [stamp.dot];
    checkSetSize(Object.keys(field).length, path);
    if (Object.keys(field).length > 0) next.s[f] = field;
    else delete next.s[f];
  };
  const clearField = (f: string) => {
    delete next.r[f];
    delete next.s[f];
    resetCounter(f);
  };

  switch (op.op) {
    case 'delete':
      next.r = {};
      next.s = {};
      for (const f of Object.keys(next.k)) resetCounter(f);
      next.x = [];
      break;
    case 'put': {
      const present = new Set([...Object.keys(next.r), ...Object.keys(next.s), ...Object.keys(next.k)]);
      for (const f of present) if (!(f in op.value)) clearField(f);
      for (const [f, v] of Object.entries(op.value)) {
        const kind = kinds[f];
        const path = `value.${f}`;
        if (kind === 'counter') {
          if (typeof v !== 'number' || !Number.isSafeInteger(v))
            throw RequestError.badRequest(`${path}: a counter field takes an integer`, [{ path, message: 'expected an integer' }]);
          resetCounter(f);
          if (v !== 0) bumpCounter(f, v, path);
        } else if (kind === 'set') {
          if (!Array.isArray(v))
            throw RequestError.badRequest(`${path}: a set field takes an array`, [{ path, message: 'expected an array' }]);
          setElements(f, v, path);
        } else {
          next.r[f] = [sib(v)];
        }
      }
      next.x = [stamp.dot];
      break;
    }
    case 'patch': {
      const p = op.patch;
      for (const [f, v] of Object.entries(p.set ?? {})) {
        if (kinds[f] !== undefined) throw RequestError.wrongKind(`set.${f}`, `set.${f}: field ${f} is a ${kinds[f]}; use ${kinds[f] === 'counter' ? 'increment' : 'add/remove'}`);
        next.r[f] = [sib(v)];
      }
      for (const f of p.unset ?? []) clearField(f);
      for (const [f, delta] of Object.entries(p.increment ?? {})) {
        if (kinds[f] !== 'counter') throw RequestError.wrongKind(`increment.${f}`, `increment.${f}: field ${f} is not a counter`);
        bumpCounter(f, delta, `increment.${f}`);
      }
      for (const [f, values] of Object.entries(p.add ?? {})) {
        if (kinds[f] !== 'set') throw RequestError.wrongKind(`add.${f}`, `add.${f}: field ${f} is not a set`);
        const field = { ...(next.s[f] ?? {}) };
        for (const v of values) field[canonicalJson(v)] = [stamp.dot];
        checkSetSize(Object.keys(field).length, `add.${f}`);
        next.s[f] = field;
      }
      for (const [f, values] of Object.entries(p.remove ?? {})) {
        if (kinds[f] !== 'set') throw RequestError.wrongKind(`remove.${f}`, `remove.${f}: field ${f} is not a set`);
        const field = { ...(next.s[f] ?? {}) };
        for (const v of values) delete field[canonicalJson(v)];
        if (Object.keys(field).length > 0) next.s[f] = field;
        else delete next.s[f];
      }
      next.x = [stamp.dot];
      break;
    }
  }
  return next;
}

/**
 * The slot of a counter that this origin's increments go to. Slots hold cumulative `[p, n]` pairs
 * merged by max, so an origin may only add to a slot whose latest value it knows. It knows that of
 * every slot of its own in the state it writes on (it is their only writer, and joins never lower
 * a pair); but once a tombstone was purged here, the next write starts from nothing while other
 * sites may still hold the tombstone and the slot's old pair (their housekeeping runs on its own
 * schedule): restarting that slot at [0, 0] would hide the new increments under the old pair's
 * max. So a write that finds no slot of its origin opens a new one, named by its own dot, which no
 * other state can hold. (Slots named by the bare origin come from stores written before this rule;
 * they are continued like any other.)
 */
export function counterSlot(c: CounterState, origin: Origin, dot: Dot): string {
  if (origin in c.inc) return origin;
  const prefix = `${origin}:`;
  let best: string | undefined;
  let bestSeq = -1;
  for (const slot of Object.keys(c.inc)) {
    if (!slot.startsWith(prefix)) continue;
    const seq = Number(slot.slice(prefix.length));
    if (seq > bestSeq) {
      best = slot;
      bestSeq = seq;
    }
  }
  return best ?? dot;
}

function rejectCrdtOps(p: PatchOp, kind: string): void {
  for (const opName of ['increment', 'add', 'remove'] as const) {
    const fields = Object.keys(p[opName] ?? {});
    if (fields.length > 0)
      throw RequestError.wrongKind(`${opName}.${fields[0]}`, `${opName}.${fields[0]}: this table's fields are ${kind}s; ${opName} needs a crdt table field declared as ${opName === 'increment' ? 'counter' : 'set'}`);
  }
}

function checkSetSize(n: number, path: string): void {
  if (n > limits.setElementsMax)
    throw RequestError.tooLarge(`${path}: a set holds at most ${limits.setElementsMax} elements`);
}

/**
 * The state of a compensating write (ARCHITECTURE.md, "Voiding is per item, by epoch"): the owner's
 * current state, unchanged in value, whose context also covers the void dots, so that wherever a
 * void write was applied, the join drops its registers, set adds and existence dots (dotted entries
 * this state has seen and lacks). Counters are not dotted: the void increments of the void write's
 * origin are taken in and reset in the same state (inc raised to theirs, rst raised by as much), so
 * the value here is unchanged and there it returns to this one. Only slots of the void writes'
 * origins are touched: an owned item is written by its owners alone, and this owner holds every
 * entry of theirs that counts.
 *
 * An owner may hold void dotted entries itself (a site that regained ownership of its own void
 * writes): they are left out of the state, so they go here too. Void increments it holds cannot be
 * told from its valid ones (counters are not dotted) and stay.
 */
export function compensatingState(
  current: ItemState | undefined,
  voids: { dot: Dot; origin: Origin; state: ItemState }[],
  stamp: WriteStampInput,
  floor: VersionVector = {},
): ItemState {
  const base = current ?? { ...emptyState(), c: floor };
  let c: VersionVector = { ...base.c };
  for (const v of voids) c = withDot(c, v.dot);
  const k: Record<string, CounterState> = {};
  for (const [f, counter] of Object.entries(base.k)) k[f] = { inc: { ...counter.inc }, rst: { ...counter.rst } };
  for (const v of voids)
    for (const [f, voidCounter] of Object.entries(v.state.k)) {
      const mine = (k[f] ??= { inc: {}, rst: {} });
      for (const [slot, [vp, vn]] of Object.entries(voidCounter.inc)) {
        if (slot !== v.origin && !slot.startsWith(`${v.origin}:`)) continue;
        const [p, n] = mine.inc[slot] ?? [0, 0];
        if (vp <= p && vn <= n) continue;
        const [rp, rn] = mine.rst[slot] ?? [0, 0];
        mine.inc[slot] = [Math.max(p, vp), Math.max(n, vn)];
        mine.rst[slot] = [rp + Math.max(0, vp - p), rn + Math.max(0, vn - n)];
      }
    }
  const voided = new Set(voids.map((v) => v.dot));
  // What the owner holds is written again under this write's dot: a site that applied a void write
  // has seen the entries it replaced and lacks them, so under their own dots the join there would
  // drop them again (a removed dot never comes back: item.ts), and the key would answer without
  // the value it had before the void write. A register keeps one sibling, its highest, anew: a
  // sibling left under its old dot would stay where it was held and be dropped where the void write
  // replaced it, and the sites would hold different registers. (Valid writes of an owned unit are
  // serialized by its owner; concurrent siblings there are rare, and were reported when they met.)
  const h = hlcToHex(stamp.hlc);
  const r: ItemState['r'] = {};
  for (const [f, siblings] of Object.entries(base.r)) {
    const top = highestSibling(siblings.filter((x) => !voided.has(x.d)));
    if (top !== undefined) r[f] = [{ ...top, d: stamp.dot, h, s: stamp.site }];
  }
  const sets: ItemState['s'] = {};
  for (const [f, elements] of Object.entries(base.s)) {
    const field: Record<string, Dot[]> = {};
    for (const [e, dots] of Object.entries(elements)) if (dots.some((d) => !voided.has(d))) field[e] = [stamp.dot];
    if (Object.keys(field).length > 0) sets[f] = field;
  }
  // the item goes on existing, by this write: also when the void write was its latest (its
  // existence dot) and valid entries of earlier writes remain
  const existence =
    base.x.some((d) => !voided.has(d)) || (base.x.length > 0 && (Object.keys(r).length > 0 || Object.keys(sets).length > 0 || Object.keys(k).length > 0)) ? [stamp.dot] : [];
  return {
    c: canonicalVector(withDot(c, stamp.dot)),
    r,
    k,
    s: sets,
    x: existence,
    w: { h: hlcToHex(stamp.hlc), s: stamp.site, d: stamp.dot },
  };
}
