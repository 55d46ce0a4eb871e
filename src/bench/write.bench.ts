// Write benchmark (issue 2): durable single-item PUTs over HTTP to a real `tandem site` process,
// against an empty handler on the same HTTP stack (bench/empty-server.ts) measured in the same
// run. Each target runs in its own process; the closed-loop load generator (bench/load.ts) runs
// here. The measured time is split into rounds that alternate the targets (empty, site, then site,
// empty, ...), so a machine that drifts faster or slower during the run weighs on both alike.
// Reports writes/s, p50/p99, the ratio site/empty (overall and per round), CPU used by each
// process and per request, the site's group-commit size and duration from /metrics, and the
// disk's fsync cost.
// `npm run bench -- write [--seconds S] [--rounds N] [--warmup S] [--connections N] [--out FILE]
//   [--data-dir DIR] [--profile-site DIR] [--wait-quiet S] [--keep]`. Bounded: about
// wait-quiet + 2 × (rounds × warmup + seconds) + 20 s. On a shared machine other work skews the
// figures: the bench waits (bounded) for the CPU to be quiet before the first round and reports
// what else ran.
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, createWriteStream, fdatasyncSync, fsyncSync, mkdirSync, mkdtempSync, openSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { cpus } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { childNodeArgs, cliEntry } from '../cluster/local-cluster.js';
import { freePortRange } from '../cluster/ports.js';
import { demoConfig } from '../config/demo.js';
import { realClock, realTimers } from '../platform/real/real-env.js';
import { dataParent, parseBenchFlags, foreignCoresMax, fsTypeOf, machineBusySeconds, ownCpuSeconds, processCpuSeconds, round, waitQuiet } from './machine.js';
import type { Histogram } from 'hdr-histogram-js';
import { latencyMs, newLatencyHistogram, runLoad, type LoadRequest, type LoadResult } from './load.js';

interface WriteBenchArgs {
  /** measured seconds per target, split evenly over the rounds */
  seconds: number;
  rounds: number;
  warmupS: number;
  connections: number;
  out: string;
  /** parent of the temporary data dir; default: the OS temp dir unless it is tmpfs */
  dataDir: string | undefined;
  /** write a V8 CPU profile of the site process into this directory */
  profileSiteDir: string | undefined;
  keep: boolean;
  /** before each target, wait up to this long for other processes to leave the CPU alone */
  waitQuietS: number;
}

interface TargetReport extends LoadResult {
  /**
   * CPU seconds per wall second (1.0 = one core) in the window: the server process, this client
   * process, and everything else on the machine (other work skews the figures; see the warning).
   */
  cpu: { server: number | null; client: number; other: number | null };
}

interface CommitMetrics {
  commits: number;
  meanSize: number | null;
  meanMs: number | null;
}

const table = 'profiles';
const targetWritesPerSecond = 5_000;
const targetRatioToEmpty = 0.3;
/** Above this many cores busy with other work, the machine is not quiet enough to trust a run. */
const usage =
  'write bench: --seconds 1..120, --rounds 1..10, --warmup 0..30, --connections 1..1024, --out FILE, --data-dir DIR, --profile-site DIR, --wait-quiet 0..600, --keep';

function parseArgs(args: string[]): WriteBenchArgs {
  const out: WriteBenchArgs = {
    seconds: 10,
    rounds: 2,
    warmupS: 2,
    connections: 64,
    out: 'bench-results/write.json',
    dataDir: undefined,
    profileSiteDir: undefined,
    keep: false,
    waitQuietS: 30,
  };
  parseBenchFlags(args, usage, () => (out.keep = true), (flag, value, num) => {
    if (flag === '--seconds' && num >= 1 && num <= 120) out.seconds = num;
    else if (flag === '--rounds' && Number.isInteger(num) && num >= 1 && num <= 10) out.rounds = num;
    else if (flag === '--warmup' && num >= 0 && num <= 30) out.warmupS = num;
    else if (flag === '--wait-quiet' && num >= 0 && num <= 600) out.waitQuietS = num;
    else if (flag === '--connections' && Number.isInteger(num) && num >= 1 && num <= 1024) out.connections = num;
    else if (flag === '--out' && value !== undefined) out.out = value;
    else if (flag === '--data-dir' && value !== undefined) out.dataDir = value;
    else if (flag === '--profile-site' && value !== undefined) out.profileSiteDir = resolve(value);
    else return false;
    return true;
  });
  return out;
}

