// Relay without the relay delay where it matters: a site that cannot pull from an origin says so in
// its acks, and a site that reaches both relays that origin's entries to it at once; a site that
// pulls from the origin directly is not sent them a second time.
import { describe, expect, it } from 'vitest';
import { SimCluster } from '../cluster/sim-cluster.js';
import { limits } from '../limits.js';
import { withSeed } from '../platform/sim/index.js';

describe('relay (simulation)', () => {
  it('a site cut off from an origin gets its writes through another site well within the relay delay', async () => {
    await withSeed(3, async (seed) => {
      const cluster = await SimCluster.create({ seed, sites: 3, network: { oneWayDelayMsMean: 10, oneWayDelayMsJitter: 2 } });
      try {
        const { world } = cluster;
        await world.runFor(1_000);
        // eu-west can no longer pull from us-east; us-east still reaches eu-west (its acks arrive)
        world.network.cutLink('eu-west', 'us-east');
        await world.runFor(1_000);
        const west = cluster.site('eu-west')!.node;
        const east = cluster.site('us-east')!.node;
        for (let i = 0; i < 5; i++) {
          const w = cluster.write('us-east', 'profiles', `k${i}`, { op: 'put', value: { i } });
          const startedMs = world.clock.monotonicMs();
          await world.runFor(1);
          const outcome = await w;
          await world.runUntil(() => (west.vector()[east.origin] ?? 0) >= outcome.seq, { timeoutMs: 5_000 });
          // two hops of ~10 ms each way plus commits; the relay delay alone would be 300 ms
          expect(world.clock.monotonicMs() - startedMs).toBeLessThan(limits.relayDelayMs / 2);
          await world.runFor(100);
        }
        expect((await west.get(west.table('profiles'), 'k4'))?.value).toEqual({ i: 4 });
      } finally {
        await cluster.stop();
      }
    });
  });
});
