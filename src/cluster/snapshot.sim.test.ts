// Bootstrap from a snapshot carries the conflict feed: a site that loses its disk and comes back
// behind its peers' compacted logs installs a peer's snapshot, and with it the losers that peer
// recorded, so the trace of a concurrent write that lost does not depend on which site kept it.
import { describe, expect, it } from 'vitest';
import { withSeed } from '../platform/sim/index.js';
import { SimCluster } from './sim-cluster.js';

describe('snapshot bootstrap (simulation)', () => {
  it('a wiped site bootstraps from a snapshot and gets the conflict feed with it', async () => {
    await withSeed(7, async (seed) => {
      const cluster = await SimCluster.create({ seed, sites: 3 });
      try {
        const { world } = cluster;
        await world.runFor(500);
        // concurrent writes to one key on both sides of a split: one of them loses
        world.network.partition({ kind: 'split', groups: [['us-east'], ['eu-west', 'ap-south']] });
        const a = cluster.write('us-east', 'profiles', 'k', { op: 'put', value: { by: 'east' } });
        const b = cluster.write('eu-west', 'profiles', 'k', { op: 'put', value: { by: 'west' } });
        await world.runFor(200);
        await Promise.all([a, b]);
        world.network.heal();
        // enough later writes that every log is compacted past what a new site would need
        for (let i = 0; i < 30; i++) {
          const w = cluster.write(['us-east', 'eu-west'][i % 2]!, 'profiles', `later-${i}`, { op: 'put', value: { i } });
          await world.runFor(20);
          await w;
        }
        await world.runUntil(() => cluster.converged(), { timeoutMs: 30_000 });
        await world.runFor(3_000);
        const feed = async (id: string) => (await cluster.site(id)!.node.store.conflicts('profiles', 0, 1000)).map((r) => `${r.record.key} ${r.record.loserDot}`);
        const known = new Set([...(await feed('us-east')), ...(await feed('eu-west'))]);
        expect([...known].some((k) => k.startsWith('k '))).toBe(true);

        await cluster.wipe('ap-south');
        await cluster.start('ap-south');
        await world.runUntil(() => cluster.converged(), { timeoutMs: 60_000 });
        const south = cluster.site('ap-south')!.node;
        // it came back through a snapshot (its log starts after the peers' compacted entries) ...
        expect(Object.keys(south.store.logFloor()).length).toBeGreaterThan(0);
        // ... and holds the loser of the contested key, as recorded by the site it bootstrapped from
        const southFeed = await feed('ap-south');
        expect(southFeed.some((k) => k.startsWith('k '))).toBe(true);
        for (const k of southFeed) expect(known.has(k)).toBe(true);
        expect((await south.get(south.table('profiles'), 'k'))?.value).toEqual((await cluster.site('us-east')!.node.get(south.table('profiles'), 'k'))?.value);
      } finally {
        await cluster.stop();
      }
    });
  });
});
