// Tombstone GC must not purge a delete while a member holds a concurrent write this site lacks,
// even one of an origin that is no member's current one: here a site reborn (a new incarnation,
// taken because it restarted cut off from its peers) still holds a write its earlier origin made
// concurrently with a delete, and the other sites can hear its acks but cannot pull from it yet.
// Purging then would let that write, arriving later, bring the deleted item back.
import { describe, expect, it } from 'vitest';
import { SimCluster } from '../cluster/sim-cluster.js';
import { withSeed } from '../platform/sim/index.js';

describe('tombstone GC (simulation)', () => {
  it('keeps a tombstone while a reborn site holds a concurrent write of its earlier origin', async () => {
    await withSeed(21, async (seed) => {
      const cluster = await SimCluster.create({ seed, sites: 3, network: { oneWayDelayMsMean: 5, oneWayDelayMsJitter: 1 }, disk: { housekeepingIntervalMs: [100, 100] } });
      try {
        const { world } = cluster;
        const settle = async <T>(p: Promise<T>): Promise<T> => {
          let done = false;
          void p.finally(() => (done = true));
          await world.runUntil(() => done, { timeoutMs: 10_000 });
          return p;
        };
        await world.runFor(500);
        await settle(cluster.write('eu-west', 'profiles', 'k', { op: 'put', value: { v: 'base' } }));
        await world.runUntil(() => cluster.converged(), { timeoutMs: 10_000 });

        // us-east, cut off, writes k; then eu-west deletes k without having seen that write
        world.network.partition({ kind: 'isolate-site', site: 'us-east' });
        const earlier = cluster.site('us-east')!.node.origin;
        const concurrent = await settle(cluster.write('us-east', 'profiles', 'k', { op: 'put', value: { v: 'concurrent' } }));
        await world.runFor(50);
        await settle(cluster.write('eu-west', 'profiles', 'k', { op: 'delete' }));

        // us-east restarts still cut off: it cannot confirm its origin and takes a new one
        await cluster.crash('us-east');
        await cluster.start('us-east');
        await world.runUntil(() => cluster.site('us-east')!.node.originConfirmed, { timeoutMs: 10_000 });
        expect(cluster.site('us-east')!.node.origin).not.toBe(earlier);

        // us-east reaches the others (pulls the delete, acks it), they cannot reach it yet
        world.network.heal();
        world.network.cutLink('eu-west', 'us-east');
        world.network.cutLink('ap-south', 'us-east');
        await world.runFor(3_000);
        const holds = (id: string) => (cluster.site(id)!.node.vector()[earlier] ?? 0) >= Number(concurrent.dot.split(':').pop());
        expect(holds('eu-west') || holds('ap-south')).toBe(false);

        world.network.heal();
        await world.runUntil(() => holds('eu-west') && holds('ap-south'), { timeoutMs: 10_000 });
        // the delete came later (higher hlc): last-writer-wins keeps the item deleted everywhere
        for (const id of ['eu-west', 'ap-south', 'us-east']) {
          const node = cluster.site(id)!.node;
          expect(await node.get(node.table('profiles'), 'k'), `${id} shows the deleted item again; replay: SEED=${seed}`).toBeUndefined();
        }
      } finally {
        await cluster.stop();
      }
    });
  });
});
