// Relay without the relay delay where it matters: a site that cannot pull from an origin says so in
// its acks, and a site that reaches both relays that origin's entries to it at once; a site that
// pulls from the origin directly is not sent them a second time, not even while it catches up after
// a partition (when the other sites have held those entries for long).
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

  it('after a partition, a site catching up from an origin is not sent its entries again by another site', async () => {
    await withSeed(5, async (seed) => {
      const cluster = await SimCluster.create({ seed, sites: 3, network: { oneWayDelayMsMean: 10, oneWayDelayMsJitter: 2 } });
      try {
        const { world } = cluster;
        await world.runFor(1_000);
        const sites = ['us-east', 'eu-west', 'ap-south'];
        const received = new Map(sites.map((id) => [id, { applied: 0, duplicates: 0 }]));
        for (const id of sites) {
          const { node, env } = cluster.site(id)!;
          const apply = node.applyRemote.bind(node);
          node.applyRemote = async (entries, raw) => {
            // Applying costs time, as on a real machine, commit by commit: the backlog takes longer
            // than the relay delay, and one site catches up three times slower than the others.
            const total = { applied: 0, duplicates: 0, gaps: 0, quarantined: 0 };
            for (let i = 0; i < entries.length; i += 64) {
              const slice = entries.slice(i, i + 64);
              await env.timers.sleep(slice.length * (id === 'ap-south' ? 3 : 1));
              const r = await apply(slice, raw?.slice(i, i + 64));
              total.applied += r.applied;
              total.duplicates += r.duplicates;
              total.gaps += r.gaps;
              total.quarantined += r.quarantined;
            }
            received.get(id)!.applied += total.applied;
            received.get(id)!.duplicates += total.duplicates;
            return total;
          };
        }
        world.network.partition({ kind: 'isolate-site', site: 'us-east' });
        await world.runFor(500);
        const writes: Promise<unknown>[] = [];
        for (let i = 0; i < 1_800; i++) {
          writes.push(cluster.write(sites[i % 3]!, 'profiles', `k${i}`, { op: 'put', value: { i } }));
          if (i % 10 === 0) await world.runFor(10);
        }
        await world.runFor(100);
        await Promise.all(writes);
        // long past the relay delay: every site has held the other side's entries for seconds
        await world.runFor(5_000);
        for (const r of received.values()) Object.assign(r, { applied: 0, duplicates: 0 });
        world.network.heal();
        await world.runUntil(() => cluster.converged(), { timeoutMs: 30_000 });
        await world.runFor(1_000);
        // us-east gets the other side's 1,200 writes; each of the others gets us-east's 600
        expect(received.get('us-east')!.applied).toBe(1_200);
        expect(received.get('eu-west')!.applied).toBe(600);
        expect(received.get('ap-south')!.applied).toBe(600);
        // eu-west and ap-south pull us-east's entries from us-east; neither relays them to the other
        // (each has held them past the relay delay while the other was still catching up). What
        // us-east gets twice is another matter: the first link it reconnects relays the far side's
        // entries at once, before the second link is up (relay-gate.ts).
        expect(received.get('eu-west')!.duplicates + received.get('ap-south')!.duplicates).toBeLessThan(60);
      } finally {
        await cluster.stop();
      }
    });
  });
});
