// Replication benchmark (issue 3), on real `tandem site` processes (the built CLI in dist/).
//
// Part 1, lag: three sites, an open-loop writer issuing `--rate` single-item PUTs per second in
// total (scheduled by time, round-robin over the sites, bounded in-flight per site; writes that
// cannot be issued on time are counted, not queued), unique keys, ~100-byte bodies, after a 5 s
// warm-up (the JIT is still compiling before). Lag is measured two ways:
// - at apply (judged against the target, p99 <= 50 ms): every site observes, as it applies a peer's
//   entry, the time from the write's hlc (taken at the origin before its commit, fsync and ack) to
//   visible here, into the histogram tandem_replication_visible_lag_ms; the bench diffs the scrapes
//   of /metrics before and after the window. Nothing polls, so the measurement adds no load; it
//   counts from before the ack, so it is an upper bound of ack -> visible (one clock on one machine).
// - polled (a cross-check from outside): each ack's dot `<origin>:<seq>` is recorded with its ack
//   time; one poller per site GETs /v1/status (every --poll-gap-ms, 10 by default) and the first
//   status whose vector covers the dot makes the write visible there. Lag = visible − ack per
//   (write, peer); it adds up to one poll gap and round trip (reported).
//
// Part 2, heal: a fresh three-site cluster whose peer traffic all goes through link proxies, warmed
// up by `--heal-warmup` (5) s of connected writes with conflicts, as a live cluster would be. One
// site is isolated for `--partition-seconds` while `--partition-writes` writes land on both sides
// (`--shared-keys` keys written on both sides, so conflicts arise); then every link heals and the
// time until all sites show identical `digests` and `vector` in /v1/status is measured (polled
// every ~20 ms). Target: <= 2 s. Conflicts recorded by all sites are counted from the feed.
//
// `npm run bench -- replication [--only lag|heal] [--rate N] [--warmup S] [--seconds S]
//   [--poll-gap-ms MS] [--partition-seconds S] [--heal-warmup S] [--partition-writes N] [--shared-keys N]
//   [--out FILE] [--data-dir DIR] [--wait-quiet S] [--keep]`, or `node dist/bench/replication.bench.js …`.
// Bounded: per part up to --wait-quiet (10 s) for other work to leave the CPU, ~5 s of start-up;
// then warmup + seconds + ≤ 5 s drain, and partition + ≤ 20 s heal watch (≈ 70 s typical, under
// 2.5 min at worst with the defaults). The CPU used by the sites, this process and anything else
// is reported: on a shared or small machine the figures measure contention as much as Tandem. Prints a table, a JSON line, writes bench-results/replication.json,
// PASS/FAIL against the targets; it is a measurement, so it exits 0 either way.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import * as hdr from 'hdr-histogram-js';
import { Client, Pool } from 'undici';
import { LocalCluster } from '../cluster/local-cluster.js';
import { freePortRange } from '../cluster/ports.js';
import { demoConfig } from '../config/demo.js';
import type { ClusterConfig } from '../config/schema.js';
import { LinkMesh } from '../drill/link-proxy.js';
import { realClock, realTimers } from '../platform/real/real-env.js';
import { BenchUsageError, dataParent, parseBenchFlags, foreignCoresMax, fsTypeOf, machineBusySeconds, ownCpuSeconds, processCpuSeconds, round, waitQuiet } from './machine.js';

// ---------- arguments ----------

interface ReplicationBenchArgs {
  only: 'all' | 'lag' | 'heal';
  rate: number;
  warmupS: number;
  seconds: number;
  /** pause between a poller's status requests; 0 = back-to-back */
  pollGapMs: number;
  partitionS: number;
  /** connected traffic (with conflicts) before the partition, so the cluster runs warm like a live one */
  healWarmupS: number;
  partitionWrites: number;
  sharedKeys: number;
  out: string;
  dataDir: string | undefined;
  keep: boolean;
  /** before each part, wait up to this long for other processes to leave the CPU alone */
  waitQuietS: number;
}

const usage =
  'replication bench: --only lag|heal, --rate 1..5000, --warmup 0..30, --seconds 1..60, --poll-gap-ms 0..1000, ' +
  '--partition-seconds 1..60, --heal-warmup 0..60, --partition-writes 0..50000, --shared-keys 0..25000, --out FILE, --data-dir DIR, --wait-quiet 0..60, --keep';

function parseArgs(args: string[]): ReplicationBenchArgs | undefined {
  if (args.includes('--help') || args.includes('-h')) return undefined;
  const out: ReplicationBenchArgs = {
    only: 'all',
    rate: 1_000,
    warmupS: 5,
    seconds: 20,
    pollGapMs: 10,
    partitionS: 30,
    healWarmupS: 5,
    partitionWrites: 10_000,
    sharedKeys: 2_000,
    out: 'bench-results/replication.json',
    dataDir: undefined,
    keep: false,
    waitQuietS: 10,
  };
  parseBenchFlags(args, usage, () => (out.keep = true), (flag, value, num) => {
    const int = Number.isInteger(num);
    if (flag === '--only' && (value === 'lag' || value === 'heal' || value === 'all')) out.only = value;
    else if (flag === '--rate' && int && num >= 1 && num <= 5_000) out.rate = num;
    else if (flag === '--warmup' && num >= 0 && num <= 30) out.warmupS = num;
    else if (flag === '--seconds' && num >= 1 && num <= 60) out.seconds = num;
    else if (flag === '--poll-gap-ms' && num >= 0 && num <= 1_000) out.pollGapMs = num;
    else if (flag === '--partition-seconds' && num >= 1 && num <= 60) out.partitionS = num;
    else if (flag === '--heal-warmup' && num >= 0 && num <= 60) out.healWarmupS = num;
    else if (flag === '--partition-writes' && int && num >= 0 && num <= 50_000) out.partitionWrites = num;
    else if (flag === '--shared-keys' && int && num >= 0 && num <= 25_000) out.sharedKeys = num;
    else if (flag === '--out' && value !== undefined) out.out = value;
    else if (flag === '--data-dir' && value !== undefined) out.dataDir = value;
    else if (flag === '--wait-quiet' && num >= 0 && num <= 60) out.waitQuietS = num;
    else return false;
    return true;
  });
  if (out.sharedKeys * 2 > out.partitionWrites) throw new BenchUsageError(`bad flag --shared-keys ${out.sharedKeys}: at most half of --partition-writes\n${usage}`);
  return out;
}

// ---------- targets and bounds ----------

