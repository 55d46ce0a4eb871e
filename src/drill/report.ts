// What a drill records, and the report made from a recording: the checkers, the measures and the
// SLO verdict. `tandem drill check DIR` runs this again on a recorded drill.
import { homeRegistryTable, type ClusterConfig } from '../config/schema.js';
import type { VersionVector } from '../core/vector.js';
import {
  checkCounters,
  checkDivergence,
  checkListAppend,
  checkSessions,
  findLostWrites,
  itemRef,
  lostWriteAnomalies,
  type Anomaly,
  type ConflictRecord,
  type FinalItem,
  type LostWrite,
  type SiteFinal,
  type SiteStatus,
} from './checkers.js';
import type { GeneratorProgress } from './load-generator.js';
import { checkBadDelete, type BadDeleteRecording, type BadDeleteReport } from './bad-delete-check.js';
import { perSecond, rtoByClass, type ClassRto, type Episode, type SecondPoint } from './measures.js';
import type { OpRecord } from './op-history.js';
import { scenarios, type FaultAction, type PlannedFault, type ScenarioName, type Slo, type Timeline } from './scenarios.js';

export interface ExecutedFault {
  plannedAtMs: number;
  atMs: number;
  doneAtMs: number;
  phase: 'fault' | 'heal';
  action: FaultAction;
  result: string;
}

export interface LagSample {
  t: number;
  site: string;
  lagMs: number | null;
  lagEntries: number | null;
  caughtUp: boolean;
}

export interface RouterSample {
  t: number;
  healthy: Record<string, boolean>;
}

export interface DrillRecording {
  scenario: ScenarioName;
  seed: number;
  victim: string;
  slo: Slo;
  timeline: Timeline;
  plannedFaults: PlannedFault[];
  executedFaults: ExecutedFault[];
  config: ClusterConfig;
  skippedTables: Record<string, string>;
  history: OpRecord[];
  finals: { site: string; gcFloor: VersionVector; items: { table: string; key: string; context: VersionVector; live: boolean; value: Record<string, unknown> | undefined }[] }[];
  statuses: SiteStatus[];
  conflicts: ConflictRecord[];
  lag: LagSample[];
  routerSamples: RouterSample[];
  routerRetries: number | null;
  loadEndMs: number;
  /** how long after the load ended every site showed the same vector and digests (null: never, within the bound) */
  convergedAfterLoadMs: number | null;
  generator: GeneratorProgress;
  /** the generator's worst event-loop delay per progress report (every 500 ms) */
  generatorLag: { t: number; delayMaxMs: number }[];
  /** the machine's CPU pressure (PSI some avg10, %) sampled every 500 ms, where the kernel reports it */
  cpuPressure?: { t: number; someAvg10Pct: number }[];
  powerLoss: boolean;
  /** bad-delete: what was seeded, deleted, written after, and what the rewind did */
  badDelete?: BadDeleteRecording;
  meta: { tandemVersion: string; node: string; cpus: number; startedAt: string; replayCommand: string };
}

export interface DrillReport {
  scenario: ScenarioName;
  seed: number;
  passed: boolean;
  inconclusive: boolean;
  failures: string[];
  slo: Slo;
  victim: string;
  faultAtMs: number | null;
  healAtMs: number | null;
  rtoMs: number;
  healRtoMs: number;
  detectMs: number | null;
  rerouteMs: number | null;
  rpo: { lostAckedWrites: number; lostAckedQuorumWrites: number; lostAckedLocalWrites: number; voidedByFailover: number; windowMs: number; lost: LostWrite[] };
  availability: number;
  clientErrors: number;
  unknownOutcomes: number;
  operations: number;
  convergenceMs: number | null;
  converged: boolean;
  conflicts: number;
  conflictsByReason: Record<string, number>;
  anomalies: Anomaly[];
  routerRetries: number | null;
  classes: ClassRto[];
  generator: { eventLoopDelayMaxMs: number; scheduleLagMaxMs: number; shed: number; lag: { t: number; delayMaxMs: number }[] };
  plannedFaults: PlannedFault[];
  executedFaults: ExecutedFault[];
  skippedTables: Record<string, string>;
  timeline: { loadMs: number; perSecond: SecondPoint[]; lag: { t: number; site: string; lagMs: number | null }[] };
  sites: string[];
  /** how busy the machine was: over ~80% CPU pressure, latencies measure the machine, not the cluster */
  machine: { cpuPressureMaxPct: number | null };
  /** bad-delete: items deleted, restored, skipped, untouched keys changed, the rewind's duration */
  badDelete?: BadDeleteReport;
  meta: DrillRecording['meta'];
}

