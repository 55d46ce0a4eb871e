// Backup benchmark (issue 17). Four figures:
//  1. restore to a point in time of a store of `--items` items (default 1,000,000; each a ~130-byte
//     JSON profile, written 100 to a batch in process), with `--log-writes` single-item writes
//     after its snapshot replayed from the log (their count and bytes are reported): seconds,
//     target ≤ 30 s;
//  2. the backup's cost on durable write throughput: a `tandem site` process with backup off and
//     one with backup on (a directory target), measured in alternating rounds in the same run
//     (closed loop, `--connections`), medians of the rounds; target ≤ 10%;
//  3. write p99 while snapshots run back to back (`tandem backup now` in a loop), separately;
//  4. how far the newest restore point trails now under 1,000 writes/s (open loop), sampled every
//     100 ms from /v1/status: median, p99, max.
// `npm run bench -- backup [--items N] [--log-writes N] [--seconds S] [--rounds N] [--connections N]
//   [--data-dir DIR] [--out FILE] [--keep] [--only restore|throughput]`. The machine is shared: figures are
//   noisy; the JSON says what else ran.
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { request } from 'undici';
import { readCatalog } from '../backup/catalog.js';
import { ContinuousBackup, defaultBackupSettings } from '../backup/continuous-backup.js';
import { ObjectEncoder } from '../backup/object-format.js';
import { restoreSite } from '../backup/restore-site.js';
import { FileTarget } from '../backup/targets/file-target.js';
import { childNodeArgs, cliEntry } from '../cluster/local-cluster.js';
import { freePortRange } from '../cluster/ports.js';
import { demoConfig } from '../config/demo.js';
import { parseConfig } from '../config/load.js';
import type { ClusterConfig } from '../config/schema.js';
import { silentLogger, type Env } from '../platform/env.js';
import { realClock, realNextTurn, realRandom, realTimers } from '../platform/real/real-env.js';
import { openRestoredStore } from '../site/restored-store.js';
import { SiteNode, type BatchOp } from '../site/site-node.js';
import { SqliteStore } from '../store/sqlite/sqlite-store.js';
import { dataParent, machineBusySeconds, parseBenchFlags, round } from './machine.js';
import { newLatencyHistogram, runLoad, type LoadRequest, type LoadResult } from './load.js';
import { benchItem } from './write.bench.js';

interface Args {
  items: number;
  logWrites: number;
  seconds: number;
  rounds: number;
  connections: number;
  dataDir: string | undefined;
  out: string;
  keep: boolean;
  only: 'restore' | 'throughput' | undefined;
}

const usage = 'backup bench: --items 1000..5000000, --log-writes 0..1000000, --seconds 1..60, --rounds 1..10, --connections 1..512, --data-dir DIR, --out FILE, --only restore|throughput, --keep';

function parseArgs(argv: string[]): Args {
  const a: Args = { items: 1_000_000, logWrites: 100_000, seconds: 8, rounds: 3, connections: 64, dataDir: undefined, out: 'bench-results/backup.json', keep: false, only: undefined };
  parseBenchFlags(argv, usage, () => (a.keep = true), (flag, value, num) => {
    if (flag === '--items' && Number.isInteger(num) && num >= 1000 && num <= 5_000_000) a.items = num;
    else if (flag === '--log-writes' && Number.isInteger(num) && num >= 0 && num <= 1_000_000) a.logWrites = num;
    else if (flag === '--seconds' && num >= 1 && num <= 60) a.seconds = num;
    else if (flag === '--rounds' && Number.isInteger(num) && num >= 1 && num <= 10) a.rounds = num;
    else if (flag === '--connections' && Number.isInteger(num) && num >= 1 && num <= 512) a.connections = num;
    else if (flag === '--data-dir' && value !== undefined) a.dataDir = value;
    else if (flag === '--out' && value !== undefined) a.out = value;
    else if (flag === '--only' && (value === 'restore' || value === 'throughput')) a.only = value;
    else return false;
    return true;
  });
  return a;
}

const env: Env = { clock: realClock, timers: realTimers, random: realRandom, transport: { request: () => Promise.reject(new Error('no network')) }, log: silentLogger };
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const percentile = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))]!;