const table = 'profiles';
const lagP99TargetMs = 50;
const healTargetMs = 2_000;
/** Writes in flight per site beyond which a due write is not issued (counted as skipped). */
const inflightPerSiteMax = 64;
/** A write issued this much after its scheduled time counts as late. */
const lateAfterMs = 5;
const requestTimeoutMs = 10_000;
/** After the last write, how long visibility is awaited before the rest count as never visible. */
const drainMs = 5_000;
const healTimeoutMs = 20_000;
const healPollMs = 20;
/** After convergence, how long to go on watching for links that have not reconnected yet. */
const linkWaitAfterHealMs = 8_000;
/** Above this many cores busy with other work during a part, its figures are flagged. */
const conflictPagesMax = 500;
const latencyUsMax = 60_000_000;

// ---------- small helpers ----------

const now = (): number => realClock.monotonicMs();
const sleep = (ms: number): Promise<void> => realTimers.sleep(ms);

function newHistogram(): hdr.Histogram {
  return hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: latencyUsMax, numberOfSignificantValueDigits: 3, autoResize: false });
}

function recordMs(h: hdr.Histogram, ms: number): void {
  h.recordValue(Math.min(latencyUsMax, Math.max(1, Math.round(ms * 1000))));
}

interface Quantiles {
  count: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  maxMs: number;
  meanMs: number;
}

function quantiles(h: hdr.Histogram): Quantiles {
  const ms = (p: number) => round(h.getValueAtPercentile(p) / 1000, 3);
  return {
    count: h.totalCount,
    p50Ms: ms(50),
    p90Ms: ms(90),
    p99Ms: ms(99),
    maxMs: round(h.maxValue / 1000, 3),
    meanMs: round(h.totalCount === 0 ? 0 : h.mean / 1000, 3),
  };
}

/** JSON with object keys sorted at every level: equal content, equal text. */
function sortedJson(v: unknown): string {
  if (v === null || typeof v !== 'object') return JSON.stringify(v);
  if (Array.isArray(v)) return `[${v.map(sortedJson).join(',')}]`;
  const o = v as Record<string, unknown>;
  return `{${Object.keys(o)
    .sort()
    .map((k) => `${JSON.stringify(k)}:${sortedJson(o[k])}`)
    .join(',')}}`;
}

interface CpuSample {
  atMs: number;
  sites: Record<string, number | undefined>;
  bench: number;
  machine: number | undefined;
}

function sampleCpu(cluster: LocalCluster): CpuSample {
  const sites: Record<string, number | undefined> = {};
  for (const s of cluster.config.sites) sites[s.id] = processCpuSeconds(cluster.process(s.id)?.child.pid);
  return { atMs: now(), sites, bench: ownCpuSeconds(), machine: machineBusySeconds() };
}

/** Cores used (1.0 = one core) between two samples: each site, this process, everything else. */
function cpuBetween(a: CpuSample, b: CpuSample): { sites: Record<string, number | null>; bench: number; other: number | null } {
  const secs = (b.atMs - a.atMs) / 1000;
  const sites: Record<string, number | null> = {};
  let siteSum = 0;
  for (const id of Object.keys(a.sites)) {
    const x = a.sites[id];
    const y = b.sites[id];
    sites[id] = x === undefined || y === undefined ? null : round((y - x) / secs, 2);
    siteSum += sites[id] ?? 0;
  }
  const bench = round((b.bench - a.bench) / secs, 2);
  const other = a.machine === undefined || b.machine === undefined ? null : round(Math.max(0, (b.machine - a.machine) / secs - siteSum - bench), 2);
  return { sites, bench, other };
}

// ---------- HTTP ----------

interface StatusBody {
  site: string;
  origin: string;
  vector: Record<string, number>;
  peers: Record<string, { connected: boolean; lagEntries: number; lagMs: number; connectedSinceMs?: number }>;
  digests: Record<string, string>;
}

interface WriteAck {
  key: string;
  version: string;
  dot: string;
  origin: string;
}

/** The dot `<origin>:<seq>`, split at its last ':' (origins are `<siteId>.<incarnation>`). */
function parseDot(dot: string): { origin: string; seq: number } | undefined {
  const i = dot.lastIndexOf(':');
  if (i <= 0) return undefined;
  const seq = Number(dot.slice(i + 1));
  return Number.isSafeInteger(seq) && seq > 0 ? { origin: dot.slice(0, i), seq } : undefined;
}

/** A small JSON object of about 100 bytes, different for every write. */
function itemBody(tag: string, n: number): string {
  return JSON.stringify({ name: `user ${tag}-${n}`.padEnd(24, '.'), email: `repl-${tag}-${n}@example.com`.padEnd(32, '.'), n, active: true });
}

type PutResult = { ok: true; ack: WriteAck } | { ok: false; status: number };

/** One PUT; status 0 is a transport failure or timeout. */
async function put(pool: Pool, key: string, body: string): Promise<PutResult> {
  try {
    const res = await pool.request({
      method: 'PUT',
      path: `/v1/tables/${table}/items/${encodeURIComponent(key)}`,
      headers: { 'content-type': 'application/json' },
      body,
      headersTimeout: requestTimeoutMs,
      bodyTimeout: requestTimeoutMs,
    });
    if (res.statusCode !== 200) {
      await res.body.dump();
      return { ok: false, status: res.statusCode };
    }
    return { ok: true, ack: (await res.body.json()) as WriteAck };
  } catch {
    return { ok: false, status: 0 };
  }
}

async function getJson<T>(dispatcher: Pool | Client, path: string, timeoutMs = 5_000): Promise<T> {
  const res = await dispatcher.request({ method: 'GET', path, headersTimeout: timeoutMs, bodyTimeout: timeoutMs });
  if (res.statusCode !== 200) {
    const text = await res.body.text();
    throw new Error(`GET ${path}: ${res.statusCode} ${text.slice(0, 200)}`);
  }
  return (await res.body.json()) as T;
}

/** A site's Prometheus text as a map from `name{labels}` to value. */
async function fetchMetrics(pool: Pool): Promise<Map<string, number>> {
  const res = await pool.request({ method: 'GET', path: '/metrics', headersTimeout: 5_000, bodyTimeout: 5_000 });
  const text = await res.body.text();
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line.startsWith('#') || line === '') continue;
    const space = line.lastIndexOf(' ');
    out.set(line.slice(0, space), Number(line.slice(space + 1)));
  }
  return out;
}

