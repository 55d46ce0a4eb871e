// The pure rules of a forced failover and of `down` members: who is marked down, what the cut is,
// what may be dropped, who votes afterwards, and what quorums count over.
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../config/load.js';
import { forcedEpochStep, forcedRecord, planForced } from './forced.js';
import { cutMemberships, degradedSites, markDown, markUp, quorumSets } from './members.js';
import { genesisTopology, nextTopology, ownerOfUnit, voters } from './record.js';

const config = parseConfig(
  {
    cluster: 't',
    secret: 'forced-test-secret-0123456789',
    sites: [
      { id: 'a', url: 'http://a' },
      { id: 'b', url: 'http://b' },
      { id: 'c', url: 'http://c' },
    ],
    tables: { ledger: { pattern: 'global', writeSite: 'a', durability: 'quorum' } },
  },
  'test',
);

describe('forced failover (pure rules)', () => {
  it('two of three sites lost: marks them down, revokes toward the survivor, reports what the cut may drop', () => {
    const t = genesisTopology(config);
    // c answers; a (the owner) and b do not. c heard of a's writes up to 12 but holds 9 durably
    const probe = { reachableVoters: ['c'], durable: { c: { 'a.x1': 9, 'c.x3': 4 } }, heard: { c: { 'a.x1': 12, 'b.x2': 7, 'c.x3': 5 } } };
    const plan = planForced(t, probe, [{ unit: 'ledger', from: 'a', to: 'c' }]);
    expect(plan.down).toEqual(['a', 'b']);
    expect(plan.votersAfter).toEqual(['c']);
    expect(plan.epoch).toBe(t.epoch + forcedEpochStep);
    expect(plan.cut).toEqual([
      { origin: 'a.x1', seq: 9 },
      { origin: 'c.x3', seq: 4 },
    ]);
    expect(plan.dropped).toEqual([{ origin: 'a.x1', site: 'a', cutSeq: 9, heardSeq: 12 }]);
    expect(plan.risk).toMatch(/split-brain risk: a, b did not answer.*form a majority there/);

    const forced = forcedRecord(t, plan, { action: 'forced-failover', by: 'op', why: 'two sites lost', atMs: 1 });
    expect(forced.epoch).toBe(plan.epoch);
    expect(voters(forced)).toEqual(['c']);
    expect(ownerOfUnit(forced, 'ledger')).toBeNull();
    expect(forced.targets).toEqual({ ledger: 'c' });
    expect(forced.history.at(-1)).toMatchObject({ action: 'forced-failover', forced: true, epoch: plan.epoch });
    // cuts after it need only the sites that remain (the forced-down ones gave up their writes)
    expect(cutMemberships(forced)).toEqual([['c']]);
  });

  it('a site marked down by a majority: refuse keeps counting it in quorums, allow counts the active sites; cuts still count it', () => {
    const t = genesisTopology(config);
    const down = nextTopology(t, (d) => markDown(t, d, 'b'), { action: 'member-down', by: 'a', why: 'lapsed', atMs: 1 });
    expect(voters(down)).toEqual(['a', 'c']);
    expect(quorumSets(down, 'refuse')).toEqual([['a', 'b', 'c']]);
    expect(quorumSets(down, 'allow')).toEqual([['a', 'c']]);
    expect(degradedSites(down, 'allow')).toEqual(['b']);
    expect(degradedSites(down, 'refuse')).toEqual([]);
    expect(cutMemberships(down)).toEqual([['a', 'b', 'c']]);
    expect(down.voterChangeEpoch).toBe(down.epoch);
    const back = nextTopology(down, (d) => markUp(down, d, 'b'), { action: 'member-active', by: 'b', why: 'caught up', atMs: 2 });
    expect(voters(back)).toEqual(['a', 'b', 'c']);
    expect(quorumSets(back, 'allow')).toEqual([['a', 'b', 'c']]);
  });
});