/**
 * A small JSON object of about 100 bytes, different for every write (the write-path bench writes
 * the same items). Every round starts each connection at n = 0 again: the first round writes new
 * items, later rounds overwrite them (new items only past where the first round stopped).
 * Overwrites cost more: the old state is read, and its page rewritten wherever it lies.
 */
export function benchItem(id: string, n: number): { name: string; email: string; n: number; active: boolean; tags: string[] } {
  return { name: `user ${id}`.padEnd(24, '.'), email: `bench-${id}@example.com`.padEnd(32, '.'), n, active: true, tags: ['a', 'b'] };
}

function itemBody(connection: number, n: number): string {
  return JSON.stringify(benchItem(`${connection}-${n}`, n));
}

function writeRequest(connection: number, n: number): LoadRequest {
  return {
    method: 'PUT',
    path: `/v1/tables/${table}/items/${encodeURIComponent(`bench-${connection}-${n}`)}`,
    headers: { 'content-type': 'application/json' },
    body: itemBody(connection, n),
  };
}

/**
 * Runs the load against `url` for `seconds` while sampling the CPU of the server process and of
 * this one; latencies go into `histogram` (pooled over the rounds).
 */
async function measureTarget(
  url: string,
  serverPid: number | undefined,
  args: WriteBenchArgs,
  seconds: number,
  histogram: Histogram,
  onMeasureStart?: () => void,
): Promise<TargetReport> {
  let startCpu: { server: number | undefined; client: number; machine: number | undefined; atMs: number } | undefined;
  const result = await runLoad({
    url,
    connections: args.connections,
    warmupS: args.warmupS,
    durationS: seconds,
    histogram,
    request: writeRequest,
    onMeasureStart: () => {
      startCpu = { server: processCpuSeconds(serverPid), client: ownCpuSeconds(), machine: machineBusySeconds(), atMs: realClock.monotonicMs() };
      onMeasureStart?.();
    },
  });
  const endServer = processCpuSeconds(serverPid);
  const endClient = ownCpuSeconds();
  const endMachine = machineBusySeconds();
  const cores = (from: number | undefined, to: number | undefined): number | null =>
    from === undefined || to === undefined || startCpu === undefined
      ? null
      : round((to - from) / ((realClock.monotonicMs() - startCpu.atMs) / 1000), 2);
  const server = cores(startCpu?.server, endServer);
  const client = cores(startCpu?.client, endClient) ?? 0;
  const machine = cores(startCpu?.machine, endMachine);
  const other = machine === null || server === null ? null : round(Math.max(0, machine - server - client), 2);
  return { ...result, cpu: { server, client, other } };
}

/** One target's rounds as one report: rates over the summed time, CPU averaged over it. */
function pooled(rounds: TargetReport[], histogram: Histogram): TargetReport {
  const sum = (f: (r: TargetReport) => number) => rounds.reduce((acc, r) => acc + f(r), 0);
  const seconds = sum((r) => r.seconds);
  const cores = (f: (r: TargetReport) => number | null): number | null =>
    rounds.some((r) => f(r) === null) ? null : round(sum((r) => f(r)! * r.seconds) / seconds, 2);
  const requests = sum((r) => r.requests);
  const errors = sum((r) => r.errors);
  const non2xx = sum((r) => r.non2xx);
  return {
    requests,
    errors,
    non2xx,
    seconds,
    rps: (requests - errors - non2xx) / seconds,
    ...latencyMs(histogram),
    cpu: { server: cores((r) => r.cpu.server), client: cores((r) => r.cpu.client) ?? 0, other: cores((r) => r.cpu.other) },
  };
}

/**
 * Spawns a process and resolves with the first stdout match of `pattern`. Output goes on to
 * `logPath` (if given); only a bounded tail is kept here, for the error message.
 */
