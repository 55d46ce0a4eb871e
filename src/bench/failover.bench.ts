// Failover benchmark (issue 15), on real `tandem site` processes (the built CLI in dist/): three
// sites, the `ledger` global table with quorum durability, owned by us-east at the start.
//
// Part 1, promotion: for each lease length (`--lease-ms`, 2000 = the default settings, and 500),
// a fresh cluster; clients write unique ledger keys continuously (closed loop, `--writers` per
// site) to the sites that do not own `ledger` (they forward to the owner). An answer 502/503/504 or
// a transport failure is retried after 20 ms with the same key and Idempotency-Key, as a client
// would. The owner is SIGKILLed; promotion time = kill → the first 200 whose origin is another site
// (the client sees it). Then the writers stop, every key acknowledged in the round is read back at
// both surviving sites (prefix scans; lost = acked but absent once replication had 10 s), the
// killed site is restarted and caught up (it holds every acked key and a lease), and the next round
// kills whichever site owns `ledger` then; `--kills` rounds per lease length. Targets (issue 15):
// every kill <= 3000 ms with default settings, every kill < 1000 ms with leaseMs 500; 0 lost.
// Each kill is broken down from the topology history (GET /v1/topology?history: when the revoke and
// the install were proposed) and the new owner's log ('topology epoch decided', 'promotion not
// possible yet'): detection (kill → revoke proposed), revoke (→ decided), vouch wait + cut + hold
// (→ install proposed), install (→ decided), lease renewal and the client's retry (→ first 200).
//
// Part 2, latency: on the first cluster before any kill, PUTs of new ledger items in a closed loop
// of `--connections`, after a warm-up, in four configurations: (a) at the owner, local durability
// (Tandem-Durability: local), (b) at the owner, quorum, (c) at a non-owner (forwarded), local,
// (d) forwarded, quorum. Rounds alternate the order (abcd, dcba) so drift weighs on all alike.
// Reports p50/p99 of each and the ratios b/a (quorum), c/a (forwarding), d/a (both), d/b.
//
// `npm run bench -- failover [--only promote|latency] [--kills N] [--lease-ms 2000,500]
//   [--writers N] [--seconds S] [--warmup S] [--connections N] [--out FILE] [--data-dir DIR]
//   [--wait-quiet S] [--keep]`, or `node dist/bench/failover.bench.js …`.
// Bounded: per kill at most ~70 s (promotion watch 30 s, read-back 10 s, restart and catch-up 30 s),
// typically 8–14 s with leaseMs 2000 and 5–8 s with 500; the latency part takes 2 × (4 × (warmup +
// seconds / 2)) s. The CPU used by the sites, this process and anything else is reported: on a shared
// machine the figures measure contention as much as Tandem. Prints a table, a JSON line, writes
// bench-results/failover.json, PASS/FAIL against the targets; a measurement, so it exits 0 either way.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Histogram } from 'hdr-histogram-js';
import { Pool } from 'undici';
import { LocalCluster } from '../cluster/local-cluster.js';
import { freePortRange } from '../cluster/ports.js';
import { parseConfig } from '../config/load.js';
import type { ClusterConfig } from '../config/schema.js';
import { siteOfOrigin } from '../core/vector.js';
import { realClock, realTimers } from '../platform/real/real-env.js';
import { latencyMs, newLatencyHistogram, runLoad, type LoadRequest } from './load.js';
import { BenchUsageError, dataParent, foreignCoresMax, fsTypeOf, machineBusySeconds, ownCpuSeconds, parseBenchFlags, processCpuSeconds, round, waitQuiet } from './machine.js';
import type { HistoryEntry } from '../topology/record.js';

// ---------- arguments ----------

interface FailoverBenchArgs {
  only: 'all' | 'promote' | 'latency';
  kills: number;
  leaseMsList: number[];
  /** concurrent writers per non-owner site during the kills */
  writers: number;
  /** latency part: measured seconds per configuration, split over the rounds */
  seconds: number;
  /** latency part: warm-up per configuration and round */
  warmupS: number;
  connections: number;
  out: string;
  dataDir: string | undefined;
  keep: boolean;
  waitQuietS: number;
}

const usage =
  'failover bench: --only promote|latency, --kills 1..50, --lease-ms LIST (e.g. 2000,500; each 400..10000), --writers 1..32, ' +
  '--seconds 1..60, --warmup 0..30, --connections 1..256, --out FILE, --data-dir DIR, --wait-quiet 0..600, --keep';

function parseArgs(args: string[]): FailoverBenchArgs | undefined {
  if (args.includes('--help') || args.includes('-h')) return undefined;
  const out: FailoverBenchArgs = {
    only: 'all',
    kills: 10,
    leaseMsList: [2_000, 500],
    writers: 4,
    seconds: 6,
    warmupS: 1,
    connections: 8,
    out: 'bench-results/failover.json',
    dataDir: undefined,
    keep: false,
    waitQuietS: 10,
  };
  parseBenchFlags(args, usage, () => (out.keep = true), (flag, value, num) => {
    const int = Number.isInteger(num);
    if (flag === '--only' && (value === 'promote' || value === 'latency' || value === 'all')) out.only = value;
    else if (flag === '--kills' && int && num >= 1 && num <= 50) out.kills = num;
    else if (flag === '--lease-ms' && value !== undefined) {
      const list = value.split(',').map(Number);
      if (list.length === 0 || list.length > 4 || !list.every((x) => Number.isInteger(x) && x >= 400 && x <= 10_000)) return false;
      out.leaseMsList = list;
    } else if (flag === '--writers' && int && num >= 1 && num <= 32) out.writers = num;
    else if (flag === '--seconds' && num >= 1 && num <= 60) out.seconds = num;
    else if (flag === '--warmup' && num >= 0 && num <= 30) out.warmupS = num;
    else if (flag === '--connections' && int && num >= 1 && num <= 256) out.connections = num;
    else if (flag === '--out' && value !== undefined) out.out = value;
    else if (flag === '--data-dir' && value !== undefined) out.dataDir = value;
    else if (flag === '--wait-quiet' && num >= 0 && num <= 600) out.waitQuietS = num;
    else return false;
    return true;
  });
  return out;
}

