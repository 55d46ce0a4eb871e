// The randomized replication scenario run by the simulation tests and scripts/simulate: a mixed
// workload on overlapping keys at every site while the network delays, reorders, duplicates and
// drops messages, partitions (isolate, split, one-way) come and go, and sites crash and restart.
// After healing it checks convergence (equal digests) and the operation history.
import type { LogEntry } from '../store/types.js';
import { checkHistory, History, type Anomaly, type FinalItem } from '../drill/history.js';
import { SimCluster } from './sim-cluster.js';

export interface ScenarioResult {
  seed: number;
  sites: number;
  ops: number;
  acked: number;
  conflicts: number;
  convergedAtMs: number;
  digestsEqual: boolean;
  anomalies: Anomaly[];
  wipes: number;
}

export async function runReplicationScenario(seed: number, options: { opsMax?: number } = {}): Promise<ScenarioResult> {
  const pick = (n: number) => Math.floor(rng() * n);
  let state = seed >>> 0 || 1;
  function rng(): number {
    // workload choices come from their own stream so network faults do not shift them
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  const nSites = 3 + pick(3);
  const cluster = await SimCluster.create({
    seed,
    sites: nSites,
    network: {
      oneWayDelayMsMean: 2 + pick(30),
      oneWayDelayMsJitter: pick(10),
      reorderProbability: rng() < 0.5 ? 0.1 : 0,
      duplicateProbability: rng() < 0.5 ? 0.05 : 0,
      dropProbability: rng() < 0.3 ? 0.002 : 0,
    },
  });
  const { world } = cluster;
  const history = new History();
  const ids = cluster.siteIds;
  const down = new Set<string>();
  const opsTotal = options.opsMax ?? 40 + pick(80);
  const keys = ['k0', 'k1', 'k2', 'k3'];
  let unique = 0;
  let wipes = 0;
  try {
    for (let i = 0; i < opsTotal; i++) {
      const r = rng();
      if (r < 0.04) {
        const kinds = ['isolate', 'split', 'cut'] as const;
        const kind = kinds[pick(3)]!;
        if (kind === 'isolate') world.network.partition({ kind: 'isolate-site', site: ids[pick(ids.length)]! });
        else if (kind === 'split') {
          const cut = 1 + pick(ids.length - 1);
          world.network.partition({ kind: 'split', groups: [ids.slice(0, cut), ids.slice(cut)] });
        } else world.network.cutLink(ids[pick(ids.length)]!, ids[pick(ids.length)]!);
      } else if (r < 0.07) {
        world.network.heal();
      } else if (r < 0.09 && down.size < ids.length - 1) {
        const victim = ids[pick(ids.length)]!;
        if (!down.has(victim)) {
          down.add(victim);
          await cluster.crash(victim);
        }
      } else if (r < 0.095 && down.size === 0) {
        // site loss: what it acknowledged but no other site received is gone (its outcome becomes unknown)
        const victim = ids[pick(ids.length)]!;
        const others = Object.entries(cluster.vectors()).filter(([id]) => id !== victim);
        for (const op of history.ops) {
          if (op.site !== victim || op.status !== 'ok' || op.dot === undefined) continue;
          const at = op.dot.lastIndexOf(':');
          const [origin, seq] = [op.dot.slice(0, at), Number(op.dot.slice(at + 1))];
          if (!others.some(([, v]) => (v[origin] ?? 0) >= seq)) op.status = 'pending';
        }
        down.add(victim);
        await cluster.wipe(victim);
        wipes++;
      } else if (r < 0.11 && down.size > 0) {
        const back = [...down][pick(down.size)]!;
        down.delete(back);
        await cluster.start(back);
      } else {
        const up = ids.filter((s) => !down.has(s));
        const site = up[pick(up.length)]!;
        const key = keys[pick(keys.length)]!;
        const t = rng();
        const now = world.clock.monotonicMs();
        let promise;
        let op;
        if (t < 0.45) {
          op = history.invoke({ site, table: 'profiles', key, kind: 'put', invokedAtMs: now });
          promise = cluster.write(site, 'profiles', key, { op: 'put', value: { v: ++unique, by: site } });
        } else if (t < 0.6) {
          op = history.invoke({ site, table: 'profiles', key, kind: 'delete', invokedAtMs: now });
          promise = cluster.write(site, 'profiles', key, { op: 'delete' });
        } else if (t < 0.8) {
          const amount = 1 + pick(5);
          op = history.invoke({ site, table: 'counters', key, kind: 'increment', amount, invokedAtMs: now });
          promise = cluster.write(site, 'counters', key, { op: 'patch', patch: { increment: { n: amount }, add: { tags: [`t${pick(4)}`] } } });
        } else {
          op = history.invoke({ site, table: 'carts', key, kind: 'patch', invokedAtMs: now });
          promise = cluster.write(site, 'carts', key, { op: 'patch', patch: { set: { [`f${pick(3)}`]: ++unique } } });
        }
        const tracked = op;
        promise.then(
          (outcome) => {
            tracked.status = 'ok';
            tracked.dot = outcome.dot;
            tracked.completedAtMs = world.clock.monotonicMs();
          },
          () => {
            tracked.status = 'fail';
          },
        );
      }
      await world.runFor(pick(60));
    }
    world.network.heal();
    world.network.configure({ dropProbability: 0, duplicateProbability: 0 });
    for (const s of down) await cluster.start(s);
    down.clear();
    await world.runUntil(() => cluster.converged(), { timeoutMs: 120_000 });
    const convergedAtMs = world.clock.monotonicMs();
    await world.runFor(1_000);
    const digests = await cluster.digests();
    const all = Object.values(digests).map((d) => JSON.stringify(d));
    const digestsEqual = all.every((d) => d === all[0]);

    const reference = cluster.site(ids[0]!)!.node;
    const log: LogEntry[] = cluster.archive;
    const items = new Map<string, FinalItem>();
    for (const table of ['profiles', 'counters', 'carts']) {
      for (const rec of await reference.store.scanAll(table, undefined, 100_000))
        items.set(`${table}\u0000${rec.key}`, { table, key: rec.key, state: rec.state, live: rec.live, value: rec.value });
    }
    const conflictLosers = new Set<string>();
    let conflicts = 0;
    for (const id of ids) {
      for (const row of await cluster.site(id)!.node.store.conflicts('profiles', 0, 100_000)) {
        conflictLosers.add(row.record.loserDot);
        conflicts++;
      }
    }
    const anomalies = checkHistory({
      history,
      log,
      items,
      conflictLosers,
      lwwTables: new Set(['profiles']),
      counterField: (t) => (t === 'counters' ? 'n' : undefined),
    });
    return {
      seed,
      sites: nSites,
      ops: history.ops.length,
      acked: history.ops.filter((o) => o.status === 'ok').length,
      conflicts,
      convergedAtMs,
      digestsEqual,
      anomalies,
      wipes,
    };
  } finally {
    await cluster.stop();
  }
}
