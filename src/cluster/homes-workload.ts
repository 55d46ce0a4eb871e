// First-writer homes under failover, on the simulated cluster (topology and the home registry on):
// clients write a quorum `partitioned` table whose partitions are homed by their first writer, many
// partitions for the first time, at random sites, which resolve the partition's home (claiming it at
// the registry's owner) and send the write to the owner of the home's unit, as the HTTP layer does.
// On the seed's plan the registry's owner crashes, is isolated, pauses longer than its lease, or is
// cut off with one more site (`minority`: claims committed there reach that site and no quorum, and
// a failover of the registry cuts them off), or the owner of a home unit crashes. Then everything
// heals, each home unit is switched back to its site (failback: a site that took a cut-off claim as
// a home would now admit that partition's writes), and the history is checked:
//   - `two-owners`: never two sites admitting writes of one partition (or one unit, or the
//     registry) in overlapping intervals (per site and lease epoch: its first to its last admission);
//   - `homed-elsewhere`: every acknowledged write was admitted under the unit of the site the
//     registry names as its partition's home at the end;
//   - `home-differs`: every site, asked at the end, knows every registered partition's home as the
//     registry names it, and holds no home for a partition the registry does not name;
//   - `acked-quorum-write-lost`: every acknowledged quorum write is at every site at the end;
//   - `not-converged` / `digests-differ` / `epochs-differ` / `no-owner`: as in failover-workload.ts.
import { assert } from '../core/assert.js';
import { homeRegistryTable } from '../config/schema.js';
import { RequestError } from '../core/errors.js';
import { homeOfValue, parseRegistryKey } from '../topology/home-registry.js';
import { units } from '../topology/record.js';
import { SimCluster, type SimSite } from './sim-cluster.js';
import { injectSiteFault, overlappingAdmissions } from './sim-faults.js';

export type HomesFault = 'crash' | 'isolate' | 'pause' | 'minority' | 'unit-owner-crash';
export const homesFaults: readonly HomesFault[] = ['crash', 'isolate', 'pause', 'minority', 'unit-owner-crash'];

export interface HomesAnomaly {
  kind: 'two-owners' | 'homed-elsewhere' | 'home-differs' | 'acked-quorum-write-lost' | 'not-converged' | 'digests-differ' | 'epochs-differ' | 'no-owner';
  detail: string;
}

export interface HomesResult {
  seed: number;
  fault: HomesFault;
  anomalies: HomesAnomaly[];
  acked: number;
  failed: number;
  unknown: number;
  /** partitions the registry homes at the end */
  homed: number;
  /** of them, homed at another site than the first one tried to write to them */
  homedAway: number;
  /** claims a failover of the registry made void (in the registry's conflict feed) */
  voidedClaims: number;
}

export interface HomesOptions {
  fault?: HomesFault;
  sites?: number;
  leaseMs?: number;
}

const table = 'sessions';

interface AckedWrite {
  key: string;
  value: string;
  site: string;
  dot: string;
  /** the unit the write was admitted under */
  unit: string;
}