// ---------- targets and bounds ----------

const table = 'ledger';
const siteIds = ['us-east', 'eu-west', 'ap-south'] as const;
/** issue 15: with default settings every kill at most this long to the first accepted write */
const defaultLeaseMs = 2_000;
const promoteMsMaxDefault = 3_000;
/** issue 15: with leaseMs 500, every kill under this */
const promoteMsBelowFast = 1_000;
const fastLeaseMs = 500;
/** a client's pause before it retries a refused or unanswered write */
const retryGapMs = 20;
/** a write not accepted within this long (retries included) is given up and counted */
const writeGiveUpMs = 30_000;
const requestTimeoutMs = 10_000;
/** how long after a kill a new owner's first accepted write is awaited */
const promotionWatchMs = 30_000;
/** writes go on this long after the first accepted one (steady state at the new owner) */
const afterPromotionMs = 500;
/** acked keys may take this long to show at a surviving non-owner (replication) before they count as lost */
const readBackMs = 10_000;
const catchUpMs = 30_000;
const scanPageItems = 1_000;
const scanPagesMax = 2_000;
const latencyRounds = 2;
const cpuSampleMs = 200;

// ---------- small helpers ----------

const now = (): number => realClock.monotonicMs();
const sleep = (ms: number): Promise<void> => realTimers.sleep(ms);

function median(xs: number[]): number | null {
  if (xs.length === 0) return null;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m]! : round((s[m - 1]! + s[m]!) / 2, 1);
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

interface CpuUse {
  /** cores (1.0 = one core) used by the site processes, this process, and everything else */
  sites: number | null;
  bench: number;
  other: number | null;
  seconds: number;
}

/** Cores used between two samples. Killed sites' CPU is lost with them: their share lands in `other`'s error. */
function cpuBetween(a: CpuSample, b: CpuSample): CpuUse {
  const secs = (b.atMs - a.atMs) / 1000;
  let sites = 0;
  let known = true;
  for (const id of Object.keys(a.sites)) {
    const x = a.sites[id];
    const y = b.sites[id];
    if (x === undefined || y === undefined || y < x) known = false;
    else sites += y - x;
  }
  const bench = round((b.bench - a.bench) / secs, 2);
  const sitesCores = known ? round(sites / secs, 2) : null;
  const machine = a.machine === undefined || b.machine === undefined ? null : (b.machine - a.machine) / secs;
  const other = machine === null || sitesCores === null ? null : round(Math.max(0, machine - sitesCores - bench), 2);
  return { sites: sitesCores, bench, other, seconds: round(secs, 1) };
}

/** Machine-wide busy cores between two samples (everything, this bench and the sites included). */
function machineCores(a: CpuSample, b: CpuSample): number | null {
  if (a.machine === undefined || b.machine === undefined) return null;
  return round((b.machine - a.machine) / ((b.atMs - a.atMs) / 1000), 2);
}

/**
 * CPU of the site processes across kills and restarts: every process (by pid) is sampled every
 * `cpuSampleMs`, and each counts from its first sample to its last (a killed one loses at most one
 * interval). With the machine's busy time over the same window, the rest is other work.
 */
class SiteCpuTracker {
  private readonly byPid = new Map<number, { first: number; last: number }>();
  private readonly from: CpuSample;
  private timer: { cancel(): void } | undefined;

  constructor(private readonly cluster: LocalCluster) {
    this.from = sampleCpu(cluster);
    const loop = () => {
      this.sample();
      this.timer = realTimers.after(cpuSampleMs, loop);
    };
    loop();
  }

  private sample(): void {
    for (const s of this.cluster.config.sites) {
      const pid = this.cluster.process(s.id)?.child.pid;
      const cpu = processCpuSeconds(pid);
      if (pid === undefined || cpu === undefined) continue;
      const seen = this.byPid.get(pid);
      if (seen === undefined) this.byPid.set(pid, { first: cpu, last: cpu });
      else seen.last = cpu;
    }
  }

  stop(): CpuUse {
    this.timer?.cancel();
    this.sample();
    const to = sampleCpu(this.cluster);
    const secs = (to.atMs - this.from.atMs) / 1000;
    let sites = 0;
    for (const p of this.byPid.values()) sites += p.last - p.first;
    const sitesCores = round(sites / secs, 2);
    const bench = round((to.bench - this.from.bench) / secs, 2);
    const machine = machineCores(this.from, to);
    return { sites: sitesCores, bench, other: machine === null ? null : round(Math.max(0, machine - sitesCores - bench), 2), seconds: round(secs, 1) };
  }
}

// ---------- HTTP ----------

