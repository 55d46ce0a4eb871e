// Each drill checker fed a good history passes it, and fed a bad one (a lost write, a voided quorum
// write, a duplicate from a retry, a stale session read, a divergent site, a non-linearizable list)
// names what is wrong.
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../config/load.js';
import { checkCounters, checkDivergence, checkListAppend, checkSessions, findLostWrites, itemRef, type FinalItem, type SiteFinal } from './checkers.js';
import type { OpRecord } from './op-history.js';

const tables = parseConfig(
  {
    cluster: 'c',
    secret: 'a-secret-of-16-chars',
    sites: [{ id: 'a', url: 'http://127.0.0.1:1' }, { id: 'b', url: 'http://127.0.0.1:2' }],
    tables: { profiles: { pattern: 'local' }, counters: { pattern: 'local', conflict: 'crdt', fields: { n: 'counter' } }, ledger: { pattern: 'global', writeSite: 'a', durability: 'quorum' } },
  },
  'test',
).tables;

let nextId = 0;
const op = (p: Partial<OpRecord> & Pick<OpRecord, 'op' | 'outcome'>): OpRecord => ({
  id: nextId++,
  client: 'open',
  table: 'profiles',
  key: 'k',
  via: 'router',
  consistency: 'eventual',
  intendedMs: 0,
  sentMs: 0,
  endMs: 1,
  ...p,
});

const site = (name: string, items: Record<string, FinalItem>, gcFloor: Record<string, number> = {}): SiteFinal => ({ site: name, gcFloor, items: new Map(Object.entries(items)) });
const item = (context: Record<string, number>, value?: Record<string, unknown>): FinalItem => ({ context, live: value !== undefined, value });

describe('lost writes by dot coverage', () => {
  const history = [
    op({ op: 'put', outcome: 'ok', dot: 'a.1:1', writeId: 'w1' }),
    op({ op: 'put', outcome: 'ok', dot: 'b.1:1', writeId: 'w2' }),
    op({ op: 'put', outcome: 'ok', table: 'ledger', key: 'x', dot: 'a.1:2', writeId: 'w3' }),
    op({ op: 'put', outcome: 'unknown', dot: 'a.1:9', writeId: 'w4' }),
    op({ op: 'delete', outcome: 'ok', key: 'gone', dot: 'b.1:2', writeId: 'w5' }),
  ];

  it('passes when an item context or a GC floor covers every acknowledged dot (a conflict loser included)', () => {
    const survivors = [site('a', { [itemRef('profiles', 'k')]: item({ 'a.1': 1, 'b.1': 1 }, { w: 'w2' }), [itemRef('ledger', 'x')]: item({ 'a.1': 2 }, { w: 'w3' }) }, { 'b.1': 2 })];
    expect(findLostWrites(history, survivors, [], tables)).toEqual([]);
  });

  it('names an acknowledged write whose dot no survivor covers, and classes it by durability', () => {
    const survivors = [
      site('a', { [itemRef('profiles', 'k')]: item({ 'a.1': 1 }, { w: 'w1' }), [itemRef('ledger', 'x')]: item({ 'a.1': 1 }, { w: 'old' }), [itemRef('profiles', 'gone')]: item({ 'b.1': 2 }) }),
    ];
    const lost = findLostWrites(history, survivors, [], tables);
    expect(lost.map((l) => [l.writeId, l.durability, l.why])).toEqual([
      ['w2', 'local', 'not covered'],
      ['w3', 'quorum', 'not covered'],
    ]);
  });

  it('counts a voided quorum write as lost even though its dot is covered and it is in a conflict feed', () => {
    const survivors = [site('a', { [itemRef('profiles', 'k')]: item({ 'a.1': 1, 'b.1': 1 }, { w: 'w2' }), [itemRef('ledger', 'x')]: item({ 'a.1': 3 }, { w: 'w3-comp' }) }, { 'b.1': 2 })];
    const lost = findLostWrites(history, survivors, [{ site: 'b', table: 'ledger', key: 'x', reason: 'voided', loserDot: 'a.1:2' }], tables);
    expect(lost.map((l) => [l.writeId, l.durability, l.why])).toEqual([['w3', 'quorum', 'voided']]);
  });
});

describe('counter bounds', () => {
  const final = (n: number) => () => item({}, { n });
  const incs = [
    op({ op: 'patch', patch: 'increment', field: 'n', amount: 5, outcome: 'ok', table: 'counters', key: 'c' }),
    op({ op: 'patch', patch: 'increment', field: 'n', amount: 2, outcome: 'unknown', table: 'counters', key: 'c' }),
    op({ op: 'patch', patch: 'increment', field: 'n', amount: -1, outcome: 'unknown', table: 'counters', key: 'c' }),
    op({ op: 'patch', patch: 'increment', field: 'n', amount: 9, outcome: 'failed', table: 'counters', key: 'c' }),
  ];

  it('accepts every value between acked + negative unknowns and acked + positive unknowns', () => {
    for (const v of [4, 5, 6, 7]) expect(checkCounters(incs, final(v))).toEqual([]);
  });

  it('catches an increment applied twice by a retry, and a lost acknowledged one', () => {
    expect(checkCounters(incs, final(12)).map((a) => a.kind)).toEqual(['counter-out-of-bounds']);
    expect(checkCounters(incs, final(12))[0]!.detail).toContain('counted twice');
    expect(checkCounters(incs, final(3))[0]!.detail).toContain('missing');
  });
});

