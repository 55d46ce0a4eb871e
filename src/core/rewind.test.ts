// Rewind's per-policy diff: which keys it writes, and that the write it makes, joined with what
// other sites did concurrently, gives the value at T plus their changes (counters by increments).
import { describe, expect, it } from 'vitest';
import { joinStates } from './item.js';
import { materialize, type TableSemantics } from './materialize.js';
import { decideRewind, opTo } from './rewind.js';
import { hlcOf } from './hlc.js';
import { applyLocalWrite, type ItemOp } from './write.js';
import type { ItemState } from './item.js';

const lww: TableSemantics = { conflict: 'lww', fields: {} };
const crdt: TableSemantics = { conflict: 'crdt', fields: { n: 'counter', tags: 'set' } };
let seq = 0;
let ms = 1_000;
function write(t: TableSemantics, state: ItemState | undefined, op: ItemOp, origin = 'a.1'): ItemState {
  seq++;
  return applyLocalWrite(t, state, op, { dot: `${origin}:${seq}`, hlc: hlcOf(ms++, 0), site: origin.split('.')[0]!, origin });
}
const valueOf = (t: TableSemantics, s: ItemState) => {
  const m = materialize(t, s);
  return m.live ? m.value : null;
};

describe('rewind decisions', () => {
  it('classes keys by what happened after the cut, and writes only deleted ones unless overwriting', () => {
    const atT = write(lww, undefined, { op: 'put', value: { v: 1 } });
    const cut = { ...atT.c };
    expect(decideRewind(lww, atT, { v: 1 }, cut, false)).toMatchObject({ class: 'unchanged' });
    expect(decideRewind(lww, atT, { v: 1 }, cut, false).op).toBeUndefined();
    const deleted = write(lww, atT, { op: 'delete' });
    expect(decideRewind(lww, deleted, { v: 1 }, cut, false)).toMatchObject({ class: 'deleted-after', op: { op: 'put', value: { v: 1 } } });
    const changed = write(lww, atT, { op: 'put', value: { v: 2 } });
    expect(decideRewind(lww, changed, { v: 1 }, cut, false)).toMatchObject({ class: 'changed-after', now: { v: 2 } });
    expect(decideRewind(lww, changed, { v: 1 }, cut, false).op).toBeUndefined();
    expect(decideRewind(lww, changed, { v: 1 }, cut, true).op).toEqual({ op: 'put', value: { v: 1 } });
    const created = write(lww, undefined, { op: 'put', value: { n: 1 } });
    expect(decideRewind(lww, created, null, cut, false)).toMatchObject({ class: 'created-after' });
    expect(decideRewind(lww, created, null, cut, false).op).toBeUndefined();
    expect(decideRewind(lww, created, null, cut, true).op).toEqual({ op: 'delete' });
    // a tombstone purged after the delete: no record at all, live at T
    expect(decideRewind(lww, undefined, { v: 1 }, cut, false)).toMatchObject({ class: 'deleted-after', op: { op: 'put' } });
    // already back (a resumed rewind): nothing to write
    const back = write(lww, deleted, { op: 'put', value: { v: 1 } });
    expect(decideRewind(lww, back, { v: 1 }, cut, false)).toMatchObject({ class: 'unchanged' });
    expect(decideRewind(lww, back, { v: 1 }, cut, false).op).toBeUndefined();
  });

  it('crdt: a deleted counter comes back as v(T) plus increments made concurrently elsewhere; sets and registers by difference', () => {
    let s = write(crdt, undefined, { op: 'patch', patch: { set: { name: 'x', gone: 1 }, increment: { n: 7 }, add: { tags: ['a', 'b'] } } });
    const cut = { ...s.c };
    const atT = valueOf(crdt, s)!;
    expect(atT).toEqual({ name: 'x', gone: 1, n: 7, tags: ['a', 'b'] });
    s = write(crdt, s, { op: 'delete' });
    // another site increments concurrently with the rewind (it has seen the delete, not the rewind)
    const elsewhere = write(crdt, s, { op: 'patch', patch: { increment: { n: 3 } } }, 'b.1');
    const d = decideRewind(crdt, s, atT, cut, false);
    expect(d.class).toBe('deleted-after');
    const rewound = write(crdt, s, d.op!);
    const joined = joinStates(rewound, elsewhere, { pruneToMax: false });
    expect(valueOf(crdt, joined)).toEqual({ name: 'x', gone: 1, n: 10, tags: ['a', 'b'] });
  });

  it('crdt: overwriting a changed item patches only what differs', () => {
    const now = { name: 'y', extra: true, n: 12, tags: ['b', 'c'] };
    expect(opTo(crdt, now, { name: 'x', n: 7, tags: ['a', 'b'] })).toEqual({
      op: 'patch',
      patch: { set: { name: 'x' }, unset: ['extra'], increment: { n: -5 }, add: { tags: ['a'] }, remove: { tags: ['c'] } },
    });
  });
});