async function getJson<T>(url: string, timeoutMs = 3_000): Promise<T | undefined> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
    if (res.status !== 200) {
      await res.arrayBuffer();
      return undefined;
    }
    return (await res.json()) as T;
  } catch {
    return undefined;
  }
}

interface TopologyView {
  epoch: number;
  owners: Record<string, string | null>;
  leases: Record<string, { validForMs: number }>;
  history: HistoryEntry[];
}

const topologyOf = (url: string, history = false) => getJson<TopologyView>(`${url}/v1/topology${history ? '?history' : ''}`);

/** Every key under `prefix` at the site (paged scans); undefined if the site did not answer. */
async function keysAt(url: string, prefix: string): Promise<Set<string> | undefined> {
  const keys = new Set<string>();
  let cursor: string | null = null;
  for (let page = 0; page < scanPagesMax; page++) {
    const q: string = `prefix=${encodeURIComponent(prefix)}&limit=${scanPageItems}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`;
    const body = await getJson<{ items: { key: string }[]; cursor: string | null }>(`${url}/v1/tables/${table}/items?${q}`, 10_000);
    if (body === undefined) return undefined;
    for (const it of body.items) keys.add(it.key);
    cursor = body.cursor;
    if (!cursor) return keys;
  }
  return keys;
}

/** The acked keys not (yet) at `url`, polled until none is missing or `waitMs` passed. */
async function missingAt(url: string, prefix: string, acked: string[], waitMs: number): Promise<string[] | undefined> {
  const deadline = now() + waitMs;
  for (;;) {
    const have = await keysAt(url, prefix);
    const missing = have === undefined ? undefined : acked.filter((k) => !have.has(k));
    if ((missing !== undefined && missing.length === 0) || now() >= deadline) return missing;
    await sleep(200);
  }
}

// ---------- clusters ----------

interface StartedCluster {
  cluster: LocalCluster;
  config: ClusterConfig;
  dataDir: string;
  leaseMs: number;
  urls: Record<string, string>;
}

function clusterConfig(basePort: number, leaseMs: number): ClusterConfig {
  return parseConfig(
    {
      cluster: 'fobench',
      secret: 'failover-bench-secret-0123456789',
      sites: siteIds.map((id, i) => ({ id, url: `http://127.0.0.1:${basePort + 1 + i}` })),
      tables: {
        [table]: { pattern: 'global', writeSite: 'us-east', durability: 'quorum' },
        profiles: { pattern: 'local' },
      },
      // only leaseMs moves; commitBudgetMs keeps its default (200), within half a lease
      topology: { leaseMs, commitBudgetMs: Math.min(200, Math.floor(leaseMs / 2)) },
      router: { listen: `127.0.0.1:${basePort}` },
    },
    'failover bench config',
  );
}

async function startCluster(parent: string, leaseMs: number): Promise<StartedCluster> {
  for (let attempt = 0; ; attempt++) {
    const basePort = await freePortRange(siteIds.length + 1);
    const config = clusterConfig(basePort, leaseMs);
    const dataDir = mkdtempSync(join(parent, `tandem-failover-bench-${leaseMs}-`));
    // info level: the 'topology epoch decided' lines the breakdown reads
    const cluster = new LocalCluster({ config, dataDir, withRouter: false, env: { TANDEM_LOG_LEVEL: process.env['TANDEM_LOG_LEVEL'] ?? 'info' } });
    try {
      await cluster.start(30_000);
      return { cluster, config, dataDir, leaseMs, urls: Object.fromEntries(config.sites.map((s) => [s.id, s.url])) };
    } catch (error) {
      await cluster.stop(2_000);
      rmSync(dataDir, { recursive: true, force: true });
      // free ports are probed, then taken: a small race, tried once more
      if (attempt >= 1) throw error;
      process.stderr.write(`failover bench: cluster start failed (${(error as Error).message}); retrying once\n`);
    }
  }
}

/** Waits until every site agrees on the epoch and `ledger` has an owner holding a lease; returns it. */
async function settledOwner(c: StartedCluster, timeoutMs: number): Promise<string | undefined> {
  const deadline = now() + timeoutMs;
  while (now() < deadline) {
    const views = await Promise.all(Object.values(c.urls).map((u) => topologyOf(u)));
    const owner = views[0]?.owners[table];
    if (views.every((v) => v !== undefined && v.epoch === views[0]!.epoch && v.owners[table] === owner) && typeof owner === 'string') {
      const ownerView = await topologyOf(c.urls[owner]!);
      if ((ownerView?.leases[owner]?.validForMs ?? 0) > 0) return owner;
    }
    await sleep(50);
  }
  return undefined;
}

// ---------- part 1: promotion after a kill ----------

interface AckedWrite {
  key: string;
  atMs: number;
  site: string;
}

interface Writers {
  acked: AckedWrite[];
  refused: Record<string, number>;
  givenUp: number;
  stop(): Promise<void>;
}

