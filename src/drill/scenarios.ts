// The drill scenarios (CONTRACT.md, "Drills"): each one's default SLO, what it needs from the
// cluster, and its fault plan: a pure function of the seed, the sites and the timeline, so that the
// same seed, version and config give the same plan (replay).
import type { TableConfig } from '../config/schema.js';
import { SeededRandom } from '../platform/sim/random.js';

export const scenarioNames = [
  'site-crash',
  'owner-crash',
  'site-loss',
  'site-isolation',
  'link-partition',
  'wan-latency',
  'gray-failure',
  'clock-skew',
  'switchover',
  'rolling-restart',
  'bad-delete',
  'random',
] as const;
export type ScenarioName = (typeof scenarioNames)[number];

export interface Slo {
  /** the longest RTO of any class of traffic the SLO covers */
  rtoMs: number;
  lostQuorumWrites: number;
  /** acknowledged writes of `local` durability that may be lost (a disk destroyed: RPO) */
  lostLocalWritesMax: number | 'any';
  successRateMin: number;
  windowMs: number;
  /** an operation slower than this (from its intended start) counts as failed for RTO */
  latencyMaxMs: number;
  /**
   * The table patterns whose classes of traffic the RTO covers (default: all). Without failover, a
   * site cut off from an owner cannot take writes of owned tables, and the router cannot know it.
   */
  rtoPatterns?: ('local' | 'global' | 'partitioned')[];
  /** the sites must converge (equal vectors and digests) after the heal */
  converged: boolean;
  /** the conflicts made by writes on both sides must be listed in the conflict feeds */
  conflictsListed?: boolean;
  /**
   * bad-delete: every item the bulk delete took (and nothing wrote since) is back with its value at
   * every site, and no key outside the rewound prefix, nor one written after the delete, changed
   */
  rewind?: { restoredAllSites: true; untouchedChangedMax: number };
}

/** What a fault does; `at` is ms since the load started. */
export type FaultAction =
  | { kind: 'kill'; site: string }
  | { kind: 'power-loss'; site: string }
  | { kind: 'destroy-disk'; site: string }
  | { kind: 'start'; site: string }
  | { kind: 'restart'; site: string; clockSkewMs?: number }
  | { kind: 'pause'; site: string }
  | { kind: 'resume'; site: string }
  | { kind: 'isolate'; site: string }
  | { kind: 'partition'; sides: [string[], string[]]; oneWay: boolean }
  | { kind: 'latency'; rttScale: number; jitterMs: number }
  | { kind: 'bandwidth'; site: string; bytesPerS: number }
  | { kind: 'resets'; site: string; everyMs: number }
  | { kind: 'stall'; site: string }
  | { kind: 'switchover'; table: string; to: string }
  /** bad-delete: seeded items of `table` under `prefix` deleted at `site` in bulk (it replicates everywhere) */
  | { kind: 'bulk-delete'; site: string; table: string; prefix: string }
  /** bad-delete: `tandem rewind --table --prefix --to-time <a second before the delete>`, until done cluster-wide */
  | { kind: 'rewind'; table: string; prefix: string }
  | { kind: 'heal-links' };

export interface PlannedFault {
  atMs: number;
  /** `fault` starts an episode, `heal` ends it (RTO is measured per episode) */
  phase: 'fault' | 'heal';
  action: FaultAction;
}

export interface Timeline {
  loadMs: number;
  faultAtMs: number;
  healAtMs: number;
}

export interface ScenarioContext {
  seed: number;
  sites: string[];
  /** owners of `global` tables (table → site), from the config */
  owners: Record<string, string>;
  /** --site, or undefined: the victim is chosen from the seed */
  site: string | undefined;
  timeline: Timeline;
  /** the cluster's tables (bad-delete picks the one it deletes from) */
  tables?: Record<string, TableConfig>;
}

