// Local writes after a tombstone was purged at one site and not yet at another: what the item's
// join must still count (ARCHITECTURE.md, "Tombstones"; crdt counters).
import { describe, expect, it } from 'vitest';
import { joinStates, type ItemState } from './item.js';
import { applyLocalWrite, compensatingState, type ItemOp } from './write.js';
import { materialize, type TableSemantics } from './materialize.js';
import { hlcOf } from './hlc.js';
import { dotOf, type VersionVector } from './vector.js';

const crdt: TableSemantics = { conflict: 'crdt', fields: { n: 'counter', tags: 'set' } };

function write(state: ItemState | undefined, op: ItemOp, origin: string, seq: number, ms: number, floor: VersionVector = {}): ItemState {
  return applyLocalWrite(crdt, state, op, { dot: dotOf(origin, seq), hlc: hlcOf(ms, 0), site: origin.split('.')[0]!, origin }, floor);
}

const join = (a: ItemState, b: ItemState) => joinStates(a, b, { pruneToMax: false });
const valueOf = (s: ItemState) => {
  const m = materialize(crdt, s);
  return m.live ? m.value : undefined;
};

describe('counters across a purged tombstone', () => {
  it('an increment made after this site purged the tombstone counts at a site that still holds it', () => {
    const x = 'x.1';
    const plus3 = write(undefined, { op: 'patch', patch: { increment: { n: 3 } } }, x, 1, 1000);
    const deleted = write(plus3, { op: 'delete' }, x, 2, 1001);
    // site Y holds the tombstone; site X purged it (causally stable there first) and keeps its context as the GC floor
    const atY = join(plus3, deleted);
    expect(valueOf(atY)).toBeUndefined();
    const again = write(undefined, { op: 'patch', patch: { increment: { n: 1 } } }, x, 3, 1002, deleted.c);
    expect(valueOf(again)).toEqual({ n: 1 });
    // Y joins the new write into its tombstone: the +1 must survive the old pair [3, 0]
    expect(valueOf(join(atY, again))).toEqual({ n: 1 });
    expect(valueOf(join(again, atY))).toEqual({ n: 1 });
    // and later increments at X keep adding to the same new slot
    const plus2 = write(again, { op: 'patch', patch: { increment: { n: 2 } } }, x, 4, 1003);
    expect(valueOf(join(join(atY, again), plus2))).toEqual({ n: 3 });
    expect(Object.keys(plus2.k['n']!.inc)).toEqual(['x.1:3']);
  });

  it('a write on an existing item continues its origin slot, including one named by the bare origin', () => {
    const legacy: ItemState = {
      c: { 'x.1': 1 },
      r: {},
      k: { n: { inc: { 'x.1': [5, 0] }, rst: {} } },
      s: {},
      x: ['x.1:1'],
      w: { h: '00000000003e8000', s: 'x', d: 'x.1:1' },
    };
    const next = write(legacy, { op: 'patch', patch: { increment: { n: 1 } } }, 'x.1', 2, 2000);
    expect(next.k['n']!.inc).toEqual({ 'x.1': [6, 0] });
    expect(valueOf(next)).toEqual({ n: 6 });
  });
});

describe('a compensation over a key written before its void write', () => {
  // The old owner wrote the key (valid), then wrote it again beyond the cut (void). The new owner
  // holds the valid write and compensates the void one: the old owner, which has seen the valid
  // write replaced, must take the valid value back, not lose the key (found by the HTTP failover
  // simulation, cluster/http-workload.ts, fault isolate, seed 1).
  const old = 'us-east.1';
  const stamp = (table: TableSemantics, state: ItemState | undefined, op: ItemOp, seq: number, ms: number) =>
    applyLocalWrite(table, state, op, { dot: dotOf(old, seq), hlc: hlcOf(ms, 0), site: 'us-east', origin: old });
  for (const table of [{ conflict: 'lww', fields: {} }, crdt, { conflict: 'merge', fields: {} }] as TableSemantics[])
    it(`${table.conflict}: the old owner ends with the valid value`, () => {
      const valid = stamp(table, undefined, { op: 'put', value: table === crdt ? { n: 1, tags: ['a'] } : { v: 1 } }, 1, 1000);
      const voidWrite = stamp(table, valid, { op: 'put', value: table === crdt ? { n: 5, tags: ['b'] } : { v: 2 } }, 2, 1001);
      const compensation = compensatingState(valid, [{ dot: dotOf(old, 2), origin: old, state: voidWrite }], { dot: dotOf('eu-west.1', 1), hlc: hlcOf(1002, 0), site: 'eu-west', origin: 'eu-west.1' });
      const j = (a: ItemState, b: ItemState) => joinStates(a, b, { pruneToMax: table.conflict === 'lww' });
      const show = (s: ItemState) => {
        const m = materialize(table, s);
        return m.live ? m.value : undefined;
      };
      const expected = table === crdt ? { n: 1, tags: ['a'] } : { v: 1 };
      expect(show(compensation)).toEqual(expected);
      expect(show(j(voidWrite, compensation))).toEqual(expected);
      expect(show(j(compensation, voidWrite))).toEqual(expected);
      expect(show(j(valid, compensation))).toEqual(expected);
    });
});

describe('a compensation over a register with concurrent siblings', () => {
  // Two valid concurrent values of one field (written before the unit had one owner); the old
  // owner replaced both by its void write. Every site must end with the same register.
  const merge: TableSemantics = { conflict: 'merge', fields: {} };
  const put = (state: ItemState | undefined, v: number, origin: string, seq: number, ms: number) =>
    applyLocalWrite(merge, state, { op: 'put', value: { v } }, { dot: dotOf(origin, seq), hlc: hlcOf(ms, 0), site: origin.split('.')[0]!, origin });
  const j = (a: ItemState, b: ItemState) => joinStates(a, b, { pruneToMax: false });

  it('the old owner and a site holding both siblings converge on one register', () => {
    const both = j(put(undefined, 1, 'us-east.1', 1, 1000), put(undefined, 2, 'eu-west.1', 1, 1000));
    expect(both.r['v']).toHaveLength(2);
    const voidWrite = put(both, 3, 'us-east.1', 2, 1001);
    const compensation = compensatingState(both, [{ dot: dotOf('us-east.1', 2), origin: 'us-east.1', state: voidWrite }], { dot: dotOf('eu-west.1', 2), hlc: hlcOf(1002, 0), site: 'eu-west', origin: 'eu-west.1' });
    const atOldOwner = j(voidWrite, compensation);
    const atThird = j(both, compensation);
    expect(atOldOwner.r).toEqual(atThird.r);
    // the value the owner showed, everywhere
    const shown = materialize(merge, both);
    expect(shown).toMatchObject({ live: true, value: { v: 1 } });
    for (const s of [compensation, atOldOwner, atThird]) expect(materialize(merge, s)).toMatchObject({ live: true, value: { v: 1 } });
  });
});