/** Closed-loop writers of unique keys to `sites`, each retrying a refused write as a client would. */
function startWriters(c: StartedCluster, sites: string[], perSite: number, prefix: string): Writers {
  const acked: AckedWrite[] = [];
  const refused: Record<string, number> = {};
  let givenUp = 0;
  let stopped = false;
  const pools = sites.map((s) => new Pool(c.urls[s]!, { connections: perSite, pipelining: 1, keepAliveTimeout: 60_000, headersTimeout: requestTimeoutMs, bodyTimeout: requestTimeoutMs }));
  const loop = async (site: number, w: number) => {
    for (let n = 0; !stopped; n++) {
      const key = `${prefix}${sites[site]}-${w}-${n}`;
      const body = JSON.stringify({ v: key, n });
      const first = now();
      for (;;) {
        let status: number;
        let origin: string | undefined;
        try {
          const res = await pools[site]!.request({
            method: 'PUT',
            path: `/v1/tables/${table}/items/${encodeURIComponent(key)}`,
            headers: { 'content-type': 'application/json', 'idempotency-key': key },
            body,
          });
          status = res.statusCode;
          if (status === 200) origin = ((await res.body.json()) as { origin?: string }).origin;
          else await res.body.dump();
        } catch {
          status = 0;
        }
        if (status === 200) {
          // the answer's origin is a site id (or an origin `<site>.<incarnation>`)
          acked.push({ key, atMs: now(), site: origin === undefined ? '?' : siteOfOrigin(origin) });
          break;
        }
        refused[String(status)] = (refused[String(status)] ?? 0) + 1;
        if (stopped) break;
        if ((status !== 0 && status !== 502 && status !== 503 && status !== 504) || now() - first > writeGiveUpMs) {
          givenUp += 1;
          break;
        }
        await sleep(retryGapMs);
      }
    }
  };
  const loops = sites.flatMap((_, i) => Array.from({ length: perSite }, (_, w) => loop(i, w)));
  return {
    acked,
    refused,
    get givenUp() {
      return givenUp;
    },
    async stop() {
      stopped = true;
      await Promise.all(loops);
      await Promise.all(pools.map((p) => p.close().catch(() => undefined)));
    },
  };
}

interface Breakdown {
  /** kill → the revoke was proposed (its history atMs): the lease lapsing at a majority, seen */
  detectMs: number | null;
  /** revoke proposed → decided at the new owner */
  revokeMs: number | null;
  /** revoke decided → install proposed: the next tick, the vouch wait (majority past L·(1+ρ)/(1−ρ)), the cut and holding it */
  vouchCutMs: number | null;
  /** install attempts refused meanwhile (logged 'promotion not possible yet'), with the last reason */
  installRefusals: number;
  lastRefusal: string | null;
  /** install proposed → decided at the new owner */
  installMs: number | null;
  /** install decided → first 200 at the client: the lease at the new epoch, the non-owner learning it, the client's retry */
  leaseAndRetryMs: number | null;
}

interface KillReport {
  round: number;
  killed: string;
  newOwner: string | null;
  /** kill → first 200 from another origin, seen by the client */
  promoteMs: number | null;
  pass: boolean;
  breakdown: Breakdown;
  writes: { acked: number; ackedAfterKill: number; refused: Record<string, number>; givenUp: number };
  /** acked keys of the round missing at each surviving site after the read-back */
  lost: Record<string, number | null>;
  restartToCaughtUpMs: number | null;
}

interface LogLine {
  time: number;
  msg: string;
  epoch?: number;
  err?: string;
}

function readLog(path: string, fromWallMs: number): LogLine[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return [];
  }
  const out: LogLine[] = [];
  for (const line of text.split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      const l = JSON.parse(line) as LogLine;
      if (typeof l.time === 'number' && l.time >= fromWallMs) out.push(l);
    } catch {
      // a line cut off by the kill
    }
  }
  return out;
}

function breakdownOf(history: HistoryEntry[], log: LogLine[], killWallMs: number, firstAckWallMs: number | null): Breakdown {
  const revoke = history.find((h) => h.action === 'revoke' && h.atMs >= killWallMs - 1_000);
  const install = history.find((h) => h.action === 'install' && revoke !== undefined && h.epoch > revoke.epoch);
  const decidedAt = (epoch: number | undefined) => (epoch === undefined ? undefined : log.find((l) => l.msg === 'topology epoch decided' && l.epoch === epoch)?.time);
  const revokeDecided = decidedAt(revoke?.epoch);
  const installDecided = decidedAt(install?.epoch);
  const refusals = log.filter((l) => l.msg.startsWith('promotion not possible yet') && (revokeDecided === undefined || l.time >= revokeDecided) && (install === undefined || l.time <= install.atMs));
  const diff = (a: number | undefined | null, b: number | undefined | null) => (a === undefined || a === null || b === undefined || b === null ? null : Math.round(b - a));
  return {
    detectMs: diff(killWallMs, revoke?.atMs),
    revokeMs: diff(revoke?.atMs, revokeDecided),
    vouchCutMs: diff(revokeDecided, install?.atMs),
    installRefusals: refusals.length,
    lastRefusal: refusals.length > 0 ? (refusals[refusals.length - 1]!.err ?? null) : null,
    installMs: diff(install?.atMs, installDecided),
    leaseAndRetryMs: diff(installDecided, firstAckWallMs),
  };
}