/**
 * The sites' own lag histograms (tandem_replication_visible_lag_ms: origin write → applied and
 * visible at the peer, observed by the peer as it applies, no polling) between two scrapes,
 * summed over every site and origin: quantiles by linear interpolation within a bucket, and the
 * exact share of entries within the target (the target is a bucket bound).
 */
interface ApplyLag {
  count: number;
  p50Ms: number | null;
  p90Ms: number | null;
  p99Ms: number | null;
  /** upper bound of the highest non-empty bucket */
  maxAtMostMs: number | null;
  withinTarget: number | null;
}

function applyLag(before: (Map<string, number> | undefined)[], after: (Map<string, number> | undefined)[], targetMs: number): ApplyLag {
  const byLe = new Map<number, number>();
  after.forEach((a, i) => {
    const b = before[i];
    if (!a || !b) return;
    for (const [name, v] of a) {
      if (!name.startsWith('tandem_replication_visible_lag_ms_bucket{')) continue;
      const le = /le="([^"]*)"/.exec(name)?.[1];
      if (le === undefined) continue;
      const bound = le === '+Inf' ? Infinity : Number(le);
      byLe.set(bound, (byLe.get(bound) ?? 0) + v - (b.get(name) ?? 0));
    }
  });
  const cum = [...byLe].sort(([x], [y]) => x - y);
  const count = cum.length > 0 ? cum[cum.length - 1]![1] : 0;
  if (count <= 0) return { count: 0, p50Ms: null, p90Ms: null, p99Ms: null, maxAtMostMs: null, withinTarget: null };
  const q = (p: number) => {
    const want = p * count;
    let prevLe = 0;
    let prevCum = 0;
    for (const [le, c] of cum) {
      if (c >= want) {
        if (!Number.isFinite(le)) return prevLe;
        return round(prevLe + ((le - prevLe) * (want - prevCum)) / Math.max(1, c - prevCum), 2);
      }
      prevLe = le;
      prevCum = c;
    }
    return prevLe;
  };
  let maxAtMostMs = 0;
  let prev = 0;
  for (const [le, c] of cum) {
    if (c > prev) maxAtMostMs = le;
    prev = c;
  }
  const atTarget = cum.find(([le]) => le === targetMs)?.[1];
  return {
    count,
    p50Ms: q(0.5),
    p90Ms: q(0.9),
    p99Ms: q(0.99),
    maxAtMostMs,
    withinTarget: atTarget === undefined ? null : round(atTarget / count, 4),
  };
}

interface SiteActivity {
  /** group commits per second, their mean size (requests) and duration (ms, fsync included) */
  commitsPerSecond: number;
  commitMeanSize: number | null;
  commitMeanMs: number | null;
  /** HTTP requests per second served, by route */
  requestsPerSecond: Record<string, number>;
}

function siteActivity(before: Map<string, number>, after: Map<string, number>, seconds: number): SiteActivity {
  const delta = (name: string) => (after.get(name) ?? 0) - (before.get(name) ?? 0);
  const commits = delta('tandem_group_commit_size_count');
  const byRoute: Record<string, number> = {};
  for (const name of after.keys()) {
    if (!name.startsWith('tandem_http_requests_total{')) continue;
    const route = /route="([^"]*)"/.exec(name)?.[1] ?? '?';
    const method = /method="([^"]*)"/.exec(name)?.[1] ?? '?';
    const k = `${method} ${route}`;
    byRoute[k] = (byRoute[k] ?? 0) + delta(name);
  }
  const requestsPerSecond: Record<string, number> = {};
  for (const [k, v] of Object.entries(byRoute)) if (v > 0) requestsPerSecond[k] = round(v / seconds, 0);
  return {
    commitsPerSecond: round(commits / seconds, 0),
    commitMeanSize: commits === 0 ? null : round(delta('tandem_group_commit_size_sum') / commits, 1),
    commitMeanMs: commits === 0 ? null : round(delta('tandem_group_commit_ms_sum') / delta('tandem_group_commit_ms_count'), 2),
    requestsPerSecond,
  };
}

// ---------- open-loop scheduling ----------

interface OpenLoopStats {
  scheduled: number;
  issued: number;
  /** due but not issued: the in-flight bound was reached */
  skipped: number;
  /** issued more than `lateAfterMs` after their scheduled time */
  late: number;
  issueDelay: hdr.Histogram;
}

/**
 * Issues `count` operations at `rate` per second, by the clock (open loop): operation i is due at
 * start + i / rate; each timer tick issues every operation that has come due since the last one.
 * `issue(i)` returns false when it cannot issue now (bound reached): that operation is skipped.
 */
async function openLoop(rate: number, count: number, issue: (i: number, scheduledMs: number) => boolean, stats: OpenLoopStats): Promise<void> {
  const start = now();
  const intervalMs = 1000 / rate;
  let next = 0;
  while (next < count) {
    const t = now();
    const due = Math.min(count, Math.floor((t - start) / intervalMs) + 1);
    for (; next < due; next++) {
      const scheduledMs = start + next * intervalMs;
      stats.scheduled += 1;
      if (!issue(next, scheduledMs)) {
        stats.skipped += 1;
        continue;
      }
      stats.issued += 1;
      const delay = now() - scheduledMs;
      recordMs(stats.issueDelay, delay);
      if (delay > lateAfterMs) stats.late += 1;
    }
    if (next >= count) break;
    // Node timers fire ≥ 1 ms apart; operations that came due meanwhile go out on the next tick.
    await sleep(1);
  }
}

// ---------- clusters ----------

interface StartedCluster {
  cluster: LocalCluster;
  config: ClusterConfig;
  mesh: LinkMesh | undefined;
  pools: Pool[];
  dataDir: string;
}

/** Starts a fresh cluster; once more on failure (free ports are probed, then taken: a small race). */
async function startCluster(parent: string, name: string, withProxies: boolean): Promise<StartedCluster> {
  try {
    return await startClusterOnce(parent, name, withProxies);
  } catch (error) {
    process.stderr.write(`replication bench: cluster start failed (${(error as Error).message}); retrying once\n`);
    return startClusterOnce(parent, name, withProxies);
  }
}