export interface Scenario {
  name: ScenarioName;
  summary: string;
  slo: Slo;
  /** what must exist before it can run (checked before any load) */
  needs: ('failover' | 'rewind')[];
  /** at least this many sites */
  sitesMin: number;
  /** sites started with the synced-WAL knob (power-loss emulation needs it) */
  powerLossSites?: (victim: string) => string[];
  plan(ctx: ScenarioContext, victim: string): PlannedFault[];
  /** the victim when --site is not given */
  pickVictim(ctx: ScenarioContext, random: SeededRandom): string;
}

const baseSlo: Slo = {
  rtoMs: 1000,
  lostQuorumWrites: 0,
  lostLocalWritesMax: 0,
  successRateMin: 0.99,
  windowMs: 3000,
  latencyMaxMs: 1500,
  converged: true,
};

/** Sites that own no global table first: a crash of an owner is `owner-crash`. */
function nonOwnerVictim(ctx: ScenarioContext, random: SeededRandom): string {
  const owners = new Set(Object.values(ctx.owners));
  const candidates = ctx.sites.filter((s) => !owners.has(s));
  const pool = candidates.length > 0 ? candidates : ctx.sites;
  return pool[random.int(pool.length)]!;
}

const anySite = (ctx: ScenarioContext, random: SeededRandom) => ctx.sites[random.int(ctx.sites.length)]!;

const faultAndHeal = (t: Timeline, fault: FaultAction, heal: FaultAction): PlannedFault[] => [
  { atMs: t.faultAtMs, phase: 'fault', action: fault },
  { atMs: t.healAtMs, phase: 'heal', action: heal },
];