async function killRound(c: StartedCluster, roundNo: number, args: FailoverBenchArgs, target: (ms: number) => boolean): Promise<KillReport> {
  const owner = await settledOwner(c, 30_000);
  if (owner === undefined) throw new Error(`round ${roundNo}: the sites did not agree on an owner of ${table} holding a lease within 30 s`);
  const others = siteIds.filter((s) => s !== owner);
  const prefix = `fo-${c.leaseMs}-r${roundNo}-`;
  const writers = startWriters(c, others, args.writers, prefix);
  // writes flow for a lease or a second before the kill
  await sleep(Math.max(1_000, c.leaseMs));
  const ackedBefore = writers.acked.length;
  if (ackedBefore === 0) process.stderr.write(`failover bench: round ${roundNo}: no write was accepted before the kill\n`);

  const killWallMs = realClock.wallMs();
  const killMs = now();
  await c.cluster.kill(owner);
  const deadline = killMs + promotionWatchMs;
  let first: AckedWrite | undefined;
  while (first === undefined && now() < deadline) {
    first = writers.acked.find((a, i) => i >= ackedBefore && a.atMs > killMs && a.site !== owner);
    if (first === undefined) await sleep(5);
  }
  const promoteMs = first === undefined ? null : round(first.atMs - killMs, 1);
  const firstAckWallMs = first === undefined ? null : killWallMs + (first.atMs - killMs);
  if (first !== undefined) await sleep(afterPromotionMs);
  await writers.stop();
  const acked = writers.acked.map((a) => a.key);

  const survivor = others[0]!;
  const view = await topologyOf(c.urls[survivor]!, true);
  const newOwner = first?.site ?? (typeof view?.owners[table] === 'string' ? view.owners[table] : null);
  const log = newOwner !== null && newOwner !== '?' ? readLog(c.cluster.process(newOwner)?.logPath ?? '', killWallMs - 1_000) : [];
  const breakdown = breakdownOf(view?.history ?? [], log, killWallMs, firstAckWallMs);

  const lost: Record<string, number | null> = {};
  await Promise.all(
    others.map(async (s) => {
      lost[s] = (await missingAt(c.urls[s]!, prefix, acked, readBackMs))?.length ?? null;
    }),
  );

  // restart the killed site and let it catch up: every acked key there, and a lease of its own
  const restartMs = now();
  c.cluster.startSite(owner);
  let caughtUp: number | null = null;
  const caughtDeadline = restartMs + catchUpMs;
  while (now() < caughtDeadline) {
    const t = await topologyOf(c.urls[owner]!);
    if (t !== undefined && (t.leases[owner]?.validForMs ?? 0) > 0) {
      const missing = await missingAt(c.urls[owner]!, prefix, acked, 0);
      if (missing !== undefined && missing.length === 0) {
        caughtUp = round(now() - restartMs, 0);
        break;
      }
    }
    await sleep(100);
  }
  // a restarted voter neither grants nor vouches for L·(1+ρ)/(1−ρ): let that pass, and a lease more
  const settleUntil = restartMs + 2 * c.leaseMs + 500;
  if (now() < settleUntil) await sleep(settleUntil - now());

  return {
    round: roundNo,
    killed: owner,
    newOwner,
    promoteMs,
    pass: promoteMs !== null && target(promoteMs),
    breakdown,
    writes: { acked: acked.length, ackedAfterKill: writers.acked.filter((a) => a.atMs > killMs).length, refused: writers.refused, givenUp: writers.givenUp },
    lost,
    restartToCaughtUpMs: caughtUp,
  };
}

interface LeaseReport {
  leaseMs: number;
  commitBudgetMs: number;
  target: string;
  kills: KillReport[];
  promoteMs: { median: number | null; max: number | null; min: number | null };
  /** medians of the breakdown over the kills */
  breakdownMedianMs: Record<string, number | null>;
  lostWrites: number;
  unknownLost: number;
  cpu: CpuUse;
  machineCores: number | null;
  loadAverage: { before: number[]; after: number[] };
  pass: boolean;
}

async function runPromotion(c: StartedCluster, args: FailoverBenchArgs): Promise<LeaseReport> {
  const L = c.leaseMs;
  const target = L === fastLeaseMs ? (ms: number) => ms < promoteMsBelowFast : (ms: number) => ms <= promoteMsMaxDefault;
  const targetText = L === fastLeaseMs ? `every kill < ${promoteMsBelowFast} ms` : L === defaultLeaseMs ? `every kill <= ${promoteMsMaxDefault} ms` : `(no target; judged as <= ${promoteMsMaxDefault} ms)`;
  const load0 = loadavg().map((x) => round(x, 2));
  const cpu0 = sampleCpu(c.cluster);
  const tracker = new SiteCpuTracker(c.cluster);
  const kills: KillReport[] = [];
  for (let r = 1; r <= args.kills; r++) {
    const k = await killRound(c, r, args, target);
    kills.push(k);
    process.stderr.write(
      `failover bench: leaseMs ${L} kill ${r}/${args.kills}: ${k.killed} -> ${k.newOwner ?? '-'} in ${k.promoteMs ?? '-'} ms ` +
        `(detect ${k.breakdown.detectMs ?? '-'}, revoke ${k.breakdown.revokeMs ?? '-'}, vouch+cut ${k.breakdown.vouchCutMs ?? '-'}, install ${k.breakdown.installMs ?? '-'}, lease+retry ${k.breakdown.leaseAndRetryMs ?? '-'}); ` +
        `lost ${Object.values(k.lost).join('/')}, caught up ${k.restartToCaughtUpMs ?? '-'} ms\n`,
    );
  }
  const cpu = tracker.stop();
  const cpu1 = sampleCpu(c.cluster);
  const times = kills.map((k) => k.promoteMs).filter((x): x is number => x !== null);
  const med = (f: (b: Breakdown) => number | null) => median(kills.map((k) => f(k.breakdown)).filter((x): x is number => x !== null));
  const lostWrites = kills.reduce((a, k) => a + Object.values(k.lost).reduce((b: number, x) => b + (x ?? 0), 0), 0);
  const unknownLost = kills.reduce((a, k) => a + Object.values(k.lost).filter((x) => x === null).length, 0);
  return {
    leaseMs: L,
    commitBudgetMs: c.config.topology.commitBudgetMs,
    target: targetText,
    kills,
    promoteMs: { median: median(times), max: times.length > 0 ? Math.max(...times) : null, min: times.length > 0 ? Math.min(...times) : null },
    breakdownMedianMs: {
      detect: med((b) => b.detectMs),
      revoke: med((b) => b.revokeMs),
      vouchCut: med((b) => b.vouchCutMs),
      install: med((b) => b.installMs),
      leaseAndRetry: med((b) => b.leaseAndRetryMs),
    },
    lostWrites,
    unknownLost,
    cpu,
    machineCores: machineCores(cpu0, cpu1),
    loadAverage: { before: load0, after: loadavg().map((x) => round(x, 2)) },
    pass: kills.length === args.kills && kills.every((k) => k.pass) && lostWrites === 0 && unknownLost === 0,
  };
}

