// Properties of the item join: commutative, associative, idempotent, so any delivery order gives
// the same state; and the semantics promised per policy (observed-remove, add-wins, counters).
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { highestSibling, joinStates, joinStatesTracked, versionOf, wholeItem, type ItemState, type JoinOptions } from './item.js';
import { applyLocalWrite, type ItemOp } from './write.js';
import { materialize, type TableSemantics } from './materialize.js';
import { hlcFromHex, hlcOf } from './hlc.js';
import { dotOf } from './vector.js';
import { RequestError } from './errors.js';

const crdt: TableSemantics = { conflict: 'crdt', fields: { n: 'counter', tags: 'set' } };
const lww: TableSemantics = { conflict: 'lww', fields: {} };
const merge: TableSemantics = { conflict: 'merge', fields: {} };
const custom: TableSemantics = { conflict: 'custom', fields: {} };

/** A tiny replica: its own origin, seq and a state for one item. */
class Replica {
  seq = 0;
  state: ItemState | undefined;
  constructor(
    readonly site: string,
    readonly table: TableSemantics,
    private ms = 1000,
    private readonly joinOptions: JoinOptions = { pruneToMax: table.conflict === 'lww' },
  ) {}
  write(op: ItemOp): ItemState {
    this.seq += 1;
    this.ms += 1;
    const origin = `${this.site}.1`;
    // as a site's clock does (HybridClock.tickAfter): a write is stamped after the item it changes,
    // so a causal successor always has the higher hlc, whatever the wall clocks say
    const after = this.state ? hlcFromHex(this.state.w.h) : 0n;
    const own = hlcOf(this.ms, 0);
    const hlc = own > after ? own : after + 1n;
    this.state = applyLocalWrite(this.table, this.state, op, { dot: dotOf(origin, this.seq), hlc, site: this.site, origin });
    return this.state;
  }
  receive(s: ItemState): void {
    this.state = this.state ? joinStates(this.state, s, this.joinOptions) : s;
  }
  value() {
    return this.state ? materialize(this.table, this.state) : undefined;
  }
}

const opArb: fc.Arbitrary<ItemOp> = fc.oneof(
  fc.record({ op: fc.constant('put' as const), value: fc.record({ a: fc.integer({ min: 0, max: 3 }), n: fc.integer({ min: -5, max: 5 }), tags: fc.array(fc.constantFrom('x', 'y', 'z'), { maxLength: 3 }) }) }),
  fc.constant({ op: 'delete' as const }),
  fc.record({ op: fc.constant('patch' as const), patch: fc.record({ increment: fc.record({ n: fc.integer({ min: -3, max: 3 }) }) }) }),
  fc.record({ op: fc.constant('patch' as const), patch: fc.record({ add: fc.record({ tags: fc.array(fc.constantFrom('x', 'y', 'z'), { minLength: 1, maxLength: 2 }) }) }) }),
  fc.record({ op: fc.constant('patch' as const), patch: fc.record({ remove: fc.record({ tags: fc.array(fc.constantFrom('x', 'y', 'z'), { minLength: 1, maxLength: 2 }) }) }) }),
  fc.record({ op: fc.constant('patch' as const), patch: fc.record({ set: fc.record({ b: fc.integer({ min: 0, max: 3 }) }) }) }),
);

/** Three replicas run a random schedule of writes and pairwise syncs; returns every state produced. */
function randomHistory(table: TableSemantics, steps: { who: number; op: ItemOp; syncFrom: number }[]): ItemState[] {
  const rs = ['a', 'b', 'c'].map((s) => new Replica(s, table));
  const states: ItemState[] = [];
  for (const step of steps) {
    const r = rs[step.who % 3]!;
    const from = rs[step.syncFrom % 3]!;
    if (from.state) r.receive(from.state);
    states.push(r.write(step.op));
  }
  return states;
}

const stepsArb = fc.array(fc.record({ who: fc.nat(2), op: opArb, syncFrom: fc.nat(2) }), { minLength: 1, maxLength: 12 });

