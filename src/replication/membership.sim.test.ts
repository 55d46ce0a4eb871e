// Compaction waits for current members only: a site that is down holds the others' logs back (it
// will need them), until a topology epoch marks it removed; then the logs are compacted without it.
import { describe, expect, it } from 'vitest';
import { SimCluster } from '../cluster/sim-cluster.js';
import { withSeed } from '../platform/sim/index.js';

describe('membership (simulation)', () => {
  it('a down member holds compaction back; once removed it no longer does', async () => {
    await withSeed(5, async (seed) => {
      const cluster = await SimCluster.create({ seed, sites: 3 });
      try {
        const { world } = cluster;
        const east = () => cluster.site('us-east')!.node;
        const writeSome = async (n: number, tag: string) => {
          for (let i = 0; i < n; i++) {
            const w = cluster.write('us-east', 'profiles', `${tag}-${i}`, { op: 'put', value: { i } });
            await world.runFor(10);
            await w;
          }
        };
        await writeSome(10, 'a');
        await world.runUntil(() => cluster.converged(), { timeoutMs: 10_000 });
        await world.runFor(1_000);
        const southHad = east().vector()[east().origin]!;
        await cluster.crash('ap-south');

        await writeSome(20, 'b');
        await world.runFor(3_000);
        // ap-south is still a member: what it has not got stays in the log
        expect(east().store.logFloor()[east().origin] ?? 0).toBeLessThanOrEqual(southHad);

        const removed = {
          epoch: 1,
          members: [
            { site: 'us-east', state: 'active' as const },
            { site: 'eu-west', state: 'active' as const },
            { site: 'ap-south', state: 'removed' as const },
          ],
        };
        for (const id of ['us-east', 'eu-west']) expect(await cluster.site(id)!.node.store.setMembership(removed)).toBe(true);
        expect(east().membership()).toEqual({ epoch: 1, members: [...removed.members].sort((a, b) => a.site.localeCompare(b.site)) });
        await writeSome(5, 'c');
        await world.runFor(3_000);
        expect(east().store.logFloor()[east().origin] ?? 0).toBeGreaterThan(southHad);
      } finally {
        await cluster.stop();
      }
    });
  });
});
