// What a drill measures from its history (ARCHITECTURE.md, "Drills"): RTO per class of traffic
// (pattern × read/write × routed/pinned, since healthy `local` traffic hides an owner crash), by
// intended start time; good = succeeded within latencyMaxMs (unknown is bad); buckets under 20
// operations merged with their neighbours; RTO = from the start of an episode (a fault, or a heal)
// until the success rate stays at least successRateMin for windowMs (a class with fewer than 20
// operations in an episode is listed, not measured). Plus availability, and per
// second: success rates, p50/p99 latency, throughput and each site's share of routed traffic.
import type { TableConfig } from '../config/schema.js';
import { isWrite, type OpRecord } from './op-history.js';
import type { Slo } from './scenarios.js';

export const bucketOpsMin = 20;
const gridMs = 100;

export interface Episode {
  phase: 'fault' | 'heal';
  label: string;
  startMs: number;
  endMs: number;
  /** sites whose process or links this episode's fault touches */
  sites: string[];
}

export interface ClassInfo {
  name: string;
  inSlo: boolean;
  excludedWhy?: string;
}

export interface ClassifyContext {
  tables: Record<string, TableConfig>;
  regions: Map<string, string>;
  /** sites touched by some fault of the drill */
  faultedSites: Set<string>;
  /** whether writes whose owner is a faulted site count (they do once failover exists) */
  ownerFaultExcluded: boolean;
  rtoPatterns: Slo['rtoPatterns'];
  /** first-writer homes as the sites' `_homes` registry ended: `<table>/<partition>` → site */
  homes?: Map<string, string>;
}

/**
 * The owner of a write to an owned table (global: its write site; partitioned: the key's home, for
 * `first-writer` from the registry's final state when given).
 */
export function ownerOf(table: TableConfig | undefined, key: string, regions: Map<string, string>, homes?: Map<string, string>, tableName?: string): string | undefined {
  if (table?.pattern === 'global') return table.writeSite;
  if (table?.pattern === 'partitioned' && table.home?.from === 'first-writer') {
    const i = key.indexOf(table.home.separator);
    return i <= 0 || tableName === undefined ? undefined : homes?.get(`${tableName}/${key.slice(0, i)}`);
  }
  if (table?.pattern === 'partitioned' && table.home?.from === 'key-prefix') {
    const i = key.indexOf(table.home.separator);
    if (i <= 0) return undefined;
    const prefix = key.slice(0, i);
    return regions.get(prefix) ?? prefix;
  }
  return undefined;
}

export function classify(r: OpRecord, ctx: ClassifyContext): ClassInfo {
  const table = ctx.tables[r.table];
  const pattern = table?.pattern ?? 'local';
  const kind = isWrite(r.op) ? 'write' : 'read';
  const pinnedFaulted = r.via !== 'router' && ctx.faultedSites.has(r.via);
  const route = r.via === 'router' ? 'routed' : pinnedFaulted ? 'pinned-faulted' : 'pinned';
  const needsOwner = pattern !== 'local' && (kind === 'write' || r.consistency === 'strong');
  const owner = needsOwner ? ownerOf(table, r.key, ctx.regions, ctx.homes, r.table) : undefined;
  const ownerFaulted = owner !== undefined && ctx.faultedSites.has(owner);
  const name = `${pattern}.${kind}.${route}${ownerFaulted ? '.owner-faulted' : ''}`;
  if (pinnedFaulted) return { name, inSlo: false, excludedWhy: 'pinned to a site the fault takes down or cuts off' };
  if (ownerFaulted && ctx.ownerFaultExcluded) return { name, inSlo: false, excludedWhy: 'needs its owner, which the fault takes down (no failover yet: see owner-crash)' };
  if (ctx.rtoPatterns !== undefined && !ctx.rtoPatterns.includes(pattern)) return { name, inSlo: false, excludedWhy: `the scenario's RTO covers ${ctx.rtoPatterns.join(', ')} tables only` };
  return { name, inSlo: true };
}