function spawnUntil(command: string, args: string[], pattern: RegExp, timeoutMs: number, logPath?: string): Promise<{ child: ChildProcess; match: RegExpMatchArray }> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const log = logPath === undefined ? undefined : createWriteStream(logPath, { flags: 'a' });
    const tailBytesMax = 4096;
    let out = '';
    let err = '';
    let started = false;
    const timer = realTimers.after(timeoutMs, () => {
      child.kill('SIGKILL');
      reject(new Error(`${args.join(' ')} did not start within ${timeoutMs} ms: ${err}`));
    });
    child.stdout!.on('data', (chunk: Buffer) => {
      log?.write(chunk);
      if (started) return;
      out = (out + chunk.toString()).slice(-tailBytesMax);
      const m = pattern.exec(out);
      if (m) {
        started = true;
        timer.cancel();
        resolvePromise({ child, match: m });
      }
    });
    child.stderr!.on('data', (chunk: Buffer) => {
      log?.write(chunk);
      err = (err + chunk.toString()).slice(-tailBytesMax);
    });
    child.once('exit', (code, signal) => {
      timer.cancel();
      log?.end();
      if (!started) reject(new Error(`${args.join(' ')} exited with ${code ?? signal}: ${err}`));
    });
  });
}

/**
 * One `tandem site` process (the built CLI) on a 1-site demo config and a fresh data dir; with
 * `profileDir`, node writes a V8 CPU profile of it there when it exits.
 */
async function startSiteProcess(work: string, profileDir: string | undefined): Promise<{ child: ChildProcess; url: string; logPath: string }> {
  const basePort = await freePortRange(1);
  const config = demoConfig({ sites: 1, basePort });
  const site = config.sites[0]!;
  const configPath = join(work, 'cluster.json');
  writeFileSync(configPath, JSON.stringify(config, null, 2));
  const logPath = join(work, 'site.log');
  const profile = profileDir === undefined ? [] : ['--cpu-prof', `--cpu-prof-dir=${profileDir}`];
  if (profileDir !== undefined) mkdirSync(profileDir, { recursive: true });
  const { child } = await spawnUntil(
    process.execPath,
    [...childNodeArgs(), ...profile, cliEntry, 'site', '--config', configPath, '--site', site.id, '--data-dir', join(work, 'data')],
    /^site \S+ (http\S+)$/m,
    30_000,
    logPath,
  );
  await waitReady(site.url, 30_000);
  return { child, url: site.url, logPath };
}

async function waitReady(url: string, timeoutMs: number): Promise<void> {
  const deadline = realClock.monotonicMs() + timeoutMs;
  for (;;) {
    try {
      const res = await fetch(`${url}/ready`, { signal: AbortSignal.timeout(1_000) });
      await res.arrayBuffer();
      if (res.ok) return;
    } catch {
      // not listening yet
    }
    if (realClock.monotonicMs() > deadline) throw new Error(`${url} was not ready within ${timeoutMs} ms`);
    await realTimers.sleep(50);
  }
}

async function stopChild(child: ChildProcess, graceMs: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  child.kill('SIGTERM');
  const timer = realTimers.after(graceMs, () => child.kill('SIGKILL'));
  await exited;
  timer.cancel();
}

async function fetchMetrics(url: string): Promise<Map<string, number>> {
  const res = await fetch(`${url}/metrics`, { signal: AbortSignal.timeout(5_000) });
  const text = await res.text();
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line.startsWith('#') || line === '') continue;
    const space = line.lastIndexOf(' ');
    out.set(line.slice(0, space), Number(line.slice(space + 1)));
  }
  return out;
}

const commitSeries = ['tandem_group_commit_size_count', 'tandem_group_commit_size_sum', 'tandem_group_commit_ms_sum', 'tandem_group_commit_ms_count'];

/** Adds what the group-commit series grew by between `before` and `after` into `into`. */
function addCommitDeltas(into: Map<string, number>, before: Map<string, number> | undefined, after: Map<string, number>): void {
  for (const name of commitSeries) into.set(name, (into.get(name) ?? 0) + (after.get(name) ?? 0) - (before?.get(name) ?? 0));
}

function commitMetrics(delta: Map<string, number>): CommitMetrics {
  const commits = delta.get('tandem_group_commit_size_count') ?? 0;
  const msCount = delta.get('tandem_group_commit_ms_count') ?? 0;
  return {
    commits,
    meanSize: commits === 0 ? null : round((delta.get('tandem_group_commit_size_sum') ?? 0) / commits, 1),
    meanMs: msCount === 0 ? null : round((delta.get('tandem_group_commit_ms_sum') ?? 0) / msCount, 3),
  };
}