export async function runHomesScenario(seed: number, options: HomesOptions = {}): Promise<HomesResult> {
  const leaseMs = options.leaseMs ?? 1_000;
  const fault = options.fault ?? homesFaults[seed % homesFaults.length]!;
  const cluster = await SimCluster.create({
    seed,
    sites: options.sites ?? 3,
    network: { oneWayDelayMsMean: 5, oneWayDelayMsJitter: 3 },
    // an applied claim is often not durable yet when its owner fails
    disk: { fsyncDelayMsMax: 20 },
    heartbeatMs: 100,
    topology: { leaseMs, commitBudgetMs: Math.floor(leaseMs / 10), driftRateMax: 0.01 },
    tables: { [table]: { pattern: 'partitioned', home: { from: 'first-writer', separator: ':' }, durability: 'quorum' } },
  });
  const { world } = cluster;
  const rnd = world.random.fork('homes-workload');
  const ids = cluster.siteIds;
  const acked: AckedWrite[] = [];
  const partitions: string[] = [];
  const firstTriedAt = new Map<string, string>();
  let failed = 0;
  let unknown = 0;
  let n = 0;
  let stopWriting = false;
  const inFlight = new Set<Promise<void>>();

  const writeOnce = async () => {
    const entry = cluster.site(ids[rnd.int(ids.length)]!);
    if (entry === undefined) return;
    // half the writes go to a partition never written before
    let partition: string;
    if (partitions.length === 0 || rnd.chance(0.5)) {
      partition = `p${partitions.length}`;
      partitions.push(partition);
      firstTriedAt.set(partition, entry.id);
    } else partition = partitions[rnd.int(partitions.length)]!;
    const id = `w${++n}`;
    const key = `${partition}:${id}`;
    try {
      // the entry site resolves the home (claiming the partition if it has none) and sends the write
      // to the owner of the home's unit, which resolves it again and admits it only if it owns it
      await entry.node.resolveHomes([{ table, key }], 'write');
      const owner = entry.node.writeOwner(entry.node.table(table), key);
      let site: SimSite = entry;
      if (owner !== undefined) {
        const o = cluster.site(owner);
        if (o === undefined) throw RequestError.unavailable('owner-unavailable', `${owner} is down`);
        site = o;
        await site.node.resolveHomes([{ table, key }], 'write');
        if (site.node.writeOwner(site.node.table(table), key) !== undefined) throw RequestError.unavailable('owner-changed', 'moved');
      }
      const outcome = await site.node.write(site.node.table(table), key, { op: 'put', value: { v: id } }, { awaitsAck: true });
      if (!(await site.replicator.awaitDurability(outcome.dot, 'quorum')) || !site.node.acknowledgeable(outcome)) {
        unknown++;
        return;
      }
      acked.push({ key, value: id, site: site.id, dot: outcome.dot, unit: outcome.owned?.units[0] ?? '(none)' });
    } catch (e) {
      if (e instanceof RequestError && e.status >= 400 && e.status !== 504) failed++;
      else unknown++;
    }
  };

  const load = () => {
    if (stopWriting) return;
    const p = writeOnce();
    inFlight.add(p);
    void p.finally(() => inFlight.delete(p));
    world.timers.after(20, load);
  };

  const registryOwner = () => cluster.site(ids[0]!)?.topology?.record().owners[homeRegistryTable] ?? 'us-east';

  try {
    await world.runUntil(() => ids.every((id) => cluster.site(id)!.node.originConfirmed), { timeoutMs: 10_000 });
    await world.runFor(leaseMs);
    load();
    await world.runFor(1_000 + rnd.int(1_000));
    const victim = registryOwner();
    const others = ids.filter((s) => s !== victim);
    switch (fault) {
      case 'crash':
      case 'isolate':
      case 'pause':
        await injectSiteFault(cluster, fault, victim, { leaseMs, holdMs: 4 * leaseMs, rnd });
        break;
      case 'minority': {
        // the registry's owner and one more site (not the next in its failover order) are cut off
        // from the rest: claims committed there reach that site, never a quorum
        const minority = [victim, others[1 + rnd.int(others.length - 1)]!];
        for (const a of minority)
          for (const b of ids)
            if (!minority.includes(b)) {
              world.network.cutLink(a, b);
              world.network.cutLink(b, a);
            }
        await world.runFor(4 * leaseMs + rnd.int(leaseMs));
        world.network.heal();
        break;
      }
      case 'unit-owner-crash': {
        // the owner of a home unit other than the registry's crashes (its partitions fail over)
        const unitOwner = others[rnd.int(others.length)]!;
        await cluster.crash(unitOwner);
        await world.runFor(4 * leaseMs + rnd.int(leaseMs));
        await cluster.start(unitOwner);
        break;
      }
    }
    // failback: once healed, each site's home unit goes back to it (a planned switchover)
    await world.runFor(2 * leaseMs);
    const driver = cluster.site(ids[rnd.int(ids.length)]!)?.topology;
    if (driver !== undefined) {
      const plan = units(driver.record())
        .filter((u) => u.unit.startsWith(`${table}/`) && u.owner !== null && u.owner !== u.unit.slice(table.length + 1))
        .map((u) => ({ unit: u.unit, from: u.owner, to: u.unit.slice(table.length + 1) }));
      if (plan.length > 0) await settle(cluster, driver.switchover(plan, { by: 'sim', why: 'failback' }, 5_000)).catch(() => undefined);
    }
    await world.runFor(2_000);
    stopWriting = true;
    await world.runUntil(() => inFlight.size === 0, { timeoutMs: 15_000 }).catch(() => undefined);
    await world
      .runUntil(
        () =>
          ids.every((id) => cluster.site(id) !== undefined) &&
          cluster.converged() &&
          new Set(ids.map((id) => cluster.site(id)!.topology!.epoch())).size === 1 &&
          units(cluster.site(ids[0]!)!.topology!.record()).every((u) => u.owner !== null),
        { timeoutMs: 60_000 },
      )
      .catch(() => undefined);
    // compensations of void claims are applied everywhere before the check
    await world.runFor(1_000);
    const { anomalies, registry } = await check(cluster, acked, partitions);
    let homedAway = 0;
    for (const [p, site] of registry) if (firstTriedAt.get(p) !== site) homedAway++;
    let voidedClaims = 0;
    const first = cluster.site(ids[0]!);
    for (let after = 0; first !== undefined; ) {
      const page = await settle(cluster, first.node.store.conflicts(homeRegistryTable, after, 1000));
      if (page.length === 0) break;
      after = page[page.length - 1]!.id;
      voidedClaims += page.filter((c) => c.record.reason === 'voided').length;
    }
    return { seed, fault, anomalies, acked: acked.length, failed, unknown, homed: registry.size, homedAway, voidedClaims };
  } finally {
    await cluster.stop();
  }
}

