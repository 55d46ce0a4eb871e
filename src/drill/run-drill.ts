// Runs one drill (ARCHITECTURE.md, "Drills"): a fresh local cluster (real processes) whose every
// site-to-site link and router-to-site link goes through a fault proxy (in its own process); the
// seeded workload in its own process; the seeded fault plan; the heal; convergence; the checkers
// and measures; the report directory (report.json, report.html, the history, plans, final states, logs).
import type { ChildProcess } from 'node:child_process';
import { appendFileSync, existsSync, mkdirSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { request } from 'undici';
import { backupSchema, type ClusterConfig } from '../config/schema.js';
import { demoConfig } from '../config/demo.js';
import { loadConfigFile } from '../config/load.js';
import { LocalCluster } from '../cluster/local-cluster.js';
import { freePortRange } from '../cluster/ports.js';
import { limits } from '../limits.js';
import { SqliteStore } from '../store/sqlite/sqlite-store.js';
import { realClock, realTimers } from '../platform/real/real-env.js';
import { RemoteLinkMesh } from './proxy-client.js';
import { spawnNiced } from './spawn-niced.js';
import { readHistory, type OpRecord } from './op-history.js';
import { BadDelete } from './bad-delete.js';
import { drivenTables, type WorkloadSpec } from './workload.js';
import type { GeneratorProgress, GeneratorSpec } from './load-generator.js';
import { badDeletePrefix, badDeleteTable, planDrill, rttMatrix, scenarios, type FaultAction, type PlannedFault, type ScenarioName, type Slo } from './scenarios.js';
import { checkDrill, type DrillReport, type DrillRecording, type ExecutedFault, type LagSample, type RouterSample } from './report.js';
import { renderReportHtml } from './report-html.js';

const here = dirname(fileURLToPath(import.meta.url));
const generatorEntry = resolve(here, '../../dist/drill/load-generator.js');

export class ScenarioUnavailable extends Error {
  override name = 'ScenarioUnavailable';
}

export interface DrillOptions {
  scenario: ScenarioName;
  configFile?: string;
  sites: number;
  basePort?: number;
  durationS: number;
  ratePerS: number;
  seed: number;
  site?: string;
  reportDir: string;
  /** site-crash: the crash is a power loss (unsynced WAL bytes dropped), after 1 s with the victim's peer links stalled */
  powerLoss?: boolean;
  /** commands this build has (`rewind`, `switchover`) */
  commands: Set<string>;
  /** load before the measured load starts (default 2000 ms): it warms every process up */
  warmupMs?: number;
  /** extra environment for the victim site (drill tests inject a broken build this way) */
  victimEnv?: Record<string, string>;
  /** the exact command line that replays this drill */
  replayCommand: string;
  onProgress?: (line: string) => void;
  /** receives a function that stops every process and proxy of the drill (for SIGINT/SIGTERM) */
  registerCleanup?: (cleanup: () => Promise<void>) => void;
}

export interface DrillOutcome {
  report: DrillReport;
  reportDir: string;
}

const nowNs = () => process.hrtime.bigint();

/** The cluster a drill starts: the demo (tuned router health checks) or the user's tables, on local ports. */
export async function drillConfig(
  options: Pick<DrillOptions, 'configFile' | 'sites' | 'basePort'>,
  mesh: (c: ClusterConfig, firstPort: number) => Promise<RemoteLinkMesh>,
): Promise<{ config: ClusterConfig; mesh: RemoteLinkMesh }> {
  const n = options.configFile ? undefined : options.sites;
  const user = options.configFile ? loadConfigFile(options.configFile) : undefined;
  const siteCount = user?.sites.length ?? n!;
  // P: router, P+i: site i, P+53: DNS, P+60…: the link proxies (one per directed link, and router->site)
  const proxyPorts = siteCount * siteCount;
  const basePort = options.basePort ?? (await freePortRange(60 + proxyPorts));
  let config: ClusterConfig;
  if (user) {
    config = structuredClone(user);
    config.sites = config.sites.map((s, i) => {
      const { app: _app, ...rest } = s;
      void _app;
      return { ...rest, url: `http://127.0.0.1:${basePort + i + 1}` };
    });
    config.router.listen = `127.0.0.1:${basePort}`;
    if (config.router.dns) config.router.dns.listen = `127.0.0.1:${basePort + 53}`;
    for (const t of Object.values(config.tables)) if (t.merge !== undefined) t.merge = resolve(dirname(resolve(options.configFile!)), t.merge);
  } else {
    config = demoConfig({ sites: siteCount, basePort });
    // a drill measures failover in under a second: the router must notice a dead or paused site fast
    config.router.policy = 'weighted';
    config.router.healthCheck = { ...config.router.healthCheck, intervalMs: 100, timeoutMs: 250, unhealthyAfter: 2, healthyAfter: 2 };
    config.router.upstreamTimeoutMs = 1000;
    config.router.connectTimeoutMs = 250;
  }
  const m = await mesh(config, basePort + 60);
  // the router reaches each site through its own link proxy (the site's `app`)
  config.sites = config.sites.map((s) => ({ ...s, app: m.url('router', s.id) }));
  return { config, mesh: m };
}

async function getJson(url: string, timeoutMs = 1000): Promise<{ status: number; json: unknown }> {
  const res = await request(url, { signal: AbortSignal.timeout(timeoutMs), headersTimeout: timeoutMs, bodyTimeout: timeoutMs });
  const text = await res.body.text();
  let json: unknown;
  try {
    json = text === '' ? undefined : JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.statusCode, json };
}

interface StatusJson {
  site: string;
  vector: Record<string, number>;
  digests: Record<string, string>;
  peers: Record<string, { connected: boolean; lagEntries: number; lagMs: number }>;
}

export async function runDrill(options: DrillOptions): Promise<DrillOutcome> {
  const scenario = scenarios[options.scenario];
  for (const need of scenario.needs) {
    if (need === 'rewind' && !options.commands.has('rewind'))
      throw new ScenarioUnavailable(`${scenario.name} needs point-in-time rewind (issue #17): this build has no \`tandem rewind\``);
  }
  if (scenario.name === 'switchover' && !options.commands.has('switchover'))
    throw new ScenarioUnavailable('switchover needs planned switchover (issue #15): this build has no `tandem switchover`');
  const reportDir = resolve(options.reportDir);
  mkdirSync(reportDir, { recursive: true });
  const dataDir = join(reportDir, 'cluster');
  rmSync(dataDir, { recursive: true, force: true });
  mkdirSync(dataDir, { recursive: true });
  const backupDir = join(reportDir, 'backups');
  rmSync(backupDir, { recursive: true, force: true });
  rmSync(join(reportDir, 'rewind'), { recursive: true, force: true });
  const progress = options.onProgress ?? (() => {});
  const { config, mesh } = await drillConfig(options, (c, firstPort) =>
    RemoteLinkMesh.start({ sites: c.sites.map((s) => ({ id: s.id, url: s.url })), seed: options.seed, firstPort }, join(reportDir, 'proxies.json')),
  );
  const siteIds = config.sites.map((s) => s.id);
  if (siteIds.length < scenario.sitesMin) {
    await mesh.stop();
    throw new ScenarioUnavailable(`${scenario.name} needs at least ${scenario.sitesMin} sites, the cluster has ${siteIds.length}`);
  }
  if (options.site !== undefined && !siteIds.includes(options.site)) {
    await mesh.stop();
    throw new ScenarioUnavailable(`--site: ${options.site} is not a site of the cluster (sites: ${siteIds.join(', ')})`);
  }
  const rewindTable = scenario.needs.includes('rewind') ? badDeleteTable(config.tables) : undefined;
  if (scenario.needs.includes('rewind') && rewindTable === undefined) {
    await mesh.stop();
    throw new ScenarioUnavailable(`${scenario.name} needs a local or global table of conflict lww or merge to delete from and rewind (tables: ${Object.keys(config.tables).join(', ')})`);
  }
  // every site backs itself up continuously when the scenario rewinds, or the user's config has a
  // backup; either way into the drill's own directory, never into the user's target
  if (rewindTable !== undefined || config.backup !== undefined) config.backup = backupSchema.parse({ target: pathToFileURL(backupDir).href });

  const loadMs = options.durationS * 1000;
  const timeline = { loadMs, faultAtMs: Math.round(loadMs * 0.25), healAtMs: Math.round(loadMs * 0.6) };
  const configOwners: Record<string, string> = {};
  for (const [name, t] of Object.entries(config.tables)) if (t.pattern === 'global' && t.writeSite) configOwners[name] = t.writeSite;

  // site start-up environment: peer links through the proxies, fault knobs (read at each start)
  const skews = new Map<string, number>();
  const syncedWalFile = (site: string) => join(dataDir, `${site}.synced-wal-bytes`);
  const powerLossSites = new Set<string>();
  // the victim is known before the start only from the config; owner-crash asks the topology
  const preCtx = { seed: options.seed, sites: siteIds, owners: configOwners, site: options.site, timeline, tables: config.tables };
  let plan = planDrill(scenario, preCtx);
  const victimForEnv = plan.victim;
  if (options.powerLoss) powerLossSites.add(plan.victim);
  const cluster = new LocalCluster({
    config,
    dataDir,
    withRouter: true,
    env: { TANDEM_LOG_LEVEL: process.env['TANDEM_LOG_LEVEL'] ?? 'warn' },
    siteEnv: (id) => ({
      TANDEM_PEER_URLS: JSON.stringify(mesh.peerUrlsFor(id)),
      ...(skews.get(id) ? { TANDEM_CLOCK_SKEW_MS: String(skews.get(id)) } : {}),
      ...(powerLossSites.has(id) ? { TANDEM_FAULT_SYNCED_WAL_FILE: syncedWalFile(id) } : {}),
      ...(id === victimForEnv ? (options.victimEnv ?? {}) : {}),
    }),
  });

  const recording: Partial<DrillRecording> = {};
  const started = realClock.wallMs();
  let gen: ChildProcess | undefined;
  options.registerCleanup?.(async () => {
    gen?.kill('SIGKILL');
    for (const s of siteIds) cluster.process(s)?.child.kill('SIGCONT');
    await cluster.stop(5_000).catch(() => {});
    mesh.kill();
  });
  try {
    // ---------- load ----------
    const { driven, skipped } = drivenTables(config.tables);
    const workload: WorkloadSpec = {
      seed: options.seed,
      ratePerS: options.ratePerS,
      loadMs,
      warmupMs: options.warmupMs ?? 2000,
      sites: config.sites.map((s) => ({ id: s.id, ...(s.region ? { region: s.region } : {}) })),
      tables: config.tables,
      keysPerTable: 40,
      routedShare: 0.7,
    };
    const sessionTable = driven.find((t) => config.tables[t]!.pattern === 'local' && config.tables[t]!.conflict === 'lww');
    const listTable = driven.find((t) => config.tables[t]!.pattern === 'global');
    // the measured load starts at zero (told to the generator once the cluster is up); the
    // generator loads meanwhile, then warms the cluster up for warmupMs before zero
    let zero = 0n;
    const historyPath = join(reportDir, 'history.jsonl');
    const genSpec: GeneratorSpec = {
      workload,
      routerUrl: `http://${config.router.listen}`,
      siteUrls: Object.fromEntries(config.sites.map((s) => [s.id, s.url])),
      historyPath,
      inFlightMax: 512,
      opTimeoutMs: 2000,
      ...(sessionTable ? { session: { table: sessionTable, clients: 2 } } : {}),
      ...(listTable ? { list: { table: listTable, clients: 2, keys: 2 } } : {}),
    };
    const specPath = join(reportDir, 'workload.json');
    writeFileSync(specPath, JSON.stringify(genSpec, null, 2));
    const msSinceZero = () => Number(nowNs() - zero) / 1e6;

    let last: GeneratorProgress | undefined;
    const generatorLag: { t: number; delayMaxMs: number }[] = [];
    let phase = 'load';
    // Its GC runs on its main thread: a parallel scavenge waiting for helper threads stalled it
    // 40-70 ms on a busy machine.
    // the generator must keep its schedule on a busy machine (else the drill is inconclusive)
    gen = spawnNiced(-10, ['--single-threaded-gc', '--max-semi-space-size=16', generatorEntry, specPath]);
    const genErr: string[] = [];
    gen.stderr!.on('data', (c: Buffer) => genErr.push(c.toString()));
    let buffered = '';
    let prevSent = 0;
    let prevAt = 0;
    gen.stdout!.on('data', (c: Buffer) => {
      buffered += c.toString();
      for (let i = buffered.indexOf('\n'); i >= 0; i = buffered.indexOf('\n')) {
        const line = buffered.slice(0, i);
        buffered = buffered.slice(i + 1);
        try {
          last = JSON.parse(line) as GeneratorProgress;
        } catch {
          continue;
        }
        generatorLag.push({ t: last.atMs, delayMaxMs: Math.round(last.recentDelayMaxMs * 10) / 10 });
        const rate = last.atMs > prevAt ? ((last.sent - prevSent) * 1000) / (last.atMs - prevAt) : 0;
        prevSent = last.sent;
        prevAt = last.atMs;
        progress(`${phase.padEnd(10)} ${(Math.max(0, last.atMs) / 1000).toFixed(1).padStart(6)} s  ${rate.toFixed(0).padStart(5)} ops/s  ok ${last.ok}  failed ${last.failed}  unknown ${last.unknown}`);
      }
    });
    const genExit = new Promise<number | null>((r) => gen!.once('exit', (code) => r(code)));
    progress('starting the cluster');
    await cluster.start(60_000);
    // bad-delete: its items, seeded before the load, on every site before it starts
    const ownOps: OpRecord[] = [];
    const badDelete =
      rewindTable === undefined
        ? undefined
        : new BadDelete({
            table: rewindTable,
            prefix: badDeletePrefix,
            items: Math.min(2000, 100 * options.durationS),
            sites: config.sites.map((s) => ({ id: s.id, url: s.url })),
            configPath: cluster.configPath,
            journalDir: join(reportDir, 'rewind'),
            msSinceZero: () => msSinceZero(),
            record: (r) => ownOps.push(r),
          });
    if (badDelete) {
      progress(`seeding ${rewindTable}/${badDeletePrefix}*`);
      await badDelete.seed();
    }
    if (scenario.needs.includes('failover')) {
      const topo = await getJson(`${config.sites[0]!.url}/v1/topology`).catch(() => ({ status: 0, json: undefined }));
      if (topo.status !== 200)
        throw new ScenarioUnavailable(
          `${scenario.name} needs failover (issue #15): GET /v1/topology answered ${topo.status === 0 ? 'nothing' : topo.status} on ${config.sites[0]!.id}`,
        );
      const owners = (topo.json as { owners?: Record<string, string> }).owners ?? {};
      plan = planDrill(scenario, { ...preCtx, owners: { ...configOwners, ...owners } });
    }
    let faults = plan.faults;
    if (options.powerLoss) faults = powerLossVariant(faults);
    writeFileSync(join(reportDir, 'plan.json'), JSON.stringify({ victim: plan.victim, timeline, faults }, null, 2));
    zero = nowNs() + 300_000_000n + BigInt(workload.warmupMs) * 1_000_000n;
    gen.stdin!.end(`${zero}\n`);
    // the seed writes happened before the zero was known: their times were since the clock's origin
    const zeroMs = Number(zero) / 1e6;
    for (const r of ownOps) {
      r.intendedMs -= zeroMs;
      r.sentMs -= zeroMs;
      r.endMs -= zeroMs;
    }


    // ---------- samplers ----------
    const lag: LagSample[] = [];
    const routerSamples: RouterSample[] = [];
    let sampling = true;
    const cpuPressure: { t: number; someAvg10Pct: number }[] = [];
    const sampleStatus = async () => {
      while (sampling) {
        const t = msSinceZero();
        const pressure = cpuPressureSomeAvg10();
        if (pressure !== undefined) cpuPressure.push({ t, someAvg10Pct: pressure });
        await Promise.all(
          config.sites.map(async (s) => {
            try {
              const st = (await getJson(`${s.url}/v1/status`, 400)).json as StatusJson;
              const peers = Object.values(st.peers ?? {});
              lag.push({ t, site: s.id, lagMs: Math.max(0, ...peers.map((p) => p.lagMs)), lagEntries: Math.max(0, ...peers.map((p) => p.lagEntries)), caughtUp: peers.every((p) => p.connected && p.lagEntries === 0) });
            } catch {
              lag.push({ t, site: s.id, lagMs: null, lagEntries: null, caughtUp: false });
            }
          }),
        );
        await realTimers.sleep(500);
      }
    };
    const sampleRouter = async () => {
      while (sampling) {
        const t = msSinceZero();
        try {
          const st = (await getJson(`http://${config.router.listen}/_tandem/router/status`, 300)).json as { sites: Record<string, { healthy: boolean }> };
          routerSamples.push({ t, healthy: Object.fromEntries(Object.entries(st.sites).map(([id, v]) => [id, v.healthy])) });
        } catch {
          // the router is not under test here; a missed sample is a gap
        }
        await realTimers.sleep(100);
      }
    };
    const samplers = [sampleStatus(), sampleRouter()];

    // ---------- faults ----------
    const executed: ExecutedFault[] = [];
    const resetTimers: { cancel(): void }[] = [];
    const act = async (a: FaultAction): Promise<string> => {
      switch (a.kind) {
        case 'kill':
          await mesh.command({ op: 'target-down', links: mesh.linksInto(a.site), resetOpen: true });
          await cluster.kill(a.site, 'SIGKILL');
          return 'killed';
        case 'power-loss': {
          await mesh.command({ op: 'target-down', links: mesh.linksInto(a.site), resetOpen: true });
          await cluster.kill(a.site, 'SIGKILL');
          return powerLoss(join(dataDir, a.site, 'store.db'), syncedWalFile(a.site));
        }
        case 'destroy-disk':
          await mesh.command({ op: 'target-down', links: mesh.linksInto(a.site), resetOpen: true });
          await cluster.kill(a.site, 'SIGKILL');
          rmSync(join(dataDir, a.site), { recursive: true, force: true });
          return 'killed; data directory removed';
        case 'start':
          await mesh.command({ op: 'target-up', links: mesh.linksInto(a.site) });
          cluster.startSite(a.site);
          return 'started';
        case 'restart': {
          const t0 = performance.now();
          await mesh.command({ op: 'target-down', links: mesh.linksInto(a.site), resetOpen: false });
          const proc = cluster.process(a.site);
          if (proc && proc.child.exitCode === null && proc.child.signalCode === null) {
            proc.child.kill('SIGTERM');
            await Promise.race([proc.exited, realTimers.sleep(limits.shutdownDrainMsMax + 2000)]);
            if (proc.child.exitCode === null && proc.child.signalCode === null) await cluster.kill(a.site, 'SIGKILL');
          }
          const stoppedMs = Math.round(performance.now() - t0);
          if (a.clockSkewMs !== undefined) skews.set(a.site, a.clockSkewMs);
          await mesh.command({ op: 'target-up', links: mesh.linksInto(a.site) });
          cluster.startSite(a.site);
          await waitReady(config.sites.find((s) => s.id === a.site)!.url, 20_000);
          const took = `stopped in ${stoppedMs} ms, ready ${Math.round(performance.now() - t0 - stoppedMs)} ms later`;
          return a.clockSkewMs ? `restarted with its wall clock skewed ${a.clockSkewMs} ms (${took})` : `restarted (${took})`;
        }
        case 'pause':
          cluster.process(a.site)!.child.kill('SIGSTOP');
          return 'SIGSTOP';
        case 'resume':
          cluster.process(a.site)!.child.kill('SIGCONT');
          return 'SIGCONT';
        case 'isolate':
          await mesh.command({ op: 'block', links: mesh.linksOf(a.site) });
          return 'links cut';
        case 'partition':
          await mesh.command({ op: 'block', links: a.sides[0].flatMap((x) => a.sides[1].flatMap((y) => (a.oneWay ? [`${x}->${y}`] : [`${x}->${y}`, `${y}->${x}`]))) });
          return a.oneWay ? 'one-way cut' : 'cut both ways';
        case 'latency': {
          const rtt = rttMatrix(siteIds, options.seed);
          for (const x of siteIds)
            for (const y of siteIds)
              if (x !== y) await mesh.command({ op: 'latency', links: [`${x}->${y}`], latencyMs: (rtt.get(`${x}|${y}`)! * a.rttScale) / 2, jitterMs: a.jitterMs });
          return `latency ${a.rttScale}x RTT matrix, jitter ${a.jitterMs} ms`;
        }
        case 'bandwidth':
          await mesh.command({ op: 'bandwidth', links: mesh.linksOf(a.site), bytesPerS: a.bytesPerS });
          return `bandwidth ${a.bytesPerS} B/s`;
        case 'resets': {
          const tick = () => {
            void mesh.command({ op: 'reset', links: mesh.linksOf(a.site) }).catch(() => {});
            resetTimers.push(realTimers.after(a.everyMs, tick));
          };
          tick();
          return `connections reset every ${a.everyMs} ms`;
        }
        case 'stall':
          await mesh.command({ op: 'stall', links: mesh.linksOf(a.site, { router: false }) });
          return 'peer links stalled';
        case 'switchover': {
          const res = await fetch(`${config.sites[0]!.url}/v1/admin/switchover`, {
            method: 'POST',
            headers: { 'content-type': 'application/json', ...(process.env['TANDEM_ADMIN_TOKEN'] ? { authorization: `Bearer ${process.env['TANDEM_ADMIN_TOKEN']}` } : {}) },
            body: JSON.stringify({ table: a.table, to: a.to, why: `drill ${scenario.name}` }),
            signal: AbortSignal.timeout(30_000),
          });
          const body = (await res.json()) as { ok?: boolean; epoch?: number; refused?: string[] };
          if (!body.ok) throw new Error(`switchover refused: ${(body.refused ?? [String(res.status)]).join('; ')}`);
          return `${a.table} handed over to ${a.to} (epoch ${body.epoch})`;
        }
        case 'bulk-delete':
          if (!badDelete) throw new Error('bulk-delete: nothing was seeded');
          return badDelete.bulkDelete(a.site);
        case 'rewind':
          if (!badDelete) throw new Error('rewind: nothing was deleted');
          progress(`rewinding ${a.table}/${a.prefix}*`);
          return badDelete.rewind();
        case 'heal-links':
          for (const t of resetTimers.splice(0)) t.cancel();
          await mesh.healAll();
          return 'links healed';
      }
    };
    const runFaults = async () => {
      for (const f of faults) {
        const wait = f.atMs - msSinceZero();
        if (wait > 0) await realTimers.sleep(wait);
        phase = f.phase;
        const at = msSinceZero();
        try {
          const result = await act(f.action);
          executed.push({ plannedAtMs: f.atMs, atMs: Math.round(at), doneAtMs: Math.round(msSinceZero()), phase: f.phase, action: f.action, result });
        } catch (e) {
          executed.push({ plannedAtMs: f.atMs, atMs: Math.round(at), doneAtMs: Math.round(msSinceZero()), phase: f.phase, action: f.action, result: `error: ${(e as Error).message}` });
        }
      }
    };
    await runFaults();
    const genCode = await genExit;
    phase = 'converging';
    progress('load done; waiting for convergence');
    // whatever the plan left broken is healed now (a run cut short must not leave a site stopped)
    for (const t of resetTimers.splice(0)) t.cancel();
    await mesh.healAll();
    for (const s of siteIds) {
      await mesh.command({ op: 'target-up', links: mesh.linksInto(s) });
      const p = cluster.process(s);
      if (p && p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGCONT');
      else cluster.startSite(s);
    }
    const loadEndMs = msSinceZero();
    const convergedAt = await waitConverged(config.sites.map((s) => s.url), 60_000);
    sampling = false;
    await Promise.all(samplers);
    const statuses = await Promise.all(config.sites.map(async (s) => (await getJson(`${s.url}/v1/status`, 2000)).json as StatusJson));
    const conflicts = await readConflicts(config);
    const routerRetries = await readRouterRetries(`http://${config.router.listen}`);
    phase = 'checking';
    progress('stopping the cluster; reading final states');
    await cluster.stop(10_000);
    await mesh.stop();
    const finals = await readFinalStates(dataDir, siteIds);
    if (genCode !== 0) throw new Error(`the load generator failed (exit ${genCode}): ${genErr.join('').slice(0, 2000)}`);
    // the drill's own writes (bad-delete's seeds, deletes and rewind) are operations of the history
    if (ownOps.length > 0) appendFileSync(historyPath, ownOps.map((r) => `${JSON.stringify(r)}\n`).join(''));
    const history: OpRecord[] = readHistory(historyPath);
    Object.assign(recording, {
      scenario: scenario.name,
      seed: options.seed,
      victim: plan.victim,
      slo: scenario.slo satisfies Slo,
      timeline,
      plannedFaults: faults,
      executedFaults: executed,
      config,
      skippedTables: skipped,
      history,
      finals,
      statuses: statuses.map((s) => ({ site: s.site, vector: s.vector, digests: s.digests })),
      conflicts,
      lag,
      routerSamples,
      routerRetries,
      loadEndMs,
      convergedAfterLoadMs: convergedAt ?? null,
      generator: last ?? { type: 'done', atMs: 0, sent: 0, ok: 0, failed: 0, unknown: 0, shed: 0, inFlight: 0, eventLoopDelayMaxMs: 0, scheduleLagMaxMs: 0, recentDelayMaxMs: 0 },
      powerLoss: options.powerLoss ?? false,
      ...(badDelete ? { badDelete: badDelete.recording } : {}),
      generatorLag,
      cpuPressure,
      meta: {
        tandemVersion: packageVersion(),
        node: process.version,
        cpus: availableParallelism(),
        startedAt: new Date(started).toISOString(),
        replayCommand: options.replayCommand,
      },
    } satisfies Partial<DrillRecording>);
  } finally {
    if (gen && gen.exitCode === null && gen.signalCode === null) gen.kill('SIGKILL');
    await cluster.stop(5_000).catch(() => {});
    await mesh.stop().catch(() => {});
  }
  const rec = recording as DrillRecording;
  writeRecording(reportDir, rec);
  const report = checkDrill(rec);
  writeFileSync(join(reportDir, 'report.json'), `${JSON.stringify(report, null, 2)}\n`);
  writeFileSync(join(reportDir, 'report.html'), renderReportHtml(report));
  return { report, reportDir };
}

/** A power-loss variant of a plan: the victim's peer links stall 1 s before each kill, which becomes a power loss. */
function powerLossVariant(faults: PlannedFault[]): PlannedFault[] {
  const out: PlannedFault[] = [];
  for (const f of faults) {
    if (f.action.kind === 'kill') {
      out.push({ atMs: Math.max(0, f.atMs - 1000), phase: 'fault', action: { kind: 'stall', site: f.action.site } });
      out.push({ atMs: f.atMs, phase: 'fault', action: { kind: 'power-loss', site: f.action.site } });
      out.push({ atMs: f.atMs + 200, phase: 'fault', action: { kind: 'heal-links' } });
    } else out.push(f);
  }
  return out;
}

/**
 * After a SIGKILL: what a power loss leaves of the site's disk. The main database file is as it was
 * (no checkpoints under the knob); the WAL keeps only what its last fdatasync covered; the shared
 * memory index is rebuilt from the WAL at the next open.
 */
function powerLoss(dbPath: string, syncedFile: string): string {
  const wal = `${dbPath}-wal`;
  if (!existsSync(syncedFile)) throw new Error(`no synced WAL size published at ${syncedFile} (was the site started with TANDEM_FAULT_SYNCED_WAL_FILE?)`);
  const synced = Number(readFileSync(syncedFile, 'utf8').trim());
  const size = existsSync(wal) ? statSync(wal).size : 0;
  const keep = Math.min(size, synced);
  if (existsSync(wal)) truncateSync(wal, keep);
  rmSync(`${dbPath}-shm`, { force: true });
  writeFileSync(syncedFile, String(keep).padEnd(20, ' '));
  return `killed; WAL truncated from ${size} to ${keep} bytes (its last fdatasync)`;
}

/**
 * The machine's CPU pressure (Linux PSI, /proc/pressure/cpu: share of the last 10 s in which some
 * runnable task waited for a CPU), or undefined where the kernel does not report it.
 */
function cpuPressureSomeAvg10(): number | undefined {
  try {
    const m = /^some avg10=([\d.]+)/m.exec(readFileSync('/proc/pressure/cpu', 'utf8'));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

async function waitReady(url: string, timeoutMs: number): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (performance.now() < deadline) {
    try {
      if ((await getJson(`${url}/ready`, 500)).status === 200) return;
    } catch {
      // not up yet
    }
    await realTimers.sleep(50);
  }
  throw new Error(`${url} not ready within ${timeoutMs} ms`);
}

/** Waits until every site answers with the same vector and digests; returns ms waited, or undefined. */
async function waitConverged(urls: string[], timeoutMs: number): Promise<number | undefined> {
  const t0 = performance.now();
  while (performance.now() - t0 < timeoutMs) {
    try {
      const sts = await Promise.all(urls.map(async (u) => (await getJson(`${u}/v1/status`, 1000)).json as StatusJson));
      const key = (s: StatusJson) => JSON.stringify([Object.entries(s.vector).sort(), Object.entries(s.digests).sort()]);
      if (sts.every((s) => s && key(s) === key(sts[0]!))) return Math.round(performance.now() - t0);
    } catch {
      // a site still starting
    }
    await realTimers.sleep(100);
  }
  return undefined;
}

async function readConflicts(config: ClusterConfig): Promise<DrillRecording['conflicts']> {
  const out: DrillRecording['conflicts'] = [];
  for (const s of config.sites)
    for (const table of Object.keys(config.tables)) {
      let cursor: string | undefined;
      for (let page = 0; page < 1000; page++) {
        const q = cursor === undefined ? '' : `&cursor=${encodeURIComponent(cursor)}`;
        const { status, json } = await getJson(`${s.url}/v1/tables/${encodeURIComponent(table)}/conflicts?limit=1000${q}`, 5000);
        if (status !== 200) break;
        const body = json as { conflicts: { key: string; reason?: string; loser: { dot: string } }[]; cursor: string | null };
        for (const c of body.conflicts) out.push({ site: s.id, table, key: c.key, reason: c.reason ?? 'concurrent', loserDot: c.loser.dot });
        if (body.conflicts.length === 0 || body.cursor === null || body.cursor === cursor) break;
        cursor = body.cursor;
      }
    }
  return out;
}

async function readRouterRetries(routerUrl: string): Promise<number | null> {
  try {
    const res = await request(`${routerUrl}/_tandem/router/metrics`, { signal: AbortSignal.timeout(2000) });
    const text = await res.body.text();
    let sum = 0;
    for (const line of text.split('\n')) if (line.startsWith('tandem_router_retries_total')) sum += Number(line.split(' ').pop());
    return sum;
  } catch {
    return null;
  }
}

/** Every item (tombstones too) and the GC floor of each site, read through the Store once it stopped. */
async function readFinalStates(dataDir: string, sites: string[]): Promise<DrillRecording['finals']> {
  const out: DrillRecording['finals'] = [];
  for (const site of sites) {
    const path = join(dataDir, site, 'store.db');
    if (!existsSync(path)) continue;
    const store = new SqliteStore({ path, siteId: site, wallMs: realClock.wallMs, conflictEntriesMax: limits.conflictFeedEntriesMax, preallocateWal: false, walAutoCheckpointPages: 0 });
    await store.open();
    try {
      const items: DrillRecording['finals'][number]['items'] = [];
      const tables = Object.keys((await store.digests()) as Record<string, string>);
      for (const table of tables) {
        let after: string | undefined;
        for (;;) {
          const page = await store.scanAll(table, after, 1000);
          for (const r of page) items.push({ table, key: r.key, context: r.state.c, live: r.live, value: (r.value ?? undefined) as Record<string, unknown> | undefined });
          if (page.length < 1000) break;
          after = page[page.length - 1]!.key;
        }
      }
      out.push({ site, gcFloor: store.gcFloor(), items });
    } finally {
      await store.close();
    }
  }
  return out;
}

function writeRecording(dir: string, rec: DrillRecording): void {
  const { history: _h, finals, ...rest } = rec;
  void _h;
  writeFileSync(join(dir, 'recording.json'), `${JSON.stringify(rest, null, 2)}\n`);
  writeFileSync(join(dir, 'final-states.jsonl'), finals.map((f) => JSON.stringify(f)).join('\n') + '\n');
}

/** The recording of a drill directory (for `tandem drill check`). */
export function readRecording(dir: string): DrillRecording {
  const rest = JSON.parse(readFileSync(join(dir, 'recording.json'), 'utf8')) as Omit<DrillRecording, 'history' | 'finals'>;
  const finals = readFileSync(join(dir, 'final-states.jsonl'), 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as DrillRecording['finals'][number]);
  return { ...rest, finals, history: readHistory(join(dir, 'history.jsonl')) };
}

function packageVersion(): string {
  try {
    return (JSON.parse(readFileSync(resolve(here, '../../package.json'), 'utf8')) as { version: string }).version;
  } catch {
    return 'unknown';
  }
}