const inconclusiveLagMs = 50;

/** The sites a fault touches (its process, or all its links). */
function sitesOf(a: FaultAction): string[] {
  switch (a.kind) {
    case 'partition':
      return a.sides[0];
    case 'latency':
    case 'heal-links':
    case 'rewind':
      return [];
    case 'switchover':
      return [a.to];
    default:
      return [a.site];
  }
}

export function episodesOf(executed: ExecutedFault[], loadMs: number): Episode[] {
  const within = executed.filter((f) => f.atMs < loadMs).sort((a, b) => a.atMs - b.atMs);
  return within.map((f, i) => ({
    phase: f.phase,
    label: `${f.phase} at ${f.atMs} ms: ${f.action.kind}${'site' in f.action ? ` ${f.action.site}` : ''}`,
    startMs: f.atMs,
    endMs: i + 1 < within.length ? within[i + 1]!.atMs : loadMs,
    sites: sitesOf(f.action),
  }));
}

export function checkDrill(rec: DrillRecording): DrillReport {
  const scenario = scenarios[rec.scenario];
  const slo = rec.slo;
  const tables = rec.config.tables;
  const sites = rec.config.sites.map((s) => s.id);
  const regions = new Map(rec.config.sites.flatMap((s) => (s.region ? [[s.region, s.id] as [string, string]] : [])));
  const loadMs = rec.timeline.loadMs;
  const episodes = episodesOf(rec.executedFaults, loadMs);
  const faultedSites = new Set(rec.executedFaults.flatMap((f) => (f.phase === 'fault' ? sitesOf(f.action) : [])));
  const homes = new Map<string, string>();
  for (const it of rec.finals[0]?.items ?? [])
    if (it.table === homeRegistryTable && it.live && typeof it.value?.['site'] === 'string') homes.set(it.key, it.value['site']);
  const classes = rtoByClass(rec.history, episodes, { tables, regions, faultedSites, ownerFaultExcluded: !scenario.needs.includes('failover'), rtoPatterns: slo.rtoPatterns, homes }, slo);
  const inSlo = classes.filter((c) => c.inSlo);
  const rtoMs = Math.max(0, ...inSlo.filter((c) => c.phase === 'fault').map((c) => c.rtoMs));
  const healRtoMs = Math.max(0, ...inSlo.filter((c) => c.phase === 'heal').map((c) => c.rtoMs));
  const routedFault = inSlo.filter((c) => c.phase === 'fault' && c.className.includes('.routed'));
  const rerouteMs = routedFault.length === 0 ? null : Math.max(...routedFault.map((c) => c.rtoMs));
  const firstFault = rec.executedFaults.find((f) => f.phase === 'fault');
  const heals = rec.executedFaults.filter((f) => f.phase === 'heal');
  const lastHeal = heals[heals.length - 1] ?? rec.executedFaults[rec.executedFaults.length - 1];

  // detection: the router marks a site that the first fault took down or cut off unhealthy
  let detectMs: number | null = null;
  if (firstFault && ['kill', 'power-loss', 'destroy-disk', 'pause', 'isolate'].includes(firstFault.action.kind) && 'site' in firstFault.action) {
    const site = firstFault.action.site;
    const seen = rec.routerSamples.find((s) => s.t >= firstFault.atMs && s.healthy[site] === false);
    if (seen) detectMs = Math.round(seen.t - firstFault.atMs);
  }

  // lost writes, by durability class
  const finals: SiteFinal[] = rec.finals.map((f) => ({
    site: f.site,
    gcFloor: f.gcFloor,
    items: new Map(f.items.map((i) => [itemRef(i.table, i.key), { context: i.context, live: i.live, value: i.value } satisfies FinalItem])),
  }));
  const lost = findLostWrites(rec.history, finals, rec.conflicts, tables);
  const lostQuorum = lost.filter((l) => l.durability !== 'local');
  // A local-durability write of an owned table that had not left its owner when the owner failed is
  // voided by the failover's cut: RPO by design (ARCHITECTURE.md, "Voiding"), reported, not an SLO miss.
  const voidedByFailover = lost.filter((l) => l.durability === 'local' && l.why === 'voided' && (tables[l.table]?.pattern ?? 'local') !== 'local');
  const lostLocal = lost.filter((l) => l.durability === 'local' && !voidedByFailover.includes(l));
  const lostTimes = lost.map((l) => l.intendedMs);
  // writes voided by a failover's cut are RPO by design (below), reported in rpo.lost, not anomalies
  const anomalies: Anomaly[] = [...lostWriteAnomalies(lost.filter((l) => !(l.durability === 'local' && l.why === 'voided' && (tables[l.table]?.pattern ?? 'local') !== 'local')))];
  const finalItem = (table: string, key: string) => finals[0]?.items.get(itemRef(table, key));
  anomalies.push(...checkCounters(rec.history, finalItem));
  anomalies.push(...checkSessions(rec.history));
  anomalies.push(...checkDivergence(rec.statuses));
  anomalies.push(
    ...checkListAppend(rec.history, (table, key) => {
      const item = finalItem(table, key);
      return item?.live && Array.isArray(item.value?.['items']) ? (item.value['items'] as string[]) : undefined;
    }),
  );

  const badDelete = rec.badDelete && slo.rewind ? checkBadDelete(rec.badDelete, finals, rec.conflicts, slo.rewind) : undefined;

  const conflictKeys = new Map<string, string>();
  for (const c of rec.conflicts) conflictKeys.set(`${c.table}\u0000${c.key}\u0000${c.loserDot}`, c.reason);
  const conflictsByReason: Record<string, number> = {};
  for (const reason of conflictKeys.values()) conflictsByReason[reason] = (conflictsByReason[reason] ?? 0) + 1;

  const open = rec.history.filter((r) => r.client === 'open' && r.intendedMs >= 0);
  const okCount = open.filter((r) => r.outcome === 'ok').length;
  const availability = open.length === 0 ? 0 : okCount / open.length;

  // convergence: from the last heal until every site is caught up with every peer
  const healAt = lastHeal?.atMs ?? null;
  let convergenceMs: number | null = null;
  if (healAt !== null) {
    const rounds = new Map<number, LagSample[]>();
    for (const s of rec.lag) if (s.t >= healAt) rounds.set(s.t, [...(rounds.get(s.t) ?? []), s]);
    const caught = [...rounds.entries()].sort((a, b) => a[0] - b[0]).find(([, ss]) => ss.length === sites.length && ss.every((s) => s.caughtUp));
    if (caught) convergenceMs = Math.round(caught[0] - healAt);
    else if (rec.convergedAfterLoadMs !== null) convergenceMs = Math.round(rec.loadEndMs + rec.convergedAfterLoadMs - healAt);
  }
  const converged = rec.convergedAfterLoadMs !== null && !anomalies.some((a) => a.kind === 'divergence');

  const inconclusive = rec.generator.eventLoopDelayMaxMs > inconclusiveLagMs || rec.generator.scheduleLagMaxMs > inconclusiveLagMs;
  const failures: string[] = [];
  if (inconclusive)
    failures.push(`inconclusive: the load generator lagged (event loop ${rec.generator.eventLoopDelayMaxMs.toFixed(0)} ms, schedule ${rec.generator.scheduleLagMaxMs.toFixed(0)} ms; over ${inconclusiveLagMs} ms)`);
  if (rtoMs > slo.rtoMs) {
    const worst = inSlo.filter((c) => c.phase === 'fault' && c.rtoMs === rtoMs).map((c) => c.className);
    failures.push(`RTO ${rtoMs} ms > ${slo.rtoMs} ms (${worst.join(', ')})`);
  }
  if (lostQuorum.length > slo.lostQuorumWrites) failures.push(`${lostQuorum.length} acknowledged quorum writes lost (SLO ${slo.lostQuorumWrites})`);
  if (slo.lostLocalWritesMax !== 'any' && lostLocal.length > slo.lostLocalWritesMax)
    failures.push(`${lostLocal.length} acknowledged local-durability writes lost (SLO ${slo.lostLocalWritesMax}): ${lostLocal.slice(0, 5).map((l) => `${l.writeId ?? l.id} ${l.table}/${l.key} ${l.dot}`).join('; ')}`);
  if (slo.converged && !converged) failures.push('the sites did not converge (vectors and digests) after the heal');
  for (const a of anomalies) if (a.kind !== 'lost-write') failures.push(`${a.kind}: ${a.detail}`);
  if (slo.conflictsListed) {
    const lww = new Set(Object.entries(tables).filter(([, t]) => t.pattern === 'local' && t.conflict === 'lww').map(([n]) => n));
    const faultSites = new Set(firstFault ? sitesOf(firstFault.action) : []);
    const sides = new Map<string, Set<boolean>>();
    for (const r of rec.history)
      if (r.op === 'put' && r.outcome === 'ok' && lww.has(r.table) && r.site !== undefined && firstFault && healAt !== null && r.sentMs > firstFault.doneAtMs && r.endMs < healAt) {
        const k = itemRef(r.table, r.key);
        sides.set(k, (sides.get(k) ?? new Set()).add(faultSites.has(r.site)));
      }
    const bothSides = [...sides.values()].filter((s) => s.size === 2).length;
    if (bothSides > 0 && conflictKeys.size === 0) failures.push(`${bothSides} keys were written on both sides of the cut, yet no conflict was listed in any conflict feed`);
  }
  if (slo.rewind && !badDelete) failures.push('bad-delete: nothing was recorded of the delete and the rewind');
  if (badDelete) failures.push(...badDelete.failures);

  const lagSeries = rec.lag.map((s) => ({ t: s.t, site: s.site, lagMs: s.lagMs }));
  return {
    scenario: rec.scenario,
    seed: rec.seed,
    passed: failures.length === 0,
    inconclusive,
    failures,
    slo,
    victim: rec.victim,
    faultAtMs: firstFault?.atMs ?? null,
    healAtMs: healAt,
    rtoMs,
    healRtoMs,
    detectMs,
    rerouteMs,
    rpo: {
      lostAckedWrites: lost.length,
      lostAckedQuorumWrites: lostQuorum.length,
      lostAckedLocalWrites: lostLocal.length,
      voidedByFailover: voidedByFailover.length,
      windowMs: lostTimes.length === 0 ? 0 : Math.round(Math.max(...lostTimes) - Math.min(...lostTimes)),
      lost,
    },
    availability: Math.round(availability * 10_000) / 10_000,
    clientErrors: rec.history.filter((r) => r.outcome === 'failed').length,
    unknownOutcomes: rec.history.filter((r) => r.outcome === 'unknown').length,
    operations: rec.history.length,
    convergenceMs,
    converged,
    conflicts: conflictKeys.size,
    conflictsByReason,
    anomalies,
    routerRetries: rec.routerRetries,
    classes,
    generator: { eventLoopDelayMaxMs: rec.generator.eventLoopDelayMaxMs, scheduleLagMaxMs: rec.generator.scheduleLagMaxMs, shed: rec.generator.shed, lag: rec.generatorLag ?? [] },
    plannedFaults: rec.plannedFaults,
    executedFaults: rec.executedFaults,
    skippedTables: rec.skippedTables,
    timeline: { loadMs, perSecond: perSecond(rec.history, loadMs, sites), lag: lagSeries },
    sites,
    ...(badDelete ? { badDelete } : {}),
    machine: { cpuPressureMaxPct: rec.cpuPressure && rec.cpuPressure.length > 0 ? Math.max(...rec.cpuPressure.filter((p) => p.t >= 0).map((p) => p.someAvg10Pct), 0) : null },
    meta: rec.meta,
  };
}