async function startClusterOnce(parent: string, name: string, withProxies: boolean): Promise<StartedCluster> {
  const basePort = await freePortRange(3);
  const config = demoConfig({ sites: 3, basePort });
  const dataDir = mkdtempSync(join(parent, `tandem-repl-bench-${name}-`));
  const mesh = withProxies ? await LinkMesh.create(config.sites) : undefined;
  // The proxies listen on ephemeral ports, which may land on a site's port: then start over.
  const sitePorts = new Set(config.sites.map((s) => Number(new URL(s.url).port)));
  if (mesh && [...mesh.links.values()].some((l) => sitePorts.has(l.port))) {
    await mesh.stop();
    rmSync(dataDir, { recursive: true, force: true });
    throw new Error('a link proxy took a site port');
  }
  const cluster = new LocalCluster({
    config,
    dataDir,
    withRouter: false,
    env: { TANDEM_LOG_LEVEL: process.env['TANDEM_LOG_LEVEL'] ?? 'warn' },
    ...(mesh ? { siteEnv: (id: string) => ({ TANDEM_PEER_URLS: JSON.stringify(mesh.peerUrlsFor(id)) }) } : {}),
  });
  try {
    await cluster.start(30_000);
  } catch (error) {
    await cluster.stop(2_000);
    await mesh?.stop();
    rmSync(dataDir, { recursive: true, force: true });
    throw error;
  }
  const pools = config.sites.map(
    (s) => new Pool(s.url, { connections: inflightPerSiteMax, pipelining: 1, keepAliveTimeout: 60_000, headersTimeout: requestTimeoutMs, bodyTimeout: requestTimeoutMs }),
  );
  return { cluster, config, mesh, pools, dataDir };
}

async function stopCluster(c: StartedCluster): Promise<void> {
  await Promise.all(c.pools.map((p) => p.close().catch(() => undefined)));
  await c.cluster.stop(10_000);
  await c.mesh?.stop();
}

/** Waits (bounded) until every site reports every peer link connected; returns whether it did. */
/** Every site's /v1/status, in site order; undefined for a site that did not answer. */
function siteStatuses(c: StartedCluster, timeoutMs = 5_000): Promise<(StatusBody | undefined)[]> {
  return Promise.all(c.pools.map((p) => getJson<StatusBody>(p, '/v1/status', timeoutMs).catch(() => undefined)));
}

async function waitLinksConnected(c: StartedCluster, timeoutMs: number): Promise<boolean> {
  const deadline = now() + timeoutMs;
  while (now() < deadline) {
    const statuses = await siteStatuses(c);
    if (statuses.every((s) => s !== undefined && Object.keys(s.peers).length === c.config.sites.length - 1 && Object.values(s.peers).every((l) => l.connected)))
      return true;
    await sleep(50);
  }
  return false;
}

// ---------- part 1: lag ----------

interface LagReport {
  rateTarget: number;
  warmupS: number;
  seconds: number;
  pollGapMs: number;
  writes: {
    scheduled: number;
    issued: number;
    acked: number;
    errors: number;
    non2xx: number;
    skipped: number;
    late: number;
    issueDelayP99Ms: number;
  };
  achievedWritesPerSecond: number;
  ackLatency: Quantiles;
  lag: Quantiles & { pairs: number; visibleBeforeAck: number; neverVisible: number };
  lagByLink: Record<string, Quantiles>;
  /** the sites' own measurement (no polling), the one judged against the target */
  applyLag: ApplyLag;
  poll: { polls: number; errors: number; rttP50Ms: number; rttP99Ms: number; pollsPerSecondPerSite: number };
  cpu: ReturnType<typeof cpuBetween> | undefined;
  sites: Record<string, SiteActivity>;
  pass: boolean;
}

interface TrackedWrite {
  site: number;
  ackMs: number;
  measured: boolean;
}

