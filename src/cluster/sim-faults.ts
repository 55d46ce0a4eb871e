// What the failover workloads share (failover-, homes- and http-workload.ts) on the simulated
// cluster: the faults of a site, and the two-owners check over the admissions.
//
// The faults; each ends with the site back (restarted, healed, resumed):
//   - `crash`: the process dies and restarts after holdMs + up to a lease;
//   - `isolate`: cut off both ways for as long;
//   - `one-way`: it hears everyone, nobody hears it (its own connections are cut), for as long;
//   - `pause`: the process stops for 2 to 4 leases (its timers fire, its fsyncs and renewals land
//     only after) with its peer links quiet, then two leases more once it runs again.
import type { Random } from '../platform/env.js';
import type { SimCluster } from './sim-cluster.js';

export type SiteFault = 'crash' | 'isolate' | 'one-way' | 'pause';

export async function injectSiteFault(cluster: SimCluster, fault: SiteFault, victim: string, opts: { leaseMs: number; holdMs: number; rnd: Random }): Promise<void> {
  const { world } = cluster;
  const { leaseMs, holdMs, rnd } = opts;
  const others = cluster.siteIds.filter((s) => s !== victim);
  switch (fault) {
    case 'crash':
      await cluster.crash(victim);
      await world.runFor(holdMs + rnd.int(leaseMs));
      await cluster.start(victim);
      return;
    case 'isolate':
      world.network.partition({ kind: 'isolate-site', site: victim });
      await world.runFor(holdMs + rnd.int(leaseMs));
      world.network.heal();
      return;
    case 'one-way':
      for (const o of others) world.network.cutLink(victim, o);
      await world.runFor(holdMs + rnd.int(leaseMs));
      world.network.heal();
      return;
    case 'pause': {
      const ms = 2 * leaseMs + rnd.int(2 * leaseMs);
      world.pause(victim, ms);
      for (const o of others) {
        world.network.cutLink(victim, o);
        world.network.cutLink(o, victim);
      }
      await world.runFor(ms);
      world.network.heal();
      await world.runFor(2 * leaseMs);
      return;
    }
  }
}

/** One admission interval per (site, lease epoch) and group; the pairs of different sites that overlap. */
export function overlappingAdmissions(
  admissions: readonly { site: string; epoch: number; atMs: number; items: { table: string; key: string }[] }[],
  groupsOf: (item: { table: string; key: string }) => string[],
): string[] {
  const intervals = new Map<string, Map<string, { site: string; epoch: number; from: number; to: number }>>();
  for (const a of admissions)
    for (const it of a.items)
      for (const group of groupsOf(it)) {
        const per = intervals.get(group) ?? new Map<string, { site: string; epoch: number; from: number; to: number }>();
        const k = `${a.site}@${a.epoch}`;
        const cur = per.get(k);
        if (cur === undefined) per.set(k, { site: a.site, epoch: a.epoch, from: a.atMs, to: a.atMs });
        else cur.to = Math.max(cur.to, a.atMs);
        intervals.set(group, per);
      }
  const out: string[] = [];
  for (const [group, per] of intervals) {
    const list = [...per.values()];
    for (let i = 0; i < list.length; i++)
      for (let j = i + 1; j < list.length; j++) {
        const a = list[i]!;
        const b = list[j]!;
        if (a.site !== b.site && a.from <= b.to && b.from <= a.to)
          out.push(`${group}: ${a.site} (epoch ${a.epoch}) admitted ${a.from}–${a.to} ms while ${b.site} (epoch ${b.epoch}) admitted ${b.from}–${b.to} ms`);
      }
  }
  return out;
}