/** The disk's cost of making an appended page durable, the floor under every group commit. */
function measureFsync(dir: string, iterations = 200): { fsyncMs: number; fdatasyncMs: number } {
  const path = join(dir, 'fsync-probe');
  const page = Buffer.alloc(4096, 7);
  const probe = (sync: (fd: number) => void) => {
    const fd = openSync(path, 'w');
    const samples: number[] = [];
    try {
      for (let i = 0; i < iterations; i++) {
        writeSync(fd, page);
        const t0 = realClock.monotonicMs();
        sync(fd);
        samples.push(realClock.monotonicMs() - t0);
      }
    } finally {
      closeSync(fd);
    }
    samples.sort((a, b) => a - b);
    return round(samples[Math.floor(samples.length / 2)]!, 3);
  };
  const result = { fsyncMs: probe(fsyncSync), fdatasyncMs: probe(fdatasyncSync) };
  rmSync(path, { force: true });
  return result;
}

export async function runWriteBench(argv: string[]): Promise<void> {
  const args = parseArgs(argv);
  const here = dirname(fileURLToPath(import.meta.url));
  const parent = dataParent(args.dataDir);
  const work = mkdtempSync(join(parent, 'tandem-write-bench-'));
  const fsType = fsTypeOf(work) ?? 'unknown';
  const children: ChildProcess[] = [];
  try {
    const roundS = args.seconds / args.rounds;
    process.stderr.write(
      `write bench: data in ${work} (${fsType}); ${args.connections} connections; per target ${args.rounds} rounds of ${args.warmupS} s warm-up + ${round(roundS, 2)} s, alternating\n`,
    );
    if (fsType === 'tmpfs') process.stderr.write('write bench: warning: the data dir is on tmpfs, fsync is free there; pass --data-dir on a disk\n');
    const fsync = measureFsync(work);

    // Both targets up (the one not measured idles), the site on a fresh data dir.
    const empty = await spawnUntil(process.execPath, [join(here, 'empty-server.js'), '--port', '0'], /listening (\d+)/, 15_000);
    children.push(empty.child);
    const emptyUrl = `http://127.0.0.1:${empty.match[1]!}`;
    const site = await startSiteProcess(work, args.profileSiteDir);
    children.push(site.child);
    await waitQuiet(args.waitQuietS, 'write bench');

    const histograms = { site: newLatencyHistogram(), empty: newLatencyHistogram() };
    const rounds: { site: TargetReport[]; empty: TargetReport[] } = { site: [], empty: [] };
    const commitDeltas = new Map<string, number>();
    const measureEmpty = async () => rounds.empty.push(await measureTarget(emptyUrl, empty.child.pid, args, roundS, histograms.empty));
    const measureSite = async () => {
      let metricsBefore: Promise<Map<string, number> | undefined> = Promise.resolve(undefined);
      rounds.site.push(
        await measureTarget(site.url, site.child.pid, args, roundS, histograms.site, () => {
          metricsBefore = fetchMetrics(site.url).catch(() => undefined);
        }),
      );
      addCommitDeltas(commitDeltas, await metricsBefore, await fetchMetrics(site.url));
    };
    for (let r = 0; r < args.rounds; r++) for (const measure of r % 2 === 0 ? [measureEmpty, measureSite] : [measureSite, measureEmpty]) await measure();
    const emptyResult = pooled(rounds.empty, histograms.empty);
    const siteResult = pooled(rounds.site, histograms.site);
    histograms.empty.destroy();
    histograms.site.destroy();
    const roundRatios = rounds.site.map((s, i) => (rounds.empty[i]!.rps === 0 ? 0 : round(s.rps / rounds.empty[i]!.rps, 3)));
    const commits = commitMetrics(commitDeltas);
    await stopChild(empty.child, 5_000);
    await stopChild(site.child, 15_000);
    if (site.child.exitCode !== 0) process.stderr.write(`write bench: the site exited with ${site.child.exitCode ?? site.child.signalCode}; see ${site.logPath} (kept with --keep)\n`);

    const ratio = emptyResult.rps === 0 ? 0 : round(siteResult.rps / emptyResult.rps, 3);
    const passWrites = siteResult.rps >= targetWritesPerSecond;
    const passRatio = ratio >= targetRatioToEmpty;
    // What one request costs each server process in CPU: the ratio's cause, steadier than rates
    // when the client, not the server, is what limits the empty handler.
    const cpuUsPerRequest = (r: TargetReport): number | null => (r.cpu.server === null || r.rps === 0 ? null : round((r.cpu.server / r.rps) * 1e6, 1));
    const cpuPerRequest = { site: cpuUsPerRequest(siteResult), empty: cpuUsPerRequest(emptyResult) };
    const busiest = Math.max(siteResult.cpu.other ?? 0, emptyResult.cpu.other ?? 0);
    const report = {
      bench: 'write',
      at: new Date().toISOString(),
      node: process.version,
      cpus: cpus().length,
      cpuModel: cpus()[0]?.model ?? 'unknown',
      connections: args.connections,
      warmupS: args.warmupS,
      seconds: args.seconds,
      rounds: args.rounds,
      bodyBytes: Buffer.byteLength(itemBody(0, 0)),
      dataDir: work,
      fsType,
      disk: fsync,
      quiet: busiest <= foreignCoresMax,
      site: { ...roundLoad(siteResult), groupCommit: commits },
      empty: roundLoad(emptyResult),
      ratio,
      roundRatios,
      cpuUsPerRequest: cpuPerRequest,
      targets: { writesPerSecondMin: targetWritesPerSecond, ratioToEmptyMin: targetRatioToEmpty },
      pass: { writesPerSecond: passWrites, ratioToEmpty: passRatio, all: passWrites && passRatio },
    };
    mkdirSync(dirname(resolve(args.out)), { recursive: true });
    writeFileSync(args.out, JSON.stringify(report, null, 2) + '\n');

    const row = (name: string, r: TargetReport) =>
      [
        name.padEnd(14),
        Math.round(r.rps).toString().padStart(9),
        r.p50Ms.toFixed(2).padStart(8),
        r.p90Ms.toFixed(2).padStart(8),
        r.p99Ms.toFixed(2).padStart(8),
        r.maxMs.toFixed(1).padStart(8),
        String(r.errors + r.non2xx).padStart(6),
        (r.cpu.server === null ? '-' : r.cpu.server.toFixed(2)).padStart(7),
        r.cpu.client.toFixed(2).padStart(7),
        (r.cpu.other === null ? '-' : r.cpu.other.toFixed(2)).padStart(7),
      ].join(' ');
    const lines = [
      `${'target'.padEnd(14)} ${'writes/s'.padStart(9)} ${'p50 ms'.padStart(8)} ${'p90 ms'.padStart(8)} ${'p99 ms'.padStart(8)} ${'max ms'.padStart(8)} ${'errs'.padStart(6)} ${'srv cpu'.padStart(7)} ${'cli cpu'.padStart(7)} ${'oth cpu'.padStart(7)}`,
      row('tandem site', siteResult),
      row('empty handler', emptyResult),
      '',
      `ratio site/empty        ${ratio.toFixed(3)}   (target >= ${targetRatioToEmpty}: ${passRatio ? 'PASS' : 'FAIL'}; by round ${roundRatios.map((x, i) => `${x.toFixed(3)}${i === 0 ? ' new keys' : ' overwrites'}`).join(', ')})`,
      `durable writes/s        ${Math.round(siteResult.rps)}   (target >= ${targetWritesPerSecond}: ${passWrites ? 'PASS' : 'FAIL'})`,
      `server cpu per request  site ${cpuPerRequest.site ?? '-'} µs, empty handler ${cpuPerRequest.empty ?? '-'} µs`,
      `group commit            ${commits.commits} commits, mean ${commits.meanSize ?? '-'} writes, mean ${commits.meanMs ?? '-'} ms`,
      `disk (median of 200)    fsync ${fsync.fsyncMs} ms, fdatasync ${fsync.fdatasyncMs} ms (${fsType})`,
      `cpu: cores used by the server process, this client process and anything else during the window; ${cpus().length} cores here`,
      ...(busiest > foreignCoresMax ? [`WARNING: other processes used up to ${busiest} cores during the run; the machine was not quiet, run again`] : []),
    ];
    process.stdout.write(`${lines.join('\n')}\n${JSON.stringify(report)}\n`);
    process.stderr.write(`write bench: report written to ${args.out}\n`);
  } finally {
    for (const c of children) await stopChild(c, 2_000);
    if (!args.keep) rmSync(work, { recursive: true, force: true });
    else process.stderr.write(`write bench: kept ${work}\n`);
  }
}

function roundLoad(r: TargetReport): TargetReport {
  return { ...r, rps: Math.round(r.rps), p50Ms: round(r.p50Ms, 3), p90Ms: round(r.p90Ms, 3), p99Ms: round(r.p99Ms, 3), maxMs: round(r.maxMs, 3) };
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  await runWriteBench(process.argv.slice(2));
}