async function runLag(c: StartedCluster, args: ReplicationBenchArgs): Promise<LagReport> {
  const sites = c.config.sites.map((s) => s.id);
  const n = sites.length;
  await waitLinksConnected(c, 10_000);

  const lag = newHistogram();
  const ackLatency = newHistogram();
  const pollRtt = newHistogram();
  const byLink = new Map<string, hdr.Histogram>();
  const linkHist = (from: number, to: number) => {
    const name = `${sites[from]}->${sites[to]}`;
    let h = byLink.get(name);
    if (!h) byLink.set(name, (h = newHistogram()));
    return h;
  };
  // Per poller site: the highest seq seen per origin, the (time, seq) steps of that, and the
  // measured writes of each origin that it has not seen yet.
  const seen = sites.map(() => new Map<string, number>());
  const steps = sites.map(() => new Map<string, { t: number[]; seq: number[] }>());
  const pending = sites.map(() => new Map<string, Map<number, TrackedWrite>>());
  let pairs = 0;
  let visibleBeforeAck = 0;
  let measuring = false;
  let pollingUntilMs = Infinity;

  const recordVisible = (w: TrackedWrite, peer: number, visibleMs: number) => {
    let d = visibleMs - w.ackMs;
    if (d < 0) {
      visibleBeforeAck += 1;
      d = 0;
    }
    pairs += 1;
    recordMs(lag, d);
    recordMs(linkHist(w.site, peer), d);
  };

  const onStatus = (peer: number, status: StatusBody, atMs: number) => {
    for (const [origin, seq] of Object.entries(status.vector)) {
      const before = seen[peer]!.get(origin) ?? 0;
      if (seq <= before) continue;
      seen[peer]!.set(origin, seq);
      let st = steps[peer]!.get(origin);
      if (!st) steps[peer]!.set(origin, (st = { t: [], seq: [] }));
      st.t.push(atMs);
      st.seq.push(seq);
      const waiting = pending[peer]!.get(origin);
      if (!waiting) continue;
      for (const [s, w] of waiting)
        if (s <= seq) {
          waiting.delete(s);
          recordVisible(w, peer, atMs);
        }
    }
  };

  const onAck = (site: number, ack: WriteAck, w: TrackedWrite) => {
    const dot = parseDot(ack.dot);
    if (!dot || !w.measured) return;
    for (let peer = 0; peer < n; peer++) {
      if (peer === site) continue;
      if ((seen[peer]!.get(dot.origin) ?? 0) >= dot.seq) {
        // Already visible there before the ack reached us: the first status that covered it.
        const st = steps[peer]!.get(dot.origin)!;
        let lo = 0;
        let hi = st.seq.length - 1;
        while (lo < hi) {
          const mid = (lo + hi) >> 1;
          if (st.seq[mid]! >= dot.seq) hi = mid;
          else lo = mid + 1;
        }
        recordVisible(w, peer, st.t[lo]!);
        continue;
      }
      let waiting = pending[peer]!.get(dot.origin);
      if (!waiting) pending[peer]!.set(dot.origin, (waiting = new Map()));
      waiting.set(dot.seq, w);
    }
  };

  // Pollers: one keep-alive connection each, one request in flight, back-to-back by default.
  const pollClients = c.config.sites.map((s) => new Client(s.url, { keepAliveTimeout: 60_000, pipelining: 1 }));
  let polls = 0;
  let pollErrors = 0;
  let measuredPolls = 0;
  const poller = async (i: number) => {
    while (now() < pollingUntilMs) {
      const t0 = now();
      try {
        const status = await getJson<StatusBody>(pollClients[i]!, '/v1/status');
        const t1 = now();
        polls += 1;
        if (measuring) {
          measuredPolls += 1;
          recordMs(pollRtt, t1 - t0);
        }
        onStatus(i, status, t1);
      } catch {
        pollErrors += 1;
        await sleep(10);
      }
      if (args.pollGapMs > 0) await sleep(args.pollGapMs);
    }
  };
  const pollers = sites.map((_, i) => poller(i));

  const stats: OpenLoopStats = { scheduled: 0, issued: 0, skipped: 0, late: 0, issueDelay: newHistogram() };
  const measuredStats = { scheduled: 0, issued: 0, acked: 0, errors: 0, non2xx: 0, skipped: 0, late: 0 };
  const inflight = sites.map(() => 0);
  const outstanding = new Set<Promise<void>>();
  const warmupCount = Math.round(args.rate * args.warmupS);
  const total = warmupCount + Math.round(args.rate * args.seconds);
  const runTag = now().toString(36).replace('.', '');
  let cpuStart: CpuSample | undefined;
  let metricsStart: Promise<(Map<string, number> | undefined)[]> = Promise.resolve([]);
  let measureStartMs = 0;

  const issue = (i: number, scheduledMs: number): boolean => {
    const measured = i >= warmupCount;
    if (measured && !measuring) {
      measuring = true;
      measureStartMs = now();
      cpuStart = sampleCpu(c.cluster);
      metricsStart = Promise.all(c.pools.map((p) => fetchMetrics(p).catch(() => undefined)));
    }
    const site = i % n;
    if (measured) measuredStats.scheduled += 1;
    if (inflight[site]! >= inflightPerSiteMax) {
      if (measured) measuredStats.skipped += 1;
      return false;
    }
    if (measured) {
      measuredStats.issued += 1;
      if (now() - scheduledMs > lateAfterMs) measuredStats.late += 1;
    }
    inflight[site]! += 1;
    const t0 = now();
    const p = put(c.pools[site]!, `lag-${runTag}-${i}`, itemBody(runTag, i)).then((r) => {
      inflight[site]! -= 1;
      const t1 = now();
      if (!measured) return;
      if (!r.ok) {
        if (r.status === 0) measuredStats.errors += 1;
        else measuredStats.non2xx += 1;
        return;
      }
      measuredStats.acked += 1;
      recordMs(ackLatency, t1 - t0);
      onAck(site, r.ack, { site, ackMs: t1, measured });
    });
    outstanding.add(p);
    void p.finally(() => outstanding.delete(p));
    return true;
  };

  await openLoop(args.rate, total, issue, stats);
  const measureEndMs = now();
  const cpuEnd = sampleCpu(c.cluster);
  const metricsEnd = await Promise.all(c.pools.map((p) => fetchMetrics(p).catch(() => undefined)));
  const metricsBefore = await metricsStart;
  const activity: Record<string, SiteActivity> = {};
  sites.forEach((id, i) => {
    const a = metricsBefore[i];
    const b = metricsEnd[i];
    if (a && b) activity[id] = siteActivity(a, b, (measureEndMs - measureStartMs) / 1000);
  });
  await Promise.all([...outstanding]);
  // Drain: wait (bounded) until every measured write is visible at every peer.
  const pendingCount = () => pending.reduce((a, m) => a + [...m.values()].reduce((b, w) => b + w.size, 0), 0);
  const drainDeadline = now() + drainMs;
  while (pendingCount() > 0 && now() < drainDeadline) await sleep(20);
  pollingUntilMs = 0;
  await Promise.all(pollers);
  await Promise.all(pollClients.map((cl) => cl.close().catch(() => undefined)));
  const neverVisible = pendingCount();
  // every measured write has been applied everywhere (or counted in neverVisible): scrape again
  const metricsDrained = await Promise.all(c.pools.map((p) => fetchMetrics(p).catch(() => undefined)));
  const atApply = applyLag(metricsBefore, metricsDrained, lagP99TargetMs);

  const windowS = (measureEndMs - measureStartMs) / 1000;
  const lagQ = quantiles(lag);
  const report: LagReport = {
    rateTarget: args.rate,
    warmupS: args.warmupS,
    seconds: args.seconds,
    pollGapMs: args.pollGapMs,
    writes: { ...measuredStats, issueDelayP99Ms: round(stats.issueDelay.getValueAtPercentile(99) / 1000, 3) },
    achievedWritesPerSecond: round(measuredStats.acked / args.seconds, 1),
    ackLatency: quantiles(ackLatency),
    lag: { ...lagQ, pairs, visibleBeforeAck, neverVisible },
    lagByLink: Object.fromEntries([...byLink].sort(([a], [b]) => a.localeCompare(b)).map(([k, h]) => [k, quantiles(h)])),
    applyLag: atApply,
    poll: {
      polls,
      errors: pollErrors,
      rttP50Ms: round(pollRtt.getValueAtPercentile(50) / 1000, 3),
      rttP99Ms: round(pollRtt.getValueAtPercentile(99) / 1000, 3),
      pollsPerSecondPerSite: windowS > 0 ? round(measuredPolls / windowS / n, 0) : 0,
    },
    cpu: cpuStart ? cpuBetween(cpuStart, cpuEnd) : undefined,
    sites: activity,
    pass: neverVisible === 0 && atApply.withinTarget !== null && atApply.withinTarget >= 0.99,
  };
  for (const h of [lag, ackLatency, pollRtt, stats.issueDelay, ...byLink.values()]) h.destroy();
  return report;
}

// ---------- part 2: heal ----------