// ---------- part 2: latency of forwarding and quorum ----------

type LatencyConfig = 'ownerLocal' | 'ownerQuorum' | 'forwardedLocal' | 'forwardedQuorum';
const latencyConfigs: LatencyConfig[] = ['ownerLocal', 'ownerQuorum', 'forwardedLocal', 'forwardedQuorum'];
const latencyLabels: Record<LatencyConfig, string> = {
  ownerLocal: '(a) owner, local',
  ownerQuorum: '(b) owner, quorum',
  forwardedLocal: '(c) forwarded, local',
  forwardedQuorum: '(d) forwarded, quorum',
};

interface LatencyFigures {
  site: string;
  durability: 'local' | 'quorum';
  requests: number;
  errors: number;
  non2xx: number;
  rps: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  maxMs: number;
  cpu: CpuUse;
}

interface LatencyReport {
  owner: string;
  forwarder: string;
  connections: number;
  warmupS: number;
  secondsPerConfig: number;
  rounds: number;
  configs: Record<LatencyConfig, LatencyFigures>;
  ratios: Record<'quorumOverLocal' | 'forwardedOverOwner' | 'forwardedQuorumOverOwnerLocal' | 'forwardedQuorumOverOwnerQuorum', { p50: number; p99: number }>;
  machineCores: number | null;
  loadAverage: { before: number[]; after: number[] };
}

async function runLatency(c: StartedCluster, args: FailoverBenchArgs): Promise<LatencyReport> {
  const owner = await settledOwner(c, 30_000);
  if (owner === undefined) throw new Error(`the sites did not agree on an owner of ${table} holding a lease within 30 s`);
  const forwarder = siteIds.find((s) => s !== owner)!;
  const load0 = loadavg().map((x) => round(x, 2));
  const start = sampleCpu(c.cluster);
  const histograms = Object.fromEntries(latencyConfigs.map((k) => [k, newLatencyHistogram()])) as Record<LatencyConfig, Histogram>;
  const totals = Object.fromEntries(latencyConfigs.map((k) => [k, { requests: 0, errors: 0, non2xx: 0, rps: 0, cpu: [] as CpuUse[] }])) as Record<
    LatencyConfig,
    { requests: number; errors: number; non2xx: number; rps: number; cpu: CpuUse[] }
  >;
  const roundS = args.seconds / latencyRounds;
  for (let r = 0; r < latencyRounds; r++) {
    const order = r % 2 === 0 ? latencyConfigs : [...latencyConfigs].reverse();
    for (const k of order) {
      const site = k.startsWith('owner') ? owner : forwarder;
      const durability = k.endsWith('Local') ? 'local' : 'quorum';
      const request = (conn: number, n: number): LoadRequest => {
        const key = `lat-${k}-${r}-${conn}-${n}`;
        return {
          method: 'PUT',
          path: `/v1/tables/${table}/items/${encodeURIComponent(key)}`,
          headers: { 'content-type': 'application/json', 'tandem-durability': durability },
          body: JSON.stringify({ v: key, n, note: 'failover bench latency item'.padEnd(48, '.') }),
        };
      };
      let cpuFrom: CpuSample | undefined;
      const res = await runLoad({
        url: c.urls[site]!,
        connections: args.connections,
        warmupS: args.warmupS,
        durationS: roundS,
        histogram: histograms[k],
        request,
        onMeasureStart: () => (cpuFrom = sampleCpu(c.cluster)),
      });
      const t = totals[k];
      t.requests += res.requests;
      t.errors += res.errors;
      t.non2xx += res.non2xx;
      t.rps += res.rps / latencyRounds;
      if (cpuFrom) t.cpu.push(cpuBetween(cpuFrom, sampleCpu(c.cluster)));
    }
  }
  const end = sampleCpu(c.cluster);
  const configs = {} as Record<LatencyConfig, LatencyFigures>;
  for (const k of latencyConfigs) {
    const q = latencyMs(histograms[k]);
    const t = totals[k];
    const avg = (f: (u: CpuUse) => number | null): number | null => (t.cpu.some((u) => f(u) === null) || t.cpu.length === 0 ? null : round(t.cpu.reduce((a, u) => a + f(u)!, 0) / t.cpu.length, 2));
    configs[k] = {
      site: k.startsWith('owner') ? owner : forwarder,
      durability: k.endsWith('Local') ? 'local' : 'quorum',
      requests: t.requests,
      errors: t.errors,
      non2xx: t.non2xx,
      rps: round(t.rps, 0),
      p50Ms: round(q.p50Ms, 3),
      p90Ms: round(q.p90Ms, 3),
      p99Ms: round(q.p99Ms, 3),
      maxMs: round(q.maxMs, 3),
      cpu: { sites: avg((u) => u.sites), bench: avg((u) => u.bench) ?? 0, other: avg((u) => u.other), seconds: round(t.cpu.reduce((a, u) => a + u.seconds, 0), 1) },
    };
    histograms[k].destroy();
  }
  const ratio = (x: LatencyConfig, y: LatencyConfig) => ({
    p50: configs[y].p50Ms === 0 ? 0 : round(configs[x].p50Ms / configs[y].p50Ms, 2),
    p99: configs[y].p99Ms === 0 ? 0 : round(configs[x].p99Ms / configs[y].p99Ms, 2),
  });
  return {
    owner,
    forwarder,
    connections: args.connections,
    warmupS: args.warmupS,
    secondsPerConfig: args.seconds,
    rounds: latencyRounds,
    configs,
    ratios: {
      quorumOverLocal: ratio('ownerQuorum', 'ownerLocal'),
      forwardedOverOwner: ratio('forwardedLocal', 'ownerLocal'),
      forwardedQuorumOverOwnerLocal: ratio('forwardedQuorum', 'ownerLocal'),
      forwardedQuorumOverOwnerQuorum: ratio('forwardedQuorum', 'ownerQuorum'),
    },
    machineCores: machineCores(start, end),
    loadAverage: { before: load0, after: loadavg().map((x) => round(x, 2)) },
  };
}

