// First-writer homes under failover on the simulated cluster (cluster/homes-workload.ts): many
// partitions written for the first time at random sites while the home registry's owner crashes, is
// isolated, pauses, or is cut off with one more site, or a home unit's owner crashes; then every
// partition has one home everywhere and one owner at a time. SEED=<n> replays one seed.
import { describe, expect, it } from 'vitest';
import { homeRegistryTable } from '../config/schema.js';
import { RequestError } from '../core/errors.js';
import { runHomesScenario, type HomesFault } from '../cluster/homes-workload.js';
import { SimCluster } from '../cluster/sim-cluster.js';
import { seedsToRun, type SimWorld } from '../platform/sim/index.js';

/** Drives the simulated world until `p` settles: its value, or what it threw. */
async function outcome<T>(world: SimWorld, p: Promise<T>): Promise<{ value: T } | { error: unknown }> {
  let out: { value: T } | { error: unknown } | undefined;
  p.then(
    (value) => (out = { value }),
    (error: unknown) => (out = { error }),
  );
  await world.runUntil(() => out !== undefined, { timeoutMs: 30_000 });
  return out!;
}

/** A cluster with one quorum first-writer table, its registry owned by us-east. */
const homesCluster = (seed: number, sites: number) =>
  SimCluster.create({
    seed,
    sites,
    network: { oneWayDelayMsMean: 5, oneWayDelayMsJitter: 3 },
    heartbeatMs: 100,
    topology: { leaseMs: 1_000, commitBudgetMs: 100 },
    tables: { sessions: { pattern: 'partitioned', home: { from: 'first-writer' }, durability: 'quorum' } },
  });

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
    const cluster = await homesCluster(seed, 3);
    const { world } = cluster;
    const settle = async (p: Promise<unknown>): Promise<unknown> => {
      const r = await outcome(world, p);
      return 'error' in r ? r.error : undefined;
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
  for (const homedBefore of [true, false])
  it(`a new registry owner holding a claim a failover cut off never answers with it${homedBefore ? '' : ' (its origin named in no cut)'}`, async () => {
    const seed = seedsToRun([11])[0]!;
    const cluster = await homesCluster(seed, 5);
    const { world } = cluster;
    const settle = async <T>(p: Promise<T>): Promise<T | { error: unknown }> => {
      const r = await outcome(world, p);
      return 'value' in r ? r.value : r;
    };
    const replay = `replay: SEED=${seed}`;
    try {
      await world.runUntil(() => cluster.siteIds.every((id) => cluster.site(id)!.node.originConfirmed), { timeoutMs: 10_000 });
      await world.runFor(1_000);
      // a partition homed before: every site has seen a write of the registry owner's origin, and the
      // failover's cut names it; without it, no cut names the origin and every write of it is void
      if (homedBefore) {
        expect(await settle(cluster.site('us-east')!.node.resolveHomes([{ table: 'sessions', key: 'q:1' }], 'write')), replay).toBeUndefined();
        await world.runFor(500);
      }
      // the registry's owner (us-east) and the next but one in its failover order (ap-south) are cut off
      const minority = ['us-east', 'ap-south'];
      for (const a of minority)
        for (const b of cluster.siteIds)
          if (!minority.includes(b)) {
            world.network.cutLink(a, b);
            world.network.cutLink(b, a);
          }
      const south = cluster.site('ap-south')!;
      // ap-south's claim commits at us-east and reaches ap-south only: refused, but ap-south holds it
      expect(await settle(south.node.resolveHomes([{ table: 'sessions', key: 'p:1' }], 'write')), replay).toMatchObject({ error: { status: 503 } });
      const held = await settle(south.node.store.getItem(homeRegistryTable, 'sessions/p'));
      expect(held, replay).toMatchObject({ live: true, value: { site: 'ap-south' } });
      // the majority fails the registry over to eu-west (its cut leaves the claim out), which fails before it undoes the claim
      const west = cluster.site('eu-west')!;
      await world.runUntil(() => west.topology!.record().owners[homeRegistryTable] === 'eu-west', { timeoutMs: 30_000 });
      const movedAt = west.topology!.epoch();
      await cluster.crash('eu-west');
      world.network.heal();
      // the registry goes to a site whose copy still holds the claim cut off (us-east: its own write, applied at commit)
      let owner = '';
      await world.runUntil(() => {
        owner = south.topology!.record().owners[homeRegistryTable] ?? '';
        const view = cluster.site(owner)?.topology;
        return south.topology!.epoch() > movedAt && owner !== 'eu-west' && view?.epoch() === south.topology!.epoch() && view.ownerOf(homeRegistryTable) === owner;
      }, { timeoutMs: 30_000 });
      const o = cluster.site(owner)!;
      // it still holds the claim (its own write, applied at commit), void by eu-west's cut and not undone yet
      expect(await settle(o.node.store.getItem(homeRegistryTable, 'sessions/p')), replay).toMatchObject({ live: true, value: { site: 'ap-south' } });
      // asked until the new owner's lease and cut let it answer at all: never with the claim cut off
      let answer = await settle(o.homes!.claimHere({ table: 'sessions', partition: 'p' }));
      for (let i = 0; i < 50 && 'refused' in answer && !String(answer.refused).includes('cut off'); i++) {
        await world.runFor(100);
        answer = await settle(o.homes!.claimHere({ table: 'sessions', partition: 'p' }));
      }
      expect(answer, replay).not.toHaveProperty('site');
      // once the claim is undone, the partition is claimed afresh
      let claimed = await settle(o.homes!.claimHere({ table: 'sessions', partition: 'p', site: 'sa-east' }));
      for (let i = 0; i < 50 && !('site' in claimed); i++) {
        await world.runFor(200);
        claimed = await settle(o.homes!.claimHere({ table: 'sessions', partition: 'p', site: 'sa-east' }));
      }
      expect(claimed, replay).toEqual({ site: 'sa-east' });
    } finally {
      await cluster.stop();
    }
  });
});