interface HealReport {
  isolated: string;
  partitionS: number;
  /** connected writes before the partition (healWarmup), and whether the sites agreed after them */
  warmup: { writes: number; converged: boolean };
  writes: { planned: number; acked: number; errors: number; non2xx: number; isolatedSide: number; majoritySide: number; writeSeconds: number };
  sharedKeys: number;
  divergedAtHeal: boolean;
  converged: boolean;
  /** heal → identical digests and vectors everywhere (the target) */
  healMs: number | null;
  vectorsEqualMs: number | null;
  digestsEqualMs: number | null;
  /** heal → every peer link connected again (the latest of linkReconnectMs) */
  linksConnectedMs: number | null;
  /**
   * heal → per directed link `puller->peer` (LinkMesh naming), connected again: by the puller's own
   * clock (its status's connectedSinceMs; 0 if it never went down), else when a poll first saw it
   */
  linkReconnectMs: Record<string, number | null>;
  statusPolls: number;
  /** cores used from the heal until the end of the watch */
  cpu: ReturnType<typeof cpuBetween>;
  conflicts: { total: number; bySite: Record<string, number>; expectedAbout: number };
  /** per site, peers' entries that came in from the heal to the end of the watch: applied, or already here */
  received: Record<string, { applied: number; duplicates: number } | null>;
  pass: boolean;
}

const receivedMetric = (result: string) => `tandem_replication_entries_received_total{result="${result}"}`;

async function countConflicts(pool: Pool): Promise<number> {
  let total = 0;
  let cursor: string | null | undefined;
  for (let page = 0; page < conflictPagesMax; page++) {
    const q = cursor ? `&cursor=${encodeURIComponent(cursor)}` : '';
    const body = await getJson<{ conflicts: unknown[]; cursor: string | null }>(pool, `/v1/tables/${table}/conflicts?limit=1000${q}`);
    if (body.conflicts.length === 0) break;
    total += body.conflicts.length;
    cursor = body.cursor;
    if (!cursor) break;
  }
  return total;
}

/**
 * Connected traffic before the partition: 500 writes/s over every site, half of them pairs on the
 * same key at two sites (conflicts), then until the vectors agree. A site in production has been
 * replicating and recording conflicts before a partition; a cluster started a moment ago has not
 * (its catch-up paths would be cold in the JIT, which is not what the heal time is about).
 */
async function healWarmup(c: StartedCluster, seconds: number): Promise<{ writes: number; converged: boolean }> {
  if (seconds <= 0) return { writes: 0, converged: true };
  const n = c.pools.length;
  const total = Math.round(500 * seconds);
  const tag = `warm-${now().toString(36).replace('.', '')}`;
  const start = now();
  const outstanding = new Set<Promise<void>>();
  let writes = 0;
  for (let i = 0; i < total; i++) {
    const due = start + i * 2;
    if (due - now() >= 1) await sleep(due - now());
    const site = i % n;
    const key = i % 4 < 2 ? `${tag}-shared-${i >> 2}` : `${tag}-solo-${i}`;
    const p = put(c.pools[site]!, key, itemBody(tag, i)).then((r) => {
      if (r.ok) writes += 1;
    });
    outstanding.add(p);
    void p.finally(() => outstanding.delete(p));
    while (outstanding.size >= inflightPerSiteMax * n) await Promise.race(outstanding);
  }
  await Promise.all([...outstanding]);
  const deadline = now() + 15_000;
  while (now() < deadline) {
    const ss = await siteStatuses(c, 2_000);
    if (ss.every((x) => x !== undefined) && new Set(ss.map((x) => sortedJson(x!.vector))).size === 1) return { writes, converged: true };
    await sleep(50);
  }
  return { writes, converged: false };
}