export const scenarios: Record<ScenarioName, Scenario> = {
  'site-crash': {
    name: 'site-crash',
    summary: 'SIGKILL one site (disk kept), restart it later',
    slo: baseSlo,
    needs: [],
    sitesMin: 2,
    pickVictim: nonOwnerVictim,
    plan: (ctx, v) => faultAndHeal(ctx.timeline, { kind: 'kill', site: v }, { kind: 'start', site: v }),
  },
  'owner-crash': {
    name: 'owner-crash',
    summary: 'SIGKILL the write site of a global table; a new owner is promoted',
    slo: { ...baseSlo, rtoMs: 3000 },
    needs: ['failover'],
    sitesMin: 3,
    pickVictim: (ctx) => Object.values(ctx.owners)[0] ?? ctx.sites[0]!,
    plan: (ctx, v) => faultAndHeal(ctx.timeline, { kind: 'kill', site: v }, { kind: 'start', site: v }),
  },
  'site-loss': {
    name: 'site-loss',
    summary: 'destroy one site (process and disk); it comes back empty and bootstraps',
    slo: { ...baseSlo, lostLocalWritesMax: 'any' },
    needs: [],
    sitesMin: 2,
    pickVictim: nonOwnerVictim,
    plan: (ctx, v) => faultAndHeal(ctx.timeline, { kind: 'destroy-disk', site: v }, { kind: 'start', site: v }),
  },
  'site-isolation': {
    name: 'site-isolation',
    summary: 'cut one site off from its peers and the router; clients pinned to it keep writing',
    slo: { ...baseSlo, conflictsListed: true },
    needs: [],
    sitesMin: 2,
    pickVictim: nonOwnerVictim,
    plan: (ctx, v) => faultAndHeal(ctx.timeline, { kind: 'isolate', site: v }, { kind: 'heal-links' }),
  },
  'link-partition': {
    name: 'link-partition',
    summary: 'split the sites in two (peer links only); writes on both sides conflict and resolve',
    slo: { ...baseSlo, conflictsListed: true, rtoPatterns: ['local'] },
    needs: [],
    sitesMin: 2,
    pickVictim: nonOwnerVictim,
    plan: (ctx, v) =>
      faultAndHeal(ctx.timeline, { kind: 'partition', sides: [[v], ctx.sites.filter((s) => s !== v)], oneWay: false }, { kind: 'heal-links' }),
  },
  'wan-latency': {
    name: 'wan-latency',
    summary: 'inter-region latency and jitter (3x a realistic RTT matrix) on every peer link',
    slo: baseSlo,
    needs: [],
    sitesMin: 2,
    pickVictim: anySite,
    plan: (ctx) => faultAndHeal(ctx.timeline, { kind: 'latency', rttScale: 3, jitterMs: 40 }, { kind: 'heal-links' }),
  },
  'gray-failure': {
    name: 'gray-failure',
    summary: 'SIGSTOP one site: it accepts connections and never answers; SIGCONT later',
    slo: { ...baseSlo, rtoMs: 2000 },
    needs: [],
    sitesMin: 2,
    pickVictim: nonOwnerVictim,
    plan: (ctx, v) => faultAndHeal(ctx.timeline, { kind: 'pause', site: v }, { kind: 'resume', site: v }),
  },
  'clock-skew': {
    name: 'clock-skew',
    summary: "restart one site with its wall clock skewed by seconds (HLC must keep causality)",
    slo: baseSlo,
    needs: [],
    sitesMin: 2,
    pickVictim: nonOwnerVictim,
    plan: (ctx, v) => {
      const random = new SeededRandom(ctx.seed).fork('clock-skew');
      const skewMs = (random.chance(0.5) ? 1 : -1) * (2000 + random.int(8000));
      return faultAndHeal(ctx.timeline, { kind: 'restart', site: v, clockSkewMs: skewMs }, { kind: 'restart', site: v, clockSkewMs: 0 });
    },
  },
  switchover: {
    name: 'switchover',
    summary: 'planned handover of a global table to another site while writes continue (RPO 0)',
    slo: { ...baseSlo, rtoMs: 1000 },
    needs: ['failover'],
    sitesMin: 2,
    pickVictim: (ctx) => Object.values(ctx.owners)[0] ?? ctx.sites[0]!,
    // hand the first global table to the next site, and back at the heal
    plan: (ctx, v) => {
      const table = Object.entries(ctx.owners).find(([, owner]) => owner === v)?.[0];
      const to = ctx.sites.find((s) => s !== v);
      if (table === undefined || to === undefined) return [];
      return faultAndHeal(ctx.timeline, { kind: 'switchover', table, to }, { kind: 'switchover', table, to: v });
    },
  },
  'rolling-restart': {
    name: 'rolling-restart',
    summary: 'restart every site in turn under load (maintenance without an idle site)',
    slo: baseSlo,
    needs: [],
    sitesMin: 2,
    pickVictim: anySite,
    plan: (ctx) => {
      const t = ctx.timeline;
      const step = (t.healAtMs - t.faultAtMs) / ctx.sites.length;
      return ctx.sites.map((site, i) => ({
        atMs: Math.round(t.faultAtMs + i * step),
        phase: 'fault' as const,
        action: { kind: 'restart' as const, site },
      }));
    },
  },
  'bad-delete': {
    name: 'bad-delete',
    summary: 'a bulk delete of a key prefix at one site replicates everywhere; `tandem rewind` to a second before it brings the items back',
    slo: { ...baseSlo, rewind: { restoredAllSites: true, untouchedChangedMax: 0 } },
    needs: ['rewind'],
    sitesMin: 2,
    pickVictim: anySite,
    plan: (ctx, v) => {
      const table = ctx.tables === undefined ? undefined : badDeleteTable(ctx.tables);
      if (table === undefined) return [];
      return faultAndHeal(ctx.timeline, { kind: 'bulk-delete', site: v, table, prefix: badDeletePrefix }, { kind: 'rewind', table, prefix: badDeletePrefix });
    },
  },
  random: {
    name: 'random',
    summary: 'a seeded mix of process and link faults, one at a time, each healed before the next',
    slo: { ...baseSlo, rtoMs: 3000, conflictsListed: false },
    needs: [],
    sitesMin: 2,
    pickVictim: nonOwnerVictim,
    plan: (ctx) => randomPlan(ctx),
  },
};

/** The key prefix bad-delete seeds, deletes and rewinds (no workload key starts with it). */
export const badDeletePrefix = 'bad-delete/';

/**
 * The table bad-delete deletes from: a `local` table first (any site takes its writes), else a
 * `global` one (through its owner), last-writer-wins first, then merge; never a partitioned table
 * (its keys name their home), a crdt or a custom merge (the drill compares whole values).
 * Undefined: the cluster has none.
 */
