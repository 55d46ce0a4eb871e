// First-writer homes under failover on the simulated cluster (cluster/homes-workload.ts): many
// partitions written for the first time at random sites while the home registry's owner crashes, is
// isolated, pauses, or is cut off with one more site, or a home unit's owner crashes; then every
// partition has one home everywhere and one owner at a time. SEED=<n> replays one seed.
import { describe, expect, it } from 'vitest';
import { homeRegistryTable } from '../config/schema.js';
import { RequestError } from '../core/errors.js';
import { runHomesScenario, type HomesFault } from '../cluster/homes-workload.js';
import { SimCluster } from '../cluster/sim-cluster.js';
import { seedsToRun } from '../platform/sim/index.js';

const cases: { fault: HomesFault; sites: number; seed: number }[] = [
  // the registry's owner and one more site cut off from three: claims there reach no quorum
  { fault: 'minority', sites: 5, seed: 1 },
  { fault: 'isolate', sites: 3, seed: 1 },
  { fault: 'unit-owner-crash', sites: 3, seed: 1 },
];

describe('first-writer homes under failover (simulation)', () => {
  for (const c of cases)
    it(`${c.fault}, ${c.sites} sites: one home per partition everywhere, one owner at a time, no acknowledged write lost`, async () => {
      for (const seed of seedsToRun([c.seed])) {
        const r = await runHomesScenario(seed, { fault: c.fault, sites: c.sites });
        const replay = `replay: SEED=${seed} npx vitest run src/topology/homes-failover -t '${c.fault}, ${c.sites}'`;
        expect(r.anomalies, replay).toEqual([]);
        expect(r.acked, replay).toBeGreaterThan(100);
        expect(r.homed, replay).toBeGreaterThan(50);
      }
    });

  it('a registry owner cut off does not take its own claim, committed but not quorum-durable, as a home', async () => {
    const seed = seedsToRun([7])[0]!;
    const cluster = await SimCluster.create({
      seed,
      sites: 3,
      network: { oneWayDelayMsMean: 5, oneWayDelayMsJitter: 3 },
      heartbeatMs: 100,
      topology: { leaseMs: 1_000, commitBudgetMs: 100 },
      tables: { sessions: { pattern: 'partitioned', home: { from: 'first-writer' }, durability: 'quorum' } },
    });
    const { world } = cluster;
    const settle = async (p: Promise<unknown>): Promise<unknown> => {
      let out: { error?: unknown } | undefined;
      p.then(() => (out = {}), (error: unknown) => (out = { error }));
      await world.runUntil(() => out !== undefined, { timeoutMs: 30_000 });
      return out!.error;
    };
    try {
      await world.runUntil(() => cluster.siteIds.every((id) => cluster.site(id)!.node.originConfirmed), { timeoutMs: 10_000 });
      await world.runFor(1_000);
      const east = cluster.site('us-east')!;
      expect(east.topology!.record().owners[homeRegistryTable], `replay: SEED=${seed}`).toBe('us-east');
      world.network.partition({ kind: 'isolate-site', site: 'us-east' });
      // the claim commits at the registry's owner, under its lease, and reaches no quorum: refused
      const first = await settle(east.node.resolveHomes([{ table: 'sessions', key: 'p:1' }], 'write'));
      expect(first, `replay: SEED=${seed}`).toMatchObject({ status: 503 } satisfies Partial<RequestError>);
      expect((await settle(east.node.store.getItem(homeRegistryTable, 'sessions/p'))) ?? 'held', `replay: SEED=${seed}`).toBe('held');
      // tried again, its own copy of the claim is no answer: only the registry owner's confirmation is
      const again = await settle(east.node.resolveHomes([{ table: 'sessions', key: 'p:2' }], 'write'));
      expect(again, `replay: SEED=${seed}`).toMatchObject({ status: 503 } satisfies Partial<RequestError>);
      expect(east.homes!.homeOf('sessions', 'p'), `replay: SEED=${seed}`).toBeUndefined();
      // healed: the claim was cut off by the registry's failover; the partition is homed once, where the
      // registry says, at every site
      world.network.heal();
      const west = cluster.site('eu-west')!;
      await world.runUntil(() => west.topology!.record().owners[homeRegistryTable] === 'eu-west' && east.topology!.epoch() === west.topology!.epoch(), { timeoutMs: 30_000 });
      let written: unknown = 'not yet';
      for (let i = 0; i < 20 && written !== undefined; i++) {
        written = await settle(west.node.resolveHomes([{ table: 'sessions', key: 'p:3' }], 'write'));
        if (written !== undefined) await world.runFor(500);
      }
      expect(written, `replay: SEED=${seed}`).toBeUndefined();
      const home = west.homes!.homeOf('sessions', 'p');
      for (const id of cluster.siteIds) {
        const s = cluster.site(id)!;
        await settle(s.homes!.resolve([{ table: 'sessions', key: 'p:4' }], 'read'));
        expect([id, s.homes!.homeOf('sessions', 'p')], `replay: SEED=${seed}`).toEqual([id, home]);
      }
    } finally {
      await cluster.stop();
    }
  });
});