/** Part 1: a store of `items` items, a snapshot, `logWrites` writes after it, restored to the end. */
async function restoreBench(work: string, a: Args) {
  const config = demoConfig({ sites: 1, basePort: 17300 });
  const siteId = config.sites[0]!.id;
  const store = new SqliteStore({ path: join(work, 'src', 'store.db'), siteId, wallMs: () => env.clock.wallMs(), conflictEntriesMax: 1000 });
  const node = new SiteNode({ env, config, siteId, store, nextTurn: realNextTurn });
  await node.start();
  const profiles = node.table('profiles');
  const t0 = realClock.monotonicMs();
  const batchItems = 100;
  const inFlight: Promise<unknown>[] = [];
  for (let i = 0; i < a.items; i += batchItems) {
    const ops: BatchOp[] = [];
    for (let j = i; j < Math.min(a.items, i + batchItems); j++) ops.push({ op: 'put', table: 'profiles', key: `user-${j}`, itemOp: { op: 'put', value: benchItem(String(j), j) } });
    inFlight.push(node.batch(ops));
    if (inFlight.length >= 256) await Promise.all(inFlight.splice(0));
  }
  await Promise.all(inFlight.splice(0));
  const loadS = (realClock.monotonicMs() - t0) / 1000;
  const target = new FileTarget(pathToFileURL(join(work, 'target')).href);
  const encoder = new ObjectEncoder();
  const backup = new ContinuousBackup({
    env,
    store,
    origin: () => node.origin,
    target,
    cluster: config.cluster,
    siteId,
    stagingDir: join(work, 'src', 'staging'),
    settings: { ...defaultBackupSettings, snapshotEntriesMax: Number.MAX_SAFE_INTEGER, snapshotFraction: 1e9 },
    encode: (req) => encoder.encode(req),
  });
  backup.run();
  const s0 = realClock.monotonicMs();
  await backup.backupNow();
  const snapshotS = (realClock.monotonicMs() - s0) / 1000;
  // the log to replay: single-item overwrites after the snapshot
  for (let i = 0; i < a.logWrites; i += 256) {
    const writes: Promise<unknown>[] = [];
    for (let j = i; j < Math.min(a.logWrites, i + 256); j++) writes.push(node.write(profiles, `user-${(j * 7919) % a.items}`, { op: 'put', value: benchItem(`w${j}`, j) }));
    await Promise.all(writes);
  }
  const end = await store.boundary();
  for (let i = 0; i < 3000 && backup.status().archivedSeq < (end.vector[node.origin] ?? 0); i++) await realTimers.sleep(20);
  await realTimers.sleep(1_100);
  await backup.stop();
  await encoder.close();
  await node.stop();
  const [timeline] = await readCatalog(target, config.cluster);
  const snapBytes = timeline!.snaps.reduce((n, s) => n + s.size, 0);
  const r0 = realClock.monotonicMs();
  const summary = await restoreSite({
    target,
    keyring: undefined,
    cluster: config.cluster,
    site: siteId,
    toTimeMs: env.clock.wallMs(),
    dataDir: join(work, 'restored'),
    open: (path) => openRestoredStore(config, siteId, path),
    nowMs: () => env.clock.wallMs(),
  });
  const restoreS = (realClock.monotonicMs() - r0) / 1000;
  return {
    items: a.items,
    itemJsonBytes: Buffer.byteLength(JSON.stringify(benchItem('123456', 123456))),
    loadSeconds: round(loadS, 1),
    snapshotSeconds: round(snapshotS, 1),
    snapshotStoredBytes: snapBytes,
    logEntriesReplayed: summary.entriesReplayed,
    logBytesReplayed: summary.bytesReplayed,
    digestsMatch: summary.verified,
    restoreSeconds: round(restoreS, 2),
    targetSeconds: 30,
  };
}