// ---------- output ----------

function pad(s: string | number | null, n: number): string {
  return String(s ?? '-').padStart(n);
}

function cpuText(u: CpuUse): string {
  return `sites ${u.sites ?? '-'}, bench ${u.bench}, other ${u.other ?? '-'} cores (of ${cpus().length})`;
}

function promotionTable(reports: LeaseReport[]): string[] {
  const lines = [
    '== promotion after SIGKILL of the ledger owner: 3 sites, quorum writes sent to the other sites, kill -> first 200 from the new owner ==',
    `${'leaseMs'.padEnd(8)} ${pad('kills', 6)} ${pad('median', 8)} ${pad('max', 8)} ${pad('min', 8)} ${pad('lost', 6)}  target`,
  ];
  for (const r of reports)
    lines.push(
      `${String(r.leaseMs).padEnd(8)} ${pad(r.kills.length, 6)} ${pad(r.promoteMs.median, 8)} ${pad(r.promoteMs.max, 8)} ${pad(r.promoteMs.min, 8)} ${pad(r.lostWrites + (r.unknownLost > 0 ? '?' : ''), 6)}  ${r.target}: ${r.pass ? 'PASS' : 'FAIL'}`,
    );
  lines.push('', 'per kill (ms): promote = detect (kill -> revoke proposed) + revoke (-> decided) + vouch/cut (-> install proposed) + install (-> decided) + lease/retry (-> first 200)');
  for (const r of reports) {
    const m = r.breakdownMedianMs;
    lines.push(`leaseMs ${r.leaseMs} (commitBudgetMs ${r.commitBudgetMs}), medians: detect ${m.detect ?? '-'}, revoke ${m.revoke ?? '-'}, vouch/cut ${m.vouchCut ?? '-'}, install ${m.install ?? '-'}, lease/retry ${m.leaseAndRetry ?? '-'}`);
    for (const k of r.kills) {
      const b = k.breakdown;
      lines.push(
        `  #${String(k.round).padEnd(3)} ${k.killed.padEnd(8)} -> ${(k.newOwner ?? '-').padEnd(8)} ${pad(k.promoteMs, 8)} = ${pad(b.detectMs, 5)} + ${pad(b.revokeMs, 4)} + ${pad(b.vouchCutMs, 5)} + ${pad(b.installMs, 4)} + ${pad(b.leaseAndRetryMs, 5)}` +
          `   acked ${k.writes.acked} (${k.writes.ackedAfterKill} after the kill), lost ${Object.entries(k.lost).map(([s, n]) => `${s} ${n ?? '?'}`).join(', ')}, caught up ${k.restartToCaughtUpMs ?? '-'} ms` +
          (b.installRefusals > 0 ? `, ${b.installRefusals} install refusals (last: ${b.lastRefusal ?? '-'})` : ''),
      );
    }
    lines.push(`  cpu over the kills: ${cpuText(r.cpu)}; machine busy ${r.machineCores ?? '-'} cores; load average ${r.loadAverage.before[0]} -> ${r.loadAverage.after[0]}`);
    if (r.cpu.other !== null && r.cpu.other > foreignCoresMax) lines.push(`  WARNING: other processes used ${r.cpu.other} cores during these kills; the machine was not quiet`);
  }
  return lines;
}