export function badDeleteTable(tables: Record<string, TableConfig>): string | undefined {
  const fit = (pattern: TableConfig['pattern'], conflict: TableConfig['conflict']) =>
    Object.keys(tables)
      .sort()
      .find((n) => tables[n]!.pattern === pattern && tables[n]!.conflict === conflict);
  return fit('local', 'lww') ?? fit('local', 'merge') ?? fit('global', 'lww') ?? fit('global', 'merge');
}

/** A seeded sequence of faults in the fault window, each healed before the next starts. */
function randomPlan(ctx: ScenarioContext): PlannedFault[] {
  const random = new SeededRandom(ctx.seed).fork('random-plan');
  const owners = new Set(Object.values(ctx.owners));
  const victims = ctx.sites.filter((s) => !owners.has(s));
  const pool = victims.length > 0 ? victims : ctx.sites;
  const t = ctx.timeline;
  const span = t.healAtMs - t.faultAtMs;
  const count = Math.max(1, Math.min(4, Math.floor(span / 2500)));
  const slot = span / count;
  const out: PlannedFault[] = [];
  for (let i = 0; i < count; i++) {
    const start = Math.round(t.faultAtMs + i * slot);
    const end = Math.round(start + slot * (0.5 + random.next() * 0.3));
    const site = pool[random.int(pool.length)]!;
    const pick = random.int(7);
    const pair: [FaultAction, FaultAction] = (() => {
      switch (pick) {
        case 0:
          return [{ kind: 'kill', site }, { kind: 'start', site }];
        case 1:
          return [{ kind: 'pause', site }, { kind: 'resume', site }];
        case 2:
          return [{ kind: 'partition', sides: [[site], ctx.sites.filter((s) => s !== site)], oneWay: random.chance(0.5) }, { kind: 'heal-links' }];
        case 3:
          return [{ kind: 'latency', rttScale: 2 + random.int(4), jitterMs: 20 + random.int(60) }, { kind: 'heal-links' }];
        case 4:
          return [{ kind: 'resets', site, everyMs: 200 + random.int(800) }, { kind: 'heal-links' }];
        case 5:
          return [{ kind: 'stall', site }, { kind: 'heal-links' }];
        default:
          return [{ kind: 'bandwidth', site, bytesPerS: 16_384 * (1 + random.int(8)) }, { kind: 'heal-links' }];
      }
    })();
    out.push({ atMs: start, phase: 'fault', action: pair[0] }, { atMs: end, phase: 'heal', action: pair[1] });
  }
  return out;
}

/** The plan for a run: the victim (given or seeded) and the faults. Same inputs, same plan. */
export function planDrill(scenario: Scenario, ctx: ScenarioContext): { victim: string; faults: PlannedFault[] } {
  const random = new SeededRandom(ctx.seed).fork(`victim:${scenario.name}`);
  const victim = ctx.site ?? scenario.pickVictim(ctx, random);
  return { victim, faults: scenario.plan(ctx, victim) };
}

/**
 * A realistic inter-region round-trip matrix (ms) between the demo's regions, from public
 * cloud latency tables; other pairs get a seeded RTT between 60 and 220 ms.
 */
const knownRttMs: Record<string, number> = {
  'eu-west|us-east': 76,
  'ap-south|us-east': 190,
  'ap-south|eu-west': 122,
};

export function rttMatrix(sites: string[], seed: number): Map<string, number> {
  const random = new SeededRandom(seed).fork('rtt');
  const out = new Map<string, number>();
  const sorted = [...sites].sort();
  for (let i = 0; i < sorted.length; i++)
    for (let j = i + 1; j < sorted.length; j++) {
      const [a, b] = [sorted[i]!, sorted[j]!];
      const rtt = knownRttMs[`${a}|${b}`] ?? knownRttMs[`${b}|${a}`] ?? 60 + random.int(160);
      out.set(`${a}|${b}`, rtt);
      out.set(`${b}|${a}`, rtt);
    }
  return out;
}