function spawnSite(work: string, name: string, config: ClusterConfig): Promise<ChildProcess> {
  const dir = join(work, name);
  mkdirSync(dir, { recursive: true });
  const configPath = join(dir, 'cluster.json');
  writeFileSync(configPath, JSON.stringify(config, null, 2));
  const log = createWriteStream(join(dir, 'site.log'));
  const child = spawn(process.execPath, [...childNodeArgs(), cliEntry, 'site', '--config', configPath, '--site', config.sites[0]!.id, '--data-dir', join(dir, 'data')], { stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout!.pipe(log);
  child.stderr!.pipe(log);
  return waitReady(config.sites[0]!.url, 30_000).then(() => child);
}

async function waitReady(url: string, timeoutMs: number): Promise<void> {
  const deadline = realClock.monotonicMs() + timeoutMs;
  for (;;) {
    try {
      const res = await request(`${url}/ready`, { headersTimeout: 1_000 });
      await res.body.dump();
      if (res.statusCode === 200) return;
    } catch {
      // not up yet
    }
    if (realClock.monotonicMs() > deadline) throw new Error(`${url} not ready within ${timeoutMs} ms`);
    await realTimers.sleep(50);
  }
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  child.kill('SIGTERM');
  const t = realTimers.after(10_000, () => child.kill('SIGKILL'));
  await exited;
  t.cancel();
}

function siteConfig(basePort: number, backupTarget: string | undefined): ClusterConfig {
  const base = demoConfig({ sites: 1, basePort });
  return parseConfig({ ...JSON.parse(JSON.stringify(base)), ...(backupTarget ? { backup: { target: backupTarget, snapshotEvery: '1h' } } : {}) }, 'bench config');
}

let writeCounter = 0;
function writeRequest(connection: number, n: number): LoadRequest {
  const id = `${connection}-${n}-${writeCounter++}`;
  return { method: 'PUT', path: `/v1/tables/profiles/items/bench-${id}`, headers: { 'content-type': 'application/json' }, body: JSON.stringify(benchItem(id, n)) };
}

async function load(url: string, a: Args, seconds: number): Promise<LoadResult> {
  const histogram = newLatencyHistogram();
  try {
    return await runLoad({ url, connections: a.connections, warmupS: 1, durationS: seconds, request: writeRequest, histogram });
  } finally {
    histogram.destroy();
  }
}

/** Parts 2–4 against site processes. */
async function throughputBench(work: string, a: Args) {
  const offPort = await freePortRange(1);
  const onPort = await freePortRange(1);
  const off = await spawnSite(work, 'off', siteConfig(offPort, undefined));
  const on = await spawnSite(work, 'on', siteConfig(onPort, pathToFileURL(join(work, 'on-target')).href));
  const offUrl = `http://127.0.0.1:${offPort + 1}`;
  const onUrl = `http://127.0.0.1:${onPort + 1}`;
  try {
    const rounds: { off: LoadResult; on: LoadResult }[] = [];
    for (let r = 0; r < a.rounds; r++) {
      // alternate the order, so drift of the machine weighs on both alike
      const first = r % 2 === 0 ? offUrl : onUrl;
      const x = await load(first, a, a.seconds);
      const y = await load(first === offUrl ? onUrl : offUrl, a, a.seconds);
      rounds.push(first === offUrl ? { off: x, on: y } : { off: y, on: x });
    }
    const offRps = median(rounds.map((r) => r.off.rps));
    const onRps = median(rounds.map((r) => r.on.rps));
    // part 3: snapshots back to back while writes run
    let snapshots = 0;
    let snapping = true;
    const snapLoop = (async () => {
      while (snapping) {
        const res = await request(`${onUrl}/v1/backup/now`, { method: 'POST', headersTimeout: 120_000, bodyTimeout: 120_000 });
        await res.body.dump();
        snapshots++;
      }
    })();
    const during = await load(onUrl, a, a.seconds);
    snapping = false;
    await snapLoop;
    // part 4: open loop at 1,000 writes/s, sampling the restore point's age
    const trail = await trailBench(onUrl, Math.max(5, a.seconds));
    const status = (await (await request(`${onUrl}/v1/status`)).body.json()) as { backup?: { errors: number; snapshots: number; segments: number } };
    return {
      connections: a.connections,
      rounds: rounds.map((r) => ({ offRps: Math.round(r.off.rps), onRps: Math.round(r.on.rps), costPercent: round(100 * (1 - r.on.rps / r.off.rps), 1), offP99Ms: r.off.p99Ms, onP99Ms: r.on.p99Ms })),
      medianOffRps: Math.round(offRps),
      medianOnRps: Math.round(onRps),
      // each round pairs back-to-back runs of both, so drift of a shared machine weighs on both alike
      costPercent: round(median(rounds.map((r) => 100 * (1 - r.on.rps / r.off.rps))), 1),
      costPercentOfMedians: round(100 * (1 - onRps / offRps), 1),
      targetCostPercentMax: 10,
      p99MsBackupOff: median(rounds.map((r) => r.off.p99Ms)),
      p99MsBackupOn: median(rounds.map((r) => r.on.p99Ms)),
      duringSnapshots: { snapshots, rps: Math.round(during.rps), p99Ms: during.p99Ms, maxMs: during.maxMs },
      restorablePointTrail: trail,
      backupStatus: status.backup ?? null,
    };
  } finally {
    await stop(off);
    await stop(on);
  }
}

async function trailBench(url: string, seconds: number) {
  const ratePerS = 1000;
  const started = realClock.monotonicMs();
  const samples: number[] = [];
  let sent = 0;
  let failedWrites = 0;
  let running = true;
  const sampler = (async () => {
    while (running) {
      await realTimers.sleep(100);
      const res = await request(`${url}/v1/status`);
      const body = (await res.body.json()) as { backup?: { newestRestorableAtMs: number } };
      const at = body.backup?.newestRestorableAtMs ?? 0;
      if (at > 0 && realClock.monotonicMs() - started > 1_500) samples.push(env.clock.wallMs() - at);
    }
  })();
  const inflight = new Set<Promise<void>>();
  while (realClock.monotonicMs() - started < seconds * 1000) {
    const due = Math.floor(((realClock.monotonicMs() - started) / 1000) * ratePerS);
    while (sent < due && inflight.size < 256) {
      const id = `trail-${sent++}`;
      const p: Promise<void> = request(`${url}/v1/tables/profiles/items/${id}`, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify(benchItem(id, sent)) })
        .then(async (res) => {
          await res.body.dump();
          if (res.statusCode !== 200) failedWrites++;
        })
        .catch(() => {
          failedWrites++;
        })
        .finally(() => inflight.delete(p));
      inflight.add(p);
    }
    await realTimers.sleep(5);
  }
  await Promise.all(inflight);
  running = false;
  await sampler;
  return { writesPerS: Math.round(sent / seconds), failedWrites, samples: samples.length, medianMs: samples.length ? median(samples) : null, p99Ms: samples.length ? percentile(samples, 99) : null, maxMs: samples.length ? Math.max(...samples) : null };
}

export async function runBackupBench(argv: string[]): Promise<void> {
  const a = parseArgs(argv);
  const work = mkdtempSync(join(dataParent(a.dataDir), 'tandem-bench-backup-'));
  const busy0 = machineBusySeconds();
  const t0 = realClock.monotonicMs();
  try {
    const throughput = a.only === 'restore' ? null : await throughputBench(work, a);
    if (throughput) process.stdout.write(`${JSON.stringify({ throughput }, null, 2)}\n`);
    const restore = a.only === 'throughput' ? null : await restoreBench(work, a);
    const busy1 = machineBusySeconds();
    const wallS = (realClock.monotonicMs() - t0) / 1000;
    const report = {
      bench: 'backup',
      at: new Date(env.clock.wallMs()).toISOString(),
      restore,
      throughput,
      machineBusyCores: busy0 === undefined || busy1 === undefined ? null : round((busy1 - busy0) / wallS, 2),
      note: 'shared machine: other work may skew every figure; compare medians of several runs',
    };
    mkdirSync(dirname(a.out), { recursive: true });
    writeFileSync(a.out, JSON.stringify(report, null, 2));
    process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
  } finally {
    if (!a.keep) rmSync(work, { recursive: true, force: true });
  }
}