/**
 * Served within latencyMaxMs. A 4xx answer (a delete of a missing key, a failed precondition) is
 * the service working: failed in the history (nothing was written), good for RTO.
 */
export const isGood = (r: OpRecord, latencyMaxMs: number): boolean =>
  (r.outcome === 'ok' || (r.status !== undefined && r.status >= 400 && r.status < 500)) && r.endMs - r.intendedMs <= latencyMaxMs;

export interface Bucket {
  startMs: number;
  endMs: number;
  ops: number;
  good: number;
}

/** Fixed 100 ms buckets of intended start time, merged forward until each holds at least 20 operations. */
export function buckets(ops: OpRecord[], startMs: number, endMs: number, latencyMaxMs: number): Bucket[] {
  const n = Math.max(1, Math.ceil((endMs - startMs) / gridMs));
  const grid: Bucket[] = Array.from({ length: n }, (_, i) => ({ startMs: startMs + i * gridMs, endMs: Math.min(endMs, startMs + (i + 1) * gridMs), ops: 0, good: 0 }));
  for (const r of ops) {
    if (r.intendedMs < startMs || r.intendedMs >= endMs) continue;
    const b = grid[Math.min(n - 1, Math.floor((r.intendedMs - startMs) / gridMs))]!;
    b.ops++;
    if (isGood(r, latencyMaxMs)) b.good++;
  }
  const merged: Bucket[] = [];
  let open: Bucket | undefined;
  for (const b of grid) {
    open = open === undefined ? { ...b } : { startMs: open.startMs, endMs: b.endMs, ops: open.ops + b.ops, good: open.good + b.good };
    if (open.ops >= bucketOpsMin) {
      merged.push(open);
      open = undefined;
    }
  }
  if (open !== undefined) {
    const last = merged.pop();
    merged.push(last === undefined ? open : { startMs: last.startMs, endMs: open.endMs, ops: last.ops + open.ops, good: last.good + open.good });
  }
  return merged;
}

export interface ClassRto {
  className: string;
  inSlo: boolean;
  excludedWhy?: string;
  episode: string;
  phase: 'fault' | 'heal';
  ops: number;
  failed: number;
  rtoMs: number;
  recovered: boolean;
}

/**
 * From the episode's start until the success rate stays ≥ successRateMin for windowMs (or until the
 * episode ends, when that is sooner). A candidate recovery moment is the episode's start or the
 * moment after a bad operation; from there the window's operations, in buckets of at least 20, must
 * each meet the rate. Not recovered: the whole episode.
 */
export function rtoOf(ops: OpRecord[], episode: Episode, slo: Pick<Slo, 'successRateMin' | 'windowMs' | 'latencyMaxMs'>): { rtoMs: number; recovered: boolean } {
  const sorted = ops.filter((r) => r.intendedMs >= episode.startMs && r.intendedMs < episode.endMs).sort((a, b) => a.intendedMs - b.intendedMs);
  const candidates = [episode.startMs, ...sorted.filter((r) => !isGood(r, slo.latencyMaxMs)).map((r) => r.intendedMs + 1e-6)];
  for (const from of candidates) {
    const until = Math.min(from + slo.windowMs, episode.endMs);
    const window = sorted.filter((r) => r.intendedMs >= from && r.intendedMs < until);
    // recovery needs evidence: at least one operation served after it
    if (!window.some((r) => isGood(r, slo.latencyMaxMs))) continue;
    if (buckets(window, from, until, slo.latencyMaxMs).every((b) => b.ops === 0 || b.good / b.ops >= slo.successRateMin))
      return { rtoMs: Math.round(from - episode.startMs), recovered: true };
  }
  return { rtoMs: Math.round(episode.endMs - episode.startMs), recovered: false };
}