function badDeleteLines(b: BadDeleteReport): string[] {
  const lines = [
    `  bad-delete: ${b.deleted} of ${b.seeded} items of ${b.table}/${b.prefix}* deleted at ${b.deleteSite}; rewind ${b.rewindId ?? 'n/a'} to ${b.toTime ?? 'n/a'} ${b.rewindDone ? 'done' : 'NOT done'} in ${b.rewindMs ?? 'n/a'} ms`,
    `    restored at every site: ${b.restored} of ${b.toRestore}; skipped (changed or created after T): ${b.skippedCount}${b.skipped.length > 0 ? ` (${b.skipped.slice(0, 10).map((k) => `${k.key} [${k.class}]`).join(', ')})` : ''}`,
    `    not restored: ${b.notRestoredCount}; untouched keys changed: ${b.untouchedChangedCount} of ${b.untouchedChecked} checked`,
  ];
  for (const n of b.notRestored.slice(0, 5)) lines.push(`    ✗ ${n.key} at ${n.site}: ${n.why}`);
  for (const c of b.untouchedChanged.slice(0, 5)) lines.push(`    ✗ ${c.key}${c.site ? ` at ${c.site}` : ''}: ${c.why}`);
  return lines;
}

/** The terminal summary of a report. */
export function summarize(r: DrillReport): string {
  const lines = [
    `${r.scenario} (seed ${r.seed}, victim ${r.victim}): ${r.passed ? 'PASSED' : r.inconclusive ? 'INCONCLUSIVE' : 'FAILED'}`,
    `  RTO ${r.rtoMs} ms (SLO ${r.slo.rtoMs} ms)${r.detectMs !== null ? `, router detection ${r.detectMs} ms` : ''}${r.healRtoMs > 0 ? `, after the heal ${r.healRtoMs} ms` : ''}`,
    `  RPO: ${r.rpo.lostAckedWrites} acknowledged writes lost (${r.rpo.lostAckedQuorumWrites} quorum), window ${r.rpo.windowMs} ms`,
    `  ${r.operations} operations, availability ${(r.availability * 100).toFixed(2)}%, ${r.clientErrors} failed, ${r.unknownOutcomes} unknown, router retries ${r.routerRetries ?? 'n/a'}`,
    ...(r.machine.cpuPressureMaxPct !== null && r.machine.cpuPressureMaxPct > 80 ? [`  note: the machine was CPU-starved (pressure up to ${r.machine.cpuPressureMaxPct}%): latencies measure it as much as the cluster`] : []),
    `  converged: ${r.converged ? 'yes' : 'NO'}${r.convergenceMs !== null ? ` (${r.convergenceMs} ms after the heal)` : ''}; conflicts listed: ${r.conflicts}`,
    ...(r.badDelete ? badDeleteLines(r.badDelete) : []),
  ];
  for (const f of r.failures.slice(0, 20)) lines.push(`  ✗ ${f}`);
  if (r.failures.length > 20) lines.push(`  … and ${r.failures.length - 20} more`);
  lines.push(`  replay: ${r.meta.replayCommand}`);
  return lines.join('\n');
}