function latencyTable(r: LatencyReport): string[] {
  const lines = [
    `== added latency of forwarding and quorum: new ledger items, ${r.connections} connections closed loop, ${r.rounds} rounds (abcd, dcba) of ${r.warmupS} s warm-up + ${round(r.secondsPerConfig / r.rounds, 2)} s; owner ${r.owner}, forwarder ${r.forwarder} ==`,
    `${'config'.padEnd(24)} ${pad('writes/s', 9)} ${pad('p50 ms', 8)} ${pad('p90 ms', 8)} ${pad('p99 ms', 8)} ${pad('max ms', 8)} ${pad('errs', 5)}  cpu`,
  ];
  for (const k of latencyConfigs) {
    const f = r.configs[k];
    lines.push(
      `${latencyLabels[k].padEnd(24)} ${pad(f.rps, 9)} ${pad(f.p50Ms.toFixed(2), 8)} ${pad(f.p90Ms.toFixed(2), 8)} ${pad(f.p99Ms.toFixed(2), 8)} ${pad(f.maxMs.toFixed(1), 8)} ${pad(f.errors + f.non2xx, 5)}  ${cpuText(f.cpu)}`,
    );
  }
  const x = r.ratios;
  lines.push(
    '',
    `ratios p50 / p99: quorum b/a ${x.quorumOverLocal.p50} / ${x.quorumOverLocal.p99}; forwarding c/a ${x.forwardedOverOwner.p50} / ${x.forwardedOverOwner.p99}; both d/a ${x.forwardedQuorumOverOwnerLocal.p50} / ${x.forwardedQuorumOverOwnerLocal.p99}; forwarding under quorum d/b ${x.forwardedQuorumOverOwnerQuorum.p50} / ${x.forwardedQuorumOverOwnerQuorum.p99}`,
    `machine busy ${r.machineCores ?? '-'} cores of ${cpus().length} during the latency part; load average ${r.loadAverage.before[0]} -> ${r.loadAverage.after[0]}`,
  );
  const worst = Math.max(...latencyConfigs.map((k) => r.configs[k].cpu.other ?? 0));
  if (worst > foreignCoresMax) lines.push(`WARNING: other processes used up to ${worst} cores during the latency part; the machine was not quiet`);
  return lines;
}

// ---------- entry ----------

export async function runFailoverBench(argv: string[]): Promise<void> {
  const args = parseArgs(argv);
  if (args === undefined) {
    process.stdout.write(`${usage}\n`);
    return;
  }
  const parent = dataParent(args.dataDir);
  const fsType = fsTypeOf(parent) ?? 'unknown';
  process.stderr.write(`failover bench: data under ${parent} (${fsType}); ${cpus().length} cores; load average ${loadavg().map((x) => x.toFixed(2)).join(' ')}\n`);
  if (fsType === 'tmpfs') process.stderr.write('failover bench: warning: the data dir is on tmpfs, fsync is free there; pass --data-dir on a disk\n');
  const started = now();
  const dirs: string[] = [];
  const promotion: LeaseReport[] = [];
  let latency: LatencyReport | undefined;
  const quiet: number[] = [];
  try {
    for (const [i, leaseMs] of args.leaseMsList.entries()) {
      if (i > 0 && args.only === 'latency') break;
      const foreign = await waitQuiet(args.waitQuietS, `failover bench (leaseMs ${leaseMs})`);
      if (foreign !== undefined) quiet.push(foreign);
      const c = await startCluster(parent, leaseMs);
      dirs.push(c.dataDir);
      try {
        if (i === 0 && args.only !== 'promote') latency = await runLatency(c, args);
        if (args.only !== 'latency') promotion.push(await runPromotion(c, args));
      } finally {
        await c.cluster.stop(10_000);
      }
    }
  } finally {
    if (!args.keep) for (const d of dirs) rmSync(d, { recursive: true, force: true });
    else process.stderr.write(`failover bench: kept ${dirs.join(', ')}\n`);
  }

  const pass = promotion.every((r) => r.pass);
  const report = {
    bench: 'failover',
    at: new Date(realClock.wallMs()).toISOString(),
    node: process.version,
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model ?? 'unknown',
    fsType,
    elapsedS: round((now() - started) / 1000, 1),
    otherCoresBeforeEachCluster: quiet,
    targets: { promoteMsMaxAtDefault: promoteMsMaxDefault, promoteMsBelowAtLease500: promoteMsBelowFast, lostWrites: 0 },
    writersPerSite: args.writers,
    promotion,
    latency: latency ?? null,
    pass: { promotion: promotion.length > 0 ? pass : null },
  };
  mkdirSync(dirname(resolve(args.out)), { recursive: true });
  writeFileSync(args.out, JSON.stringify(report, null, 2) + '\n');
  const lines = [...(latency ? [...latencyTable(latency), ''] : []), ...(promotion.length > 0 ? [...promotionTable(promotion), ''] : [])];
  lines.push(`overall: ${promotion.length === 0 ? 'no promotion measured' : pass ? 'PASS' : 'FAIL'} (${report.elapsedS} s)`);
  process.stdout.write(`${lines.join('\n')}\n${JSON.stringify(report)}\n`);
  process.stderr.write(`failover bench: report written to ${args.out}\n`);
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  try {
    await runFailoverBench(process.argv.slice(2));
  } catch (error) {
    process.stderr.write(`${error instanceof BenchUsageError ? error.message : ((error as Error).stack ?? String(error))}\n`);
    process.exit(error instanceof BenchUsageError ? 2 : 1);
  }
  // Exit explicitly: keep-alive sockets would otherwise keep the process alive.
  process.exit(0);
}
