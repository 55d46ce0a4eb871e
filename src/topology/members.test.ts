import { describe, expect, it } from 'vitest';
import { parseConfig } from '../config/load.js';
import { dataSites, genesisTopology, nextTopology, voters, type Topology } from './record.js';
import { activate, addJoining, additionRefusals, cutMemberships, quorumSets, readQuorumOfEach, removalRefusals, removedOriginCounts, removeMember, storeMembership } from './members.js';

const config = parseConfig(
  {
    cluster: 't',
    secret: 'members-unit-secret-0123456789',
    sites: ['a', 'b', 'c'].map((id) => ({ id, url: `http://${id}` })),
    tables: { ledger: { pattern: 'global', writeSite: 'a' }, profiles: { pattern: 'local' } },
  },
  'test',
);
const who = { action: 'test', by: 'op', why: 'test', atMs: 0 };
const step = (t: Topology, f: (cur: Topology, d: Topology) => void) => nextTopology(t, (d) => f(t, d), who);

describe('membership online: the record rules', () => {
  const t0 = genesisTopology(config);
  const t1 = step(t0, (_c, d) => addJoining(d, { id: 'd', url: 'http://d', region: 'r' }));
  const t2 = step(t1, (c, d) => activate(c, d, 'd', config.tables));

  it('a joining site is registered but neither a voter nor counted in quorums; active, it is both', () => {
    expect(t1.members.find((m) => m.id === 'd')).toEqual({ id: 'd', kind: 'site', state: 'joining', url: 'http://d', region: 'r' });
    expect(voters(t1)).toEqual(['a', 'b', 'c']);
    expect(quorumSets(t1)).toEqual([['a', 'b', 'c']]);
    expect(storeMembership(t1).members.find((m) => m.site === 'd')?.state).toBe('joining');
    expect(voters(t2)).toEqual(['a', 'b', 'c', 'd']);
    expect(t2.voterChangeEpoch).toBe(2);
  });

  it('an active site added online owns the home units it brings (key prefix: its id and a new region; first writer: its id)', () => {
    const partitioned = parseConfig(
      {
        cluster: 't',
        secret: 'members-unit-secret-0123456789',
        sites: [{ id: 'a', url: 'http://a', region: 'eu' }, { id: 'b', url: 'http://b', region: 'us' }],
        tables: { orders: { pattern: 'partitioned', home: { from: 'key-prefix', separator: ':' } }, sessions: { pattern: 'partitioned', home: { from: 'first-writer' } } },
      },
      'test',
    );
    const g = genesisTopology(partitioned);
    expect(g.homes).toEqual({ orders: { a: 'a', eu: 'a', b: 'b', us: 'b' }, sessions: { a: 'a', b: 'b' } });
    // d opens a new region; e joins an existing one (its prefix stays with the region's first site)
    let t = step(g, (_c, d) => addJoining(d, { id: 'd', url: 'http://d', region: 'ap' }));
    expect(t.homes).toEqual(g.homes);
    t = step(t, (c, d) => activate(c, d, 'd', partitioned.tables));
    t = step(t, (_c, d) => addJoining(d, { id: 'e', url: 'http://e', region: 'eu' }));
    t = step(t, (c, d) => activate(c, d, 'e', partitioned.tables));
    expect(t.homes).toEqual({ orders: { a: 'a', eu: 'a', b: 'b', us: 'b', d: 'd', ap: 'd', e: 'e' }, sessions: { a: 'a', b: 'b', d: 'd', e: 'e' } });
    expect(t.changes.filter((c) => c.epoch === 2)).toEqual([
      { epoch: 2, unit: 'orders/d', owner: 'd' },
      { epoch: 2, unit: 'orders/ap', owner: 'd' },
      { epoch: 2, unit: 'sessions/d', owner: 'd' },
    ]);
  });

  it('while data membership changes, a quorum needs a majority of the old and of the new membership', () => {
    expect(quorumSets(t2)).toEqual([['a', 'b', 'c', 'd'], ['a', 'b', 'c']]);
    // {a, d} is no majority of either; {a, b, d} is of both; {c, d} answering is a read quorum of the new but not the old
    expect(readQuorumOfEach(cutMemberships(t2), new Set(['c', 'd']))).toBe(false);
    expect(readQuorumOfEach(cutMemberships(t2), new Set(['c', 'd', 'a']))).toBe(true);
  });

  it('a removal records a final cut: later entries of the removed site\'s origins do not count', () => {
    const t3 = step(t2, (c, d) => removeMember(c, d, 'b', { 'b.x1': 10, 'a.x1': 99 }));
    expect(t3.members.find((m) => m.id === 'b')).toMatchObject({ state: 'removed', removedAt: 3 });
    expect(t3.cuts).toEqual([{ epoch: 3, origin: 'b.x1', seq: 10 }]);
    expect(removedOriginCounts(t3, 'b.x1', 10)).toBe(true);
    expect(removedOriginCounts(t3, 'b.x1', 11)).toBe(false);
    // an origin of the removed site the cut never saw: nothing of it counts
    expect(removedOriginCounts(t3, 'b.x2', 1)).toBe(false);
    expect(removedOriginCounts(t3, 'a.x1', 1_000)).toBe(true);
    expect(dataSites(t3)).toEqual(['a', 'c', 'd']);
    expect(quorumSets(t3)).toEqual([['a', 'c', 'd'], ['a', 'b', 'c', 'd']]);
    expect(storeMembership(t3).members.find((m) => m.site === 'b')?.state).toBe('removed');
  });

  it('refuses to remove an owner, a witness or an unknown id, and to add an id or URL in use, naming each check', () => {
    expect(removalRefusals(t2, 'a').filter((c) => !c.ok).map((c) => c.name)).toEqual(['owns-nothing']);
    expect(removalRefusals(t2, 'zz').filter((c) => !c.ok).map((c) => c.name)).toContain('member');
    expect(removalRefusals(t2, 'b').every((c) => c.ok)).toBe(true);
    expect(additionRefusals(t2, 'd', 'http://e').filter((c) => !c.ok).map((c) => c.name)).toEqual(['new-id']);
    expect(additionRefusals(t2, 'e', 'http://a').filter((c) => !c.ok).map((c) => c.name)).toEqual(['new-url']);
  });
});