describe('sessions', () => {
  const s = (p: Partial<OpRecord> & Pick<OpRecord, 'op' | 'outcome'>) => op({ client: 'session-0', session: true, consistency: 'session', ...p });

  it('accepts reads of the last acknowledged write or of a later one of unknown outcome', () => {
    const history = [
      s({ op: 'put', outcome: 'ok', writeId: 'w1', sentMs: 1 }),
      s({ op: 'get', outcome: 'ok', read: { found: true, writeId: 'w1' }, sentMs: 2 }),
      s({ op: 'put', outcome: 'unknown', writeId: 'w2', sentMs: 3 }),
      s({ op: 'get', outcome: 'ok', read: { found: true, writeId: 'w2' }, sentMs: 4 }),
      s({ op: 'get', outcome: 'ok', read: { found: true, writeId: 'w1' }, sentMs: 5 }),
    ];
    expect(checkSessions(history)).toEqual([]);
  });

  it('catches a stale session read (an older write, or nothing)', () => {
    const history = [
      s({ op: 'put', outcome: 'ok', writeId: 'w1', sentMs: 1 }),
      s({ op: 'put', outcome: 'ok', writeId: 'w2', sentMs: 2 }),
      s({ op: 'get', outcome: 'ok', read: { found: true, writeId: 'w1' }, sentMs: 3, site: 'b' }),
      s({ op: 'get', outcome: 'ok', read: { found: false }, sentMs: 4 }),
    ];
    expect(checkSessions(history).map((a) => a.kind)).toEqual(['session-violation', 'session-violation']);
  });

  it('lets a write of unknown outcome take effect late (held by a paused site), but not an acknowledged older one', () => {
    const history = [
      s({ op: 'put', outcome: 'ok', writeId: 'w0', sentMs: 0 }),
      s({ op: 'put', outcome: 'unknown', writeId: 'w1', sentMs: 1 }),
      s({ op: 'put', outcome: 'ok', writeId: 'w2', sentMs: 2 }),
      s({ op: 'get', outcome: 'ok', read: { found: true, writeId: 'w1' }, sentMs: 3 }),
      s({ op: 'get', outcome: 'ok', read: { found: true, writeId: 'w0' }, sentMs: 4 }),
    ];
    expect(checkSessions(history).map((a) => a.detail)).toEqual([expect.stringContaining('returned w0')]);
  });
});

describe('divergence', () => {
  it('names a site whose digest differs after convergence', () => {
    const same = { site: 'a', vector: { 'a.1': 3 }, digests: { profiles: 'aa' } };
    expect(checkDivergence([same, { ...same, site: 'b' }])).toEqual([]);
    const bad = checkDivergence([same, { site: 'b', vector: { 'a.1': 3 }, digests: { profiles: 'bb' } }]);
    expect(bad.map((a) => a.detail)).toEqual(['table profiles: b digest bb ≠ a digest aa']);
  });
});

describe('list-append linearizability', () => {
  const l = (p: Partial<OpRecord> & Pick<OpRecord, 'op' | 'outcome'>) => op({ client: 'list-0', table: 'ledger', key: 'list0', consistency: 'strong', ...p });
  const read = (items: string[], sentMs: number, endMs = sentMs + 1) => l({ op: 'get', outcome: 'ok', read: { found: items.length > 0, items }, sentMs, endMs });
  const append = (element: string, outcome: OpRecord['outcome'], sentMs: number, endMs: number) => l({ op: 'put', outcome, element, writeId: element, sentMs, endMs });
  const finalOf = (items: string[]) => () => items;

  it('accepts a linearizable history (an unknown append present once, another absent)', () => {
    const history = [append('x', 'ok', 0, 2), read(['x'], 3), append('y', 'unknown', 4, 6), append('z', 'unknown', 4, 6), read(['x', 'y'], 7), append('w', 'ok', 8, 9), read(['x', 'y', 'w'], 10)];
    expect(checkListAppend(history, finalOf(['x', 'y', 'w']))).toEqual([]);
  });

  it('catches a read that misses an append acknowledged before it began', () => {
    const history = [append('x', 'ok', 0, 2), read([], 3)];
    expect(checkListAppend(history, finalOf(['x'])).map((a) => a.detail)).toEqual(['ledger/list0: read at 3 ms misses an append acknowledged before it began (it holds 0 elements)']);
  });

  it('catches reads that are not prefixes of one list, a duplicated append, and a lost acknowledged one', () => {
    expect(checkListAppend([append('x', 'ok', 0, 1), append('y', 'ok', 0, 1), read(['x', 'y'], 2), read(['y', 'x'], 3)], finalOf(['x', 'y'])).map((a) => a.kind)).toContain('not-linearizable');
    expect(checkListAppend([append('x', 'ok', 0, 1), read(['x', 'x'], 2)], finalOf(['x', 'x']))[0]!.detail).toContain('appears twice');
    expect(checkListAppend([append('x', 'ok', 0, 1), append('y', 'ok', 2, 3)], finalOf(['y'])).map((a) => a.detail)).toContain('ledger/list0: acknowledged append x is not in the final list');
  });

  it('catches appends out of real-time order', () => {
    const history = [append('x', 'ok', 0, 1), append('y', 'ok', 2, 3)];
    expect(checkListAppend(history, finalOf(['y', 'x'])).map((a) => a.detail)).toContain('ledger/list0: append y sits before an append acknowledged before it began');
  });
});
