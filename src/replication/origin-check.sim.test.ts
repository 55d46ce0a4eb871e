// The start-up origin check of a reopened site: stopping the site ends it at once, without waiting
// for its peers (or the check's deadline), and the site never took a write meanwhile.
import { describe, expect, it } from 'vitest';
import { SimCluster } from '../cluster/sim-cluster.js';
import { limits } from '../limits.js';
import { withSeed } from '../platform/sim/index.js';

describe('origin check (simulation)', () => {
  it('a site stopped while it waits for unreachable peers stops at once', async () => {
    await withSeed(31, async (seed) => {
      const cluster = await SimCluster.create({ seed, sites: 3 });
      try {
        const { world } = cluster;
        await world.runFor(300);
        world.network.partition({ kind: 'isolate-site', site: 'us-east' });
        await cluster.crash('us-east');
        const site = await cluster.start('us-east');
        await world.runFor(200);
        expect(site.node.originConfirmed).toBe(false);
        const startedMs = world.clock.monotonicMs();
        let stopped = false;
        void site.replicator.stop().then(() => (stopped = true));
        await world.runUntil(() => stopped, { timeoutMs: limits.originCheckMsMax });
        expect(world.clock.monotonicMs() - startedMs).toBeLessThan(limits.peerBackoffMsMax * 2);
        expect(site.node.originConfirmed).toBe(false);
      } finally {
        await cluster.stop();
      }
    });
  });
});