async function runHeal(c: StartedCluster, args: ReplicationBenchArgs): Promise<HealReport> {
  const mesh = c.mesh!;
  const sites = c.config.sites.map((s) => s.id);
  const isolatedIdx = 0;
  const isolated = sites[isolatedIdx]!;
  const majority = sites.filter((_, i) => i !== isolatedIdx).map((id) => sites.indexOf(id));
  if (!(await waitLinksConnected(c, 10_000))) process.stderr.write('replication bench: warning: not every peer link was connected before the partition\n');
  const warmup = await healWarmup(c, args.healWarmupS);

  mesh.isolate(isolated);
  const partitionStart = now();
  const runTag = now().toString(36).replace('.', '');
  const w = { planned: args.partitionWrites, acked: 0, errors: 0, non2xx: 0, isolatedSide: 0, majoritySide: 0, writeSeconds: 0 };
  const inflight = sites.map(() => 0);
  const freed = sites.map(() => [] as (() => void)[]);
  const outstanding = new Set<Promise<void>>();
  const shared = args.sharedKeys * 2;
  // Spread the writes over the partition, leaving its last 2 s (or 10 %) quiet. Every planned
  // write is made: when a site has `inflightPerSiteMax` writes in flight, the next one waits.
  const writeWindowMs = Math.max(500, (args.partitionS - Math.min(2, args.partitionS * 0.1)) * 1000);
  const writesStart = now();
  for (let i = 0; i < args.partitionWrites; i++) {
    const due = writesStart + (i * writeWindowMs) / args.partitionWrites;
    if (due - now() >= 1) await sleep(due - now());
    // Write i: even i on the isolated site, odd i on the majority side (alternating between its
    // sites). The first 2 × sharedKeys writes come in pairs on the same key, one per side.
    const side = i % 2;
    const site = side === 0 ? isolatedIdx : majority[(i >> 1) % majority.length]!;
    while (inflight[site]! >= inflightPerSiteMax) await new Promise<void>((r) => freed[site]!.push(r));
    inflight[site]! += 1;
    const key = i < shared ? `heal-${runTag}-shared-${i >> 1}` : `heal-${runTag}-solo-${i}`;
    const p = put(c.pools[site]!, key, itemBody(`${runTag}-${sites[site]}`, i)).then((r) => {
      inflight[site]! -= 1;
      freed[site]!.shift()?.();
      if (r.ok) {
        w.acked += 1;
        if (side === 0) w.isolatedSide += 1;
        else w.majoritySide += 1;
      } else if (r.status === 0) w.errors += 1;
      else w.non2xx += 1;
    });
    outstanding.add(p);
    void p.finally(() => outstanding.delete(p));
  }
  await Promise.all([...outstanding]);
  w.writeSeconds = round((now() - writesStart) / 1000, 1);
  const remaining = partitionStart + args.partitionS * 1000 - now();
  if (remaining > 0) await sleep(remaining);

  const statuses = () => siteStatuses(c, 2_000);
  const [before, metricsAtHeal] = await Promise.all([statuses(), Promise.all(c.pools.map((p) => fetchMetrics(p).catch(() => undefined)))]);
  const divergedAtHeal = new Set(before.map((s) => (s ? sortedJson(s.digests) : 'none'))).size > 1;

  mesh.healAll();
  const healAt = now();
  const healWallMs = realClock.wallMs();
  const cpuAtHeal = sampleCpu(c.cluster);
  let vectorsEqualMs: number | null = null;
  let digestsEqualMs: number | null = null;
  let healMs: number | null = null;
  let linksConnectedMs: number | null = null;
  const linkReconnectMs: Record<string, number | null> = {};
  for (const from of sites) for (const to of sites) if (from !== to) linkReconnectMs[`${from}->${to}`] = null;
  let statusPolls = 0;
  while (now() - healAt < healTimeoutMs) {
    const roundStart = now();
    const ss = await statuses();
    const t = now() - healAt;
    statusPolls += 1;
    if (ss.every((s) => s !== undefined)) {
      const all = ss as StatusBody[];
      for (const s of all)
        for (const [peer, l] of Object.entries(s.peers)) {
          // named as LinkMesh names links: `${puller}->${peer}` (the puller reaches the peer)
          const name = `${s.site}->${peer}`;
          // by the site's own clock when it reports one: a busy site answers the poll late
          if (l.connected && linkReconnectMs[name] === null)
            linkReconnectMs[name] = round(l.connectedSinceMs === undefined ? t : Math.max(0, l.connectedSinceMs - healWallMs), 1);
        }
      if (linksConnectedMs === null && Object.values(linkReconnectMs).every((x) => x !== null))
        linksConnectedMs = Math.max(...Object.values(linkReconnectMs).map((x) => x!));
      const vEq = new Set(all.map((s) => sortedJson(s.vector))).size === 1;
      const dEq = new Set(all.map((s) => sortedJson(s.digests))).size === 1;
      if (vEq && vectorsEqualMs === null) vectorsEqualMs = round(t, 1);
      if (dEq && digestsEqualMs === null) digestsEqualMs = round(t, 1);
      if (vEq && dEq && healMs === null) healMs = round(t, 1);
      // After convergence, go on (bounded) only to see every link reconnect.
      if (healMs !== null && (linksConnectedMs !== null || t > healMs + linkWaitAfterHealMs)) break;
    }
    const wait = healPollMs - (now() - roundStart);
    if (wait > 0) await sleep(wait);
  }

  const cpuAfterHeal = sampleCpu(c.cluster);
  const metricsAfterHeal = await Promise.all(c.pools.map((p) => fetchMetrics(p).catch(() => undefined)));
  const received: HealReport['received'] = {};
  sites.forEach((site, i) => {
    const [b, a] = [metricsAtHeal[i], metricsAfterHeal[i]];
    const delta = (result: string) => (a?.get(receivedMetric(result)) ?? 0) - (b?.get(receivedMetric(result)) ?? 0);
    received[site] = a && b ? { applied: delta('applied'), duplicates: delta('duplicate') } : null;
  });
  const bySite: Record<string, number> = {};
  await Promise.all(
    c.pools.map(async (p, i) => {
      bySite[sites[i]!] = await countConflicts(p).catch(() => -1);
    }),
  );
  const total = Object.values(bySite).reduce((a, b) => a + Math.max(0, b), 0);
  return {
    isolated,
    partitionS: args.partitionS,
    warmup,
    writes: w,
    sharedKeys: args.sharedKeys,
    divergedAtHeal,
    converged: healMs !== null,
    healMs,
    vectorsEqualMs,
    digestsEqualMs,
    linksConnectedMs,
    linkReconnectMs,
    statusPolls,
    cpu: cpuBetween(cpuAtHeal, cpuAfterHeal),
    conflicts: { total, bySite, expectedAbout: args.sharedKeys * sites.length },
    received,
    pass: healMs !== null && healMs <= healTargetMs,
  };
}

// ---------- output ----------

function pad(s: string | number, n: number): string {
  return String(s).padStart(n);
}

function cpuText(c: ReturnType<typeof cpuBetween>): string {
  const sites = Object.entries(c.sites)
    .map(([id, x]) => `${id} ${x ?? '-'}`)
    .join(', ');
  return `${sites}, bench ${c.bench}, other ${c.other ?? '-'} (of ${cpus().length} cores)`;
}

function lagTable(r: LagReport): string[] {
  const row = (name: string, q: Quantiles) =>
    `${name.padEnd(22)} ${pad(q.count, 8)} ${pad(q.p50Ms.toFixed(2), 8)} ${pad(q.p90Ms.toFixed(2), 8)} ${pad(q.p99Ms.toFixed(2), 8)} ${pad(q.maxMs.toFixed(1), 8)}`;
  const cpu = r.cpu ? cpuText(r.cpu) : '-';
  return [
    `== replication lag: ${r.rateTarget} writes/s target over 3 sites, ${r.warmupS} s warm-up + ${r.seconds} s measured ==`,
    `${'(ms)'.padEnd(22)} ${pad('count', 8)} ${pad('p50', 8)} ${pad('p90', 8)} ${pad('p99', 8)} ${pad('max', 8)}`,
    row('lag, polled (write,peer)', r.lag),
    ...Object.entries(r.lagByLink).map(([k, q]) => row(`  ${k}`, q)),
    row('write ack latency', r.ackLatency),
    `${'lag, at apply'.padEnd(22)} ${pad(r.applyLag.count, 8)} ${pad(r.applyLag.p50Ms ?? '-', 8)} ${pad(r.applyLag.p90Ms ?? '-', 8)} ${pad(r.applyLag.p99Ms ?? '-', 8)} ${pad(`<=${r.applyLag.maxAtMostMs ?? '-'}`, 8)}`,
    '',
    `lag, at apply            each peer's own histogram: origin write (its hlc, before the origin's commit and ack) -> applied and visible; no polling; ${r.applyLag.withinTarget === null ? '-' : (r.applyLag.withinTarget * 100).toFixed(2)}% within ${lagP99TargetMs} ms`,
    `lag, polled              ack seen by the writer -> first /v1/status of the peer covering the write: adds up to one poll gap + round trip`,
    `achieved writes/s        ${r.achievedWritesPerSecond}  (acked ${r.writes.acked} of ${r.writes.scheduled} scheduled; errors ${r.writes.errors}, non-2xx ${r.writes.non2xx}, skipped ${r.writes.skipped}, late>${lateAfterMs}ms ${r.writes.late}, issue delay p99 ${r.writes.issueDelayP99Ms} ms)`,
    `poll resolution          status round trip p50 ${r.poll.rttP50Ms} ms, p99 ${r.poll.rttP99Ms} ms; ${r.poll.pollsPerSecondPerSite} polls/s per site (gap ${r.pollGapMs} ms), ${r.poll.errors} poll errors`,
    `visible before ack       ${r.lag.visibleBeforeAck} pairs (counted as 0 ms); never visible within ${drainMs} ms: ${r.lag.neverVisible}`,
    `cpu (cores)              ${cpu}`,
    ...Object.entries(r.sites).map(
      ([id, a]) =>
        `${`site ${id}`.padEnd(24)} ${a.commitsPerSecond} commits/s (mean ${a.commitMeanSize ?? '-'} requests, ${a.commitMeanMs ?? '-'} ms); requests/s ${Object.entries(a.requestsPerSecond)
          .sort(([, x], [, y]) => y - x)
          .map(([k, v]) => `${k} ${v}`)
          .join(', ')}`,
    ),
    ...(r.cpu?.other != null && r.cpu.other > foreignCoresMax ? [`WARNING: other processes used ${r.cpu.other} cores during the window; the machine was not quiet`] : []),
    `lag p99 at apply ${r.applyLag.p99Ms ?? '-'} ms, polled ${r.lag.p99Ms} ms   (target p99 <= ${lagP99TargetMs} ms, judged at apply: ${r.pass ? 'PASS' : 'FAIL'})`,
  ];
}