describe('item join', () => {
  for (const table of [crdt, merge, lww]) {
    const opFilter = (steps: { op: ItemOp }[]) =>
      table.conflict === 'crdt' ? steps : steps.map((s) => (s.op.op === 'patch' ? { ...s, op: { op: 'delete' as const } } : s));
    it(`${table.conflict}: commutative, associative, idempotent over random histories`, () => {
      fc.assert(
        fc.property(stepsArb, fc.nat(), fc.nat(), fc.nat(), (steps, i, j, k) => {
          const states = randomHistory(table, opFilter(steps) as typeof steps);
          const a = states[i % states.length]!;
          const b = states[j % states.length]!;
          const c = states[k % states.length]!;
          const o = { pruneToMax: table.conflict === 'lww' };
          const ab = joinStates(a, b, o);
          expect(versionOf(ab)).toBe(versionOf(joinStates(b, a, o)));
          expect(materialize(table, ab)).toEqual(materialize(table, joinStates(b, a, o)));
          expect(materialize(table, joinStates(ab, c, o))).toEqual(materialize(table, joinStates(a, joinStates(b, c, o), o)));
          expect(materialize(table, joinStates(a, a, o))).toEqual(materialize(table, a));
        }),
      );
    });
  }

  it('lww: the higher version wins everywhere, a causal successor always replaces', () => {
    const a = new Replica('a', lww, 1000);
    const b = new Replica('b', lww, 5000);
    const sa = a.write({ op: 'put', value: { v: 'a' } });
    const sb = b.write({ op: 'put', value: { v: 'b' } });
    a.receive(sb);
    b.receive(sa);
    expect(a.value()).toEqual(b.value());
    expect(a.value()).toMatchObject({ live: true, value: { v: 'b' } });
    // a, far behind in wall time, writes after seeing b's value: its write still wins (hlc > item hlc)
    const sa2 = a.write({ op: 'put', value: { v: 'a2' } });
    b.receive(sa2);
    expect(b.value()).toMatchObject({ live: true, value: { v: 'a2' } });
  });

  it('merge: concurrent changes to different fields both survive', () => {
    const a = new Replica('a', merge);
    const b = new Replica('b', merge);
    b.receive(a.write({ op: 'put', value: { x: 1, y: 1 } }));
    const sa = a.write({ op: 'patch', patch: { set: { x: 2 } } });
    const sb = b.write({ op: 'patch', patch: { set: { y: 3 } } });
    a.receive(sb);
    b.receive(sa);
    expect(a.value()).toEqual({ live: true, value: { x: 2, y: 3 }, origin: expect.any(String) });
    expect(b.value()).toEqual(a.value());
  });

  it('crdt: counters add concurrent increments and survive a concurrent PUT (observed-remove)', () => {
    const a = new Replica('a', crdt);
    const b = new Replica('b', crdt);
    b.receive(a.write({ op: 'patch', patch: { increment: { n: 5 } } }));
    const sa = a.write({ op: 'put', value: { n: 100 } });
    const sb = b.write({ op: 'patch', patch: { increment: { n: 2 } } });
    a.receive(sb);
    b.receive(sa);
    expect(a.value()).toMatchObject({ value: { n: 102 } });
    expect(b.value()).toEqual(a.value());
    // re-delivery never double counts
    a.receive(sb);
    a.receive(sa);
    expect(a.value()).toMatchObject({ value: { n: 102 } });
  });

  it('crdt: sets are add-wins; a delete removes only what it saw', () => {
    const a = new Replica('a', crdt);
    const b = new Replica('b', crdt);
    b.receive(a.write({ op: 'patch', patch: { add: { tags: ['x'] } } }));
    const sa = a.write({ op: 'delete' });
    const sb = b.write({ op: 'patch', patch: { add: { tags: ['x', 'y'] } } });
    a.receive(sb);
    b.receive(sa);
    expect(a.value()).toMatchObject({ live: true, value: { tags: ['"x"', '"y"'].map((s) => JSON.parse(s)) } });
    expect(b.value()).toEqual(a.value());
  });

  it('crdt: an operation of the wrong kind is a 409', () => {
    const a = new Replica('a', crdt);
    expect(() => a.write({ op: 'patch', patch: { set: { n: 1 } } })).toThrow(RequestError);
    expect(() => a.write({ op: 'patch', patch: { increment: { other: 1 } } })).toThrow(expect.objectContaining({ status: 409 }));
    expect(() => new Replica('z', lww).write({ op: 'patch', patch: { add: { tags: ['x'] } } })).toThrow(expect.objectContaining({ status: 409 }));
  });

  it('versions differ for different states and are equal for equal ones', () => {
    const a = new Replica('a', lww);
    const s1 = a.write({ op: 'put', value: { v: 1 } });
    const s2 = a.write({ op: 'put', value: { v: 1 } });
    expect(versionOf(s1)).not.toBe(versionOf(s2));
    expect(versionOf(joinStates(s1, s2, { pruneToMax: true }))).toBe(versionOf(s2));
  });
});