export function rtoByClass(history: OpRecord[], episodes: Episode[], ctx: ClassifyContext, slo: Slo): ClassRto[] {
  const byClass = new Map<string, { info: ClassInfo; ops: OpRecord[] }>();
  for (const r of history) {
    if (r.client !== 'open') continue;
    const info = classify(r, ctx);
    const entry = byClass.get(info.name) ?? { info, ops: [] };
    entry.ops.push(r);
    byClass.set(info.name, entry);
  }
  const out: ClassRto[] = [];
  for (const { info, ops } of [...byClass.values()].sort((a, b) => (a.info.name < b.info.name ? -1 : 1)))
    for (const e of episodes) {
      const inEpisode = ops.filter((r) => r.intendedMs >= e.startMs && r.intendedMs < e.endMs);
      if (inEpisode.length === 0) continue;
      const { rtoMs, recovered } = rtoOf(inEpisode, e, slo);
      // one bucket's worth is no evidence of an outage or a recovery (a single request cut off by a
      // kill would set the class's RTO to the whole episode): shown, not counted in the RTO
      const tooFew = info.inSlo && inEpisode.length < bucketOpsMin;
      out.push({
        className: info.name,
        inSlo: info.inSlo && !tooFew,
        ...(tooFew ? { excludedWhy: `${inEpisode.length} operations in the episode, under the ${bucketOpsMin} an RTO is measured from` } : info.excludedWhy ? { excludedWhy: info.excludedWhy } : {}),
        episode: e.label,
        phase: e.phase,
        ops: inEpisode.length,
        failed: inEpisode.filter((r) => !isGood(r, slo.latencyMaxMs)).length,
        rtoMs,
        recovered,
      });
    }
  return out;
}

export interface SecondPoint {
  t: number;
  ops: number;
  routedSuccess: number | null;
  pinnedSuccess: number | null;
  p50Ms: number | null;
  p99Ms: number | null;
  errors: number;
  share: Record<string, number>;
}

export function percentile(sorted: number[], p: number): number | null {
  if (sorted.length === 0) return null;
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!;
}

/** Per second of intended time: success rates, latency percentiles, errors, routed share per site. */
export function perSecond(history: OpRecord[], loadMs: number, sites: string[]): SecondPoint[] {
  const n = Math.ceil(loadMs / 1000);
  const acc = Array.from({ length: n }, () => ({ lat: [] as number[], routed: [0, 0], pinned: [0, 0], errors: 0, share: new Map<string, number>(), routedAnswered: 0 }));
  for (const r of history) {
    if (r.client !== 'open' || r.intendedMs < 0) continue;
    const s = acc[Math.min(n - 1, Math.max(0, Math.floor(r.intendedMs / 1000)))]!;
    const ok = r.outcome === 'ok';
    if (ok) s.lat.push(r.endMs - r.intendedMs);
    else s.errors++;
    const side = r.via === 'router' ? s.routed : s.pinned;
    side[0]!++;
    if (ok) side[1]!++;
    if (r.via === 'router' && r.site !== undefined) {
      s.routedAnswered++;
      s.share.set(r.site, (s.share.get(r.site) ?? 0) + 1);
    }
  }
  return acc.map((s, i) => {
    s.lat.sort((a, b) => a - b);
    const share: Record<string, number> = {};
    for (const site of sites) share[site] = s.routedAnswered === 0 ? 0 : (s.share.get(site) ?? 0) / s.routedAnswered;
    return {
      t: i,
      ops: s.routed[0]! + s.pinned[0]!,
      routedSuccess: s.routed[0] === 0 ? null : s.routed[1]! / s.routed[0]!,
      pinnedSuccess: s.pinned[0] === 0 ? null : s.pinned[1]! / s.pinned[0]!,
      p50Ms: percentile(s.lat, 0.5),
      p99Ms: percentile(s.lat, 0.99),
      errors: s.errors,
      share,
    };
  });
}