/** Drives the simulated world until `p` settles. */
async function settle<T>(cluster: SimCluster, p: Promise<T>, timeoutMs = 30_000): Promise<T> {
  let done = false;
  let value: T | undefined;
  let error: unknown;
  p.then(
    (v) => (value = v),
    (e: unknown) => (error = e),
  ).finally(() => (done = true));
  await cluster.world.runUntil(() => done, { timeoutMs });
  if (error !== undefined) throw error;
  return value!;
}

async function check(cluster: SimCluster, acked: AckedWrite[], tried: string[]): Promise<{ anomalies: HomesAnomaly[]; registry: Map<string, string> }> {
  const anomalies: HomesAnomaly[] = [];
  // reads wait for in-flight syncs of the site's own writes (compensations go on): the world is driven meanwhile
  const drive = <T>(p: Promise<T>) => settle(cluster, p);
  const live = cluster.siteIds.map((id) => cluster.site(id)).filter((s): s is SimSite => s !== undefined);
  assert(live.length > 0, 'some site is up');
  if (!cluster.converged()) anomalies.push({ kind: 'not-converged', detail: JSON.stringify(cluster.vectors()) });
  else {
    const digests = await drive(cluster.digests());
    const first = JSON.stringify(digests[live[0]!.id]);
    for (const s of live) if (JSON.stringify(digests[s.id]) !== first) anomalies.push({ kind: 'digests-differ', detail: `${s.id}: ${JSON.stringify(digests[s.id])} vs ${live[0]!.id}: ${first}` });
  }
  const epochs = new Set(live.map((s) => s.topology!.epoch()));
  if (epochs.size > 1) anomalies.push({ kind: 'epochs-differ', detail: [...epochs].join(', ') });
  for (const u of units(live[0]!.topology!.record())) if (u.owner === null) anomalies.push({ kind: 'no-owner', detail: `${u.unit} has no owner after the heal` });

  // the registry as the first site holds it (the digests say whether all hold the same)
  const registry = new Map<string, string>();
  for (let after: string | undefined; ; ) {
    const page = await drive(live[0]!.node.store.scanItems({ table: homeRegistryTable, limit: 1000, ...(after !== undefined ? { after } : {}) }));
    if (page.length === 0) break;
    after = page[page.length - 1]!.key;
    for (const rec of page) {
      const parsed = parseRegistryKey(rec.key);
      const site = rec.live ? homeOfValue(rec.value) : undefined;
      if (parsed?.table === table && site !== undefined) registry.set(parsed.partition, site);
    }
  }
  const partitionOfKey = (key: string) => key.slice(0, key.indexOf(':'));

  // one owner at a time: per partition, per unit of its final home, and of the registry
  const groupsOf = (it: { table: string; key: string }): string[] => {
    if (it.table === homeRegistryTable) return [homeRegistryTable];
    if (it.table !== table) return [];
    const p = partitionOfKey(it.key);
    const home = registry.get(p);
    return [`partition ${p}`, ...(home !== undefined ? [`${table}/${home}`] : [])];
  };
  for (const detail of overlappingAdmissions(cluster.admissions, groupsOf)) anomalies.push({ kind: 'two-owners', detail });

  for (const w of acked) {
    const p = partitionOfKey(w.key);
    const home = registry.get(p);
    if (home === undefined || w.unit !== `${table}/${home}`)
      anomalies.push({ kind: 'homed-elsewhere', detail: `${table}/${w.key} (${w.dot}, acked by ${w.site}) was admitted under ${w.unit}; the registry homes ${p} at ${home ?? '(nowhere)'}` });
    for (const s of live) {
      const rec = await drive(s.node.get(s.node.table(table), w.key));
      const v = (rec?.value as { v?: string } | undefined)?.v;
      if (v !== w.value) anomalies.push({ kind: 'acked-quorum-write-lost', detail: `${table}/${w.key} (${w.dot}, acked by ${w.site}) is ${v === undefined ? 'missing' : `"${v}"`} at ${s.id}` });
    }
  }

  // every site knows each registered partition's home as the registry names it (asked as a read
  // asks), and none holds a home for a partition the registry does not name
  const known = new Set([...registry.keys(), ...tried]);
  for (const s of live) {
    const asked = [...registry.keys()].map((p) => s.homes!.resolve([{ table, key: `${p}:check` }], 'read').catch(() => undefined));
    await settle(cluster, Promise.all(asked), 10_000).catch(() => undefined);
    for (const p of [...known].sort()) {
      const home = registry.get(p);
      const here = s.homes!.homeOf(table, p);
      if (here !== home) anomalies.push({ kind: 'home-differs', detail: `${s.id} homes ${table} partition ${p} at ${here ?? '(unknown)'}; the registry at ${home ?? '(nowhere)'}` });
    }
  }
  return { anomalies, registry };
}