describe('custom: siblings bounded by siblingsMax', () => {
  const siblingsMax = 2;
  const bounded: JoinOptions = { pruneToMax: false, siblingsMax };
  const join = (a: ItemState, b: ItemState) => joinStates(a, b, bounded);
  const siblingsOf = (s: ItemState) => s.r[wholeItem] ?? [];
  const putOrDelete: fc.Arbitrary<ItemOp> = fc.oneof(
    fc.record({ op: fc.constant('put' as const), value: fc.record({ a: fc.integer({ min: 0, max: 3 }) }) }),
    fc.constant({ op: 'delete' as const }),
  );
  /** Five replicas (more writers than siblingsMax): writes, each after joining one other's state. */
  const historyArb = fc.array(fc.record({ who: fc.nat(4), op: putOrDelete, syncFrom: fc.nat(4), sync: fc.boolean() }), { minLength: 1, maxLength: 16 });
  function history(steps: { who: number; op: ItemOp; syncFrom: number; sync: boolean }[]): ItemState[] {
    const rs = ['a', 'b', 'c', 'd', 'e'].map((site, i) => new Replica(site, custom, 1000 + i, bounded));
    const states: ItemState[] = [];
    for (const step of steps) {
      const r = rs[step.who]!;
      const from = rs[step.syncFrom]!;
      if (step.sync && from.state) r.receive(from.state);
      states.push(r.write(step.op));
    }
    return states;
  }
  const joinAll = (states: ItemState[]) => states.reduce((acc, s) => join(acc, s));

  it('keeps at most siblingsMax siblings, the highest by version, and reports the pruned ones', () => {
    const rs = ['a', 'b', 'c'].map((site, i) => new Replica(site, custom, 1000 + i, bounded));
    const [sa, sb, sc] = rs.map((r) => r.write({ op: 'put', value: { by: r.site } }));
    const { state, losers } = joinStatesTracked(join(sa!, sb!), sc!, bounded);
    expect(siblingsOf(state).map((s) => s.s).sort()).toEqual(['b', 'c']);
    expect(losers.filter((l) => l.pruned)).toEqual([expect.objectContaining({ field: wholeItem, loser: siblingsOf(sa!)[0], pruned: true })]);
    expect(losers.filter((l) => !l.pruned).map((l) => l.loser.s)).toEqual(['b']);
  });

  it('commutative and idempotent, exactly; the highest sibling (the LWW fallback) never depends on order', () => {
    fc.assert(
      fc.property(historyArb, fc.nat(), fc.nat(), fc.nat(), (steps, i, j, k) => {
        const states = history(steps);
        const [a, b, c] = [i, j, k].map((n) => states[n % states.length]!) as [ItemState, ItemState, ItemState];
        expect(join(a, b)).toEqual(join(b, a));
        expect(join(a, a)).toEqual(a);
        expect(join(join(a, b), b)).toEqual(join(a, b));
        const left = join(join(a, b), c);
        const right = join(a, join(b, c));
        for (const s of [left, right, joinAll(states)]) expect(siblingsOf(s).length).toBeLessThanOrEqual(siblingsMax);
        expect(highestSibling(siblingsOf(left))).toEqual(highestSibling(siblingsOf(right)));
        expect(materialize(custom, left)).toEqual(materialize(custom, right));
      }),
    );
  });

  it('any two join orders converge once the two results are exchanged, and the version tells them apart until then', () => {
    fc.assert(
      fc.property(historyArb, fc.array(fc.nat(), { minLength: 2, maxLength: 20 }), (steps, picks) => {
        const states = history(steps);
        // two sites receive the same states in different orders (and one of them some twice)
        const got = picks.map((n) => states[n % states.length]!);
        const one = joinAll(got);
        const other = joinAll([...got].reverse().concat(got.slice(0, 1)));
        expect(one.c).toEqual(other.c);
        if (versionOf(one) === versionOf(other)) expect(one).toEqual(other);
        else expect(one).not.toEqual(other);
        // anti-entropy: each joins the other's state; both end in the same state, which absorbs both
        const exchanged = join(one, other);
        expect(join(other, one)).toEqual(exchanged);
        expect(join(exchanged, one)).toEqual(exchanged);
        expect(join(exchanged, other)).toEqual(exchanged);
        // with nothing pruned on the way, the join is exactly associative: every order gives one state
        const pruned = (xs: ItemState[]) => xs.slice(1).some((s, n) => joinStatesTracked(joinAll(xs.slice(0, n + 1)), s, bounded).losers.some((l) => l.pruned));
        if (!pruned(got) && !pruned([...got].reverse().concat(got.slice(0, 1)))) expect(one).toEqual(other);
      }),
    );
  });

  it('associative only up to pruning: two orders can differ at the same context, with different versions, until exchanged', () => {
    // m, e1, e2 concurrent (m lowest); w was written after seeing e1 and e2, never m
    const [rm, r1, r2, rw] = ['m', 'e1', 'e2', 'w'].map((site, i) => new Replica(site, custom, 1000 + i, bounded)) as [Replica, Replica, Replica, Replica];
    const m = rm.write({ op: 'put', value: { by: 'm' } });
    const e1 = r1.write({ op: 'put', value: { by: 'e1' } });
    const e2 = r2.write({ op: 'put', value: { by: 'e2' } });
    rw.receive(e1);
    rw.receive(e2);
    const w = rw.write({ op: 'put', value: { by: 'w' } });
    const left = join(join(join(m, e1), e2), w); // m pruned while e1 and e2 were live
    const right = join(m, join(join(e1, e2), w)); // e1 and e2 already replaced by w: m survives
    expect(left.c).toEqual(right.c);
    expect(siblingsOf(left).map((s) => s.s)).toEqual(['w']);
    expect(siblingsOf(right).map((s) => s.s).sort()).toEqual(['m', 'w']);
    expect(versionOf(left)).not.toBe(versionOf(right));
    expect(join(left, right)).toEqual(left);
    expect(join(right, left)).toEqual(left);
  });
});