function healTable(r: HealReport): string[] {
  const ms = (x: number | null) => (x === null ? `not within ${healTimeoutMs} ms` : `${x} ms`);
  return [
    `== heal after partition: ${r.isolated} isolated for ${r.partitionS} s, all peer traffic through link proxies ==`,
    `warm-up                  ${r.warmup.writes} connected writes before the partition (half of them conflicting pairs); ${r.warmup.converged ? 'sites agreed' : 'sites did NOT agree within 15 s'}`,
    `writes during partition  ${r.writes.acked} acked of ${r.writes.planned} in ${r.writes.writeSeconds} s (isolated side ${r.writes.isolatedSide}, majority side ${r.writes.majoritySide}; errors ${r.writes.errors}, non-2xx ${r.writes.non2xx}), ${r.sharedKeys} keys written on both sides`,
    `diverged at heal         ${r.divergedAtHeal ? 'yes' : 'NO (partition had no effect?)'}`,
    `links reconnected        ${ms(r.linksConnectedMs)}  (puller->peer: ${Object.entries(r.linkReconnectMs)
      .map(([k, v]) => `${k} ${v ?? '-'}`)
      .join(', ')})`,
    `vectors equal            ${ms(r.vectorsEqualMs)}`,
    `digests equal            ${ms(r.digestsEqualMs)}`,
    `conflicts recorded       ${r.conflicts.total} (${Object.entries(r.conflicts.bySite)
      .map(([k, v]) => `${k} ${v}`)
      .join(', ')}; about ${r.conflicts.expectedAbout} expected: one per shared key per site)`,
    `entries received         ${Object.entries(r.received)
      .map(([k, v]) => `${k} ${v === null ? '-' : `${v.applied} applied, ${v.duplicates} duplicates`}`)
      .join('; ')} (from the heal to the end of the watch)`,
    `cpu after heal (cores)   ${cpuText(r.cpu)}`,
    ...(r.cpu.other !== null && r.cpu.other > foreignCoresMax ? [`WARNING: other processes used ${r.cpu.other} cores after the heal; the machine was not quiet`] : []),
    `heal time ${ms(r.healMs)}   (target <= ${healTargetMs} ms: ${r.pass ? 'PASS' : 'FAIL'})`,
  ];
}

// ---------- entry ----------

export async function runReplicationBench(argv: string[]): Promise<void> {
  const args = parseArgs(argv);
  if (args === undefined) {
    process.stdout.write(`${usage}\n`);
    return;
  }
  const parent = dataParent(args.dataDir);
  const fsType = fsTypeOf(parent) ?? 'unknown';
  process.stderr.write(`replication bench: data under ${parent} (${fsType}); ${cpus().length} cores\n`);
  if (fsType === 'tmpfs') process.stderr.write('replication bench: warning: the data dir is on tmpfs, fsync is free there; pass --data-dir on a disk\n');
  const started = now();
  const dirs: string[] = [];
  let lagReport: LagReport | undefined;
  let healReport: HealReport | undefined;
  try {
    if (args.only !== 'heal') {
      await waitQuiet(args.waitQuietS, 'replication bench (lag part)');
      const c = await startCluster(parent, 'lag', false);
      dirs.push(c.dataDir);
      try {
        lagReport = await runLag(c, args);
      } finally {
        await stopCluster(c);
      }
    }
    if (args.only !== 'lag') {
      await waitQuiet(args.waitQuietS, 'replication bench (heal part)');
      const c = await startCluster(parent, 'heal', true);
      dirs.push(c.dataDir);
      try {
        healReport = await runHeal(c, args);
      } finally {
        await stopCluster(c);
      }
    }
  } finally {
    if (!args.keep) for (const d of dirs) rmSync(d, { recursive: true, force: true });
    else process.stderr.write(`replication bench: kept ${dirs.join(', ')}\n`);
  }

  const report = {
    bench: 'replication',
    at: new Date().toISOString(),
    node: process.version,
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model ?? 'unknown',
    fsType,
    elapsedS: round((now() - started) / 1000, 1),
    targets: { lagP99MsMax: lagP99TargetMs, healMsMax: healTargetMs },
    lag: lagReport ?? null,
    heal: healReport ?? null,
    pass: {
      lag: lagReport ? lagReport.pass : null,
      heal: healReport ? healReport.pass : null,
      all: (lagReport?.pass ?? true) && (healReport?.pass ?? true),
    },
  };
  mkdirSync(dirname(resolve(args.out)), { recursive: true });
  writeFileSync(args.out, JSON.stringify(report, null, 2) + '\n');
  const lines = [...(lagReport ? [...lagTable(lagReport), ''] : []), ...(healReport ? [...healTable(healReport), ''] : [])];
  lines.push(`overall: ${report.pass.all ? 'PASS' : 'FAIL'} (${report.elapsedS} s)`);
  process.stdout.write(`${lines.join('\n')}\n${JSON.stringify(report)}\n`);
  process.stderr.write(`replication bench: report written to ${args.out}\n`);
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  try {
    await runReplicationBench(process.argv.slice(2));
  } catch (error) {
    process.stderr.write(`${error instanceof BenchUsageError ? error.message : (error as Error).stack ?? String(error)}\n`);
    process.exit(error instanceof BenchUsageError ? 2 : 1);
  }
  // Exit explicitly: keep-alive sockets would otherwise keep the process alive.
  process.exit(0);
}
