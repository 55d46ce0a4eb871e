// Router benchmark (issue 4): requests/s and added latency of the router versus a direct connection
// to the same upstream and versus nginx as a reverse proxy to it, in one run on loopback. The
// upstream, the router and nginx each run as their own process; the load generator (undici, N
// keep-alive connections, closed loop) runs here. Two phases per target: throughput with N
// connections, then unloaded latency with one connection (added latency = target − direct).
// `npm run bench -- router [--duration S] [--connections N] [--out FILE]`, or
// `node dist/bench/router.bench.js` after `npm run build`. Bounded: about 35 s with the defaults.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import * as hdr from 'hdr-histogram-js';
import { Pool } from 'undici';
import { realClock, realTimers } from '../platform/real/real-env.js';
import { stubSiteScript } from '../router/testing/stub-site.js';
import { freePort } from '../cluster/ports.js';

interface BenchArgs {
  durationS: number;
  latencyS: number;
  connections: number;
  out: string;
}

interface TargetResult {
  url: string;
  requestsPerSecond: number;
  loadedP50Us: number;
  loadedP99Us: number;
  p50Us: number;
  p99Us: number;
  errors: number;
}

function parseArgs(args: string[]): BenchArgs {
  const out: BenchArgs = { durationS: 5, latencyS: 3, connections: 32, out: 'bench-results/router.json' };
  for (let i = 0; i < args.length; i++) {
    const flag = args[i];
    const value = args[i + 1];
    const num = Number(value);
    if (flag === '--duration' && num > 0 && num <= 15) out.durationS = num;
    else if (flag === '--latency-duration' && num > 0 && num <= 10) out.latencyS = num;
    else if (flag === '--connections' && Number.isInteger(num) && num > 0 && num <= 512) out.connections = num;
    else if (flag === '--out' && value !== undefined) out.out = value;
    else if (flag === 'router') continue;
    else throw new Error(`router bench: bad flag ${flag} ${value ?? ''} (--duration 1..15, --latency-duration 1..10, --connections 1..512, --out FILE)`);
    i += 1;
  }
  return out;
}

/** Spawns a process and resolves with the first stdout line that matches. */
function spawnUntil(command: string, args: string[], env: NodeJS.ProcessEnv, pattern: RegExp, timeoutMs: number): Promise<{ child: ChildProcess; match: RegExpMatchArray }> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    const timer = realTimers.after(timeoutMs, () => {
      child.kill('SIGKILL');
      reject(new Error(`${command} did not start in ${timeoutMs} ms: ${err.slice(-500)}`));
    });
    child.stdout!.on('data', (c: Buffer) => {
      out += c.toString();
      const m = pattern.exec(out);
      if (m) {
        timer.cancel();
        resolve({ child, match: m });
      }
    });
    child.stderr!.on('data', (c: Buffer) => (err += c.toString()));
    child.once('exit', (code) => {
      timer.cancel();
      reject(new Error(`${command} exited with ${code}: ${err.slice(-500)}`));
    });
  });
}

async function waitHttp(url: string, timeoutMs: number): Promise<void> {
  const started = realClock.monotonicMs();
  const pool = new Pool(new URL(url).origin);
  try {
    for (;;) {
      try {
        const res = await pool.request({ path: new URL(url).pathname, method: 'GET' });
        await res.body.text();
        if (res.statusCode < 500) return;
      } catch {
        // not up yet
      }
      if (realClock.monotonicMs() - started > timeoutMs) throw new Error(`${url} did not answer in ${timeoutMs} ms`);
      await realTimers.sleep(50);
    }
  } finally {
    await pool.close();
  }
}

/** Closed-loop load: `connections` workers, each sends its next request when the last one ends. */
async function load(url: string, connections: number, durationS: number): Promise<{ rps: number; p50Us: number; p99Us: number; errors: number }> {
  const origin = new URL(url).origin;
  const pool = new Pool(origin, { connections, pipelining: 1, keepAliveTimeout: 60_000 });
  const histogram = hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: 3 });
  let count = 0;
  let errors = 0;
  const warmupEnd = realClock.monotonicMs() + 500;
  const end = warmupEnd + durationS * 1000;
  const worker = async () => {
    for (;;) {
      const t0 = realClock.monotonicMs();
      if (t0 >= end) return;
      try {
        const res = await pool.request({ path: '/bench', method: 'GET' });
        await res.body.dump();
        if (res.statusCode !== 200) errors += 1;
      } catch {
        errors += 1;
      }
      const t1 = realClock.monotonicMs();
      if (t0 >= warmupEnd) {
        count += 1;
        histogram.recordValue(Math.max(1, Math.round((t1 - t0) * 1000)));
      }
    }
  };
  await Promise.all(Array.from({ length: connections }, worker));
  await pool.close();
  const result = { rps: count / durationS, p50Us: histogram.getValueAtPercentile(50), p99Us: histogram.getValueAtPercentile(99), errors };
  histogram.destroy();
  return result;
}

async function measure(url: string, args: BenchArgs): Promise<TargetResult> {
  const loaded = await load(url, args.connections, args.durationS);
  const unloaded = await load(url, 1, args.latencyS);
  return {
    url,
    requestsPerSecond: Math.round(loaded.rps),
    loadedP50Us: loaded.p50Us,
    loadedP99Us: loaded.p99Us,
    p50Us: unloaded.p50Us,
    p99Us: unloaded.p99Us,
    errors: loaded.errors + unloaded.errors,
  };
}

function nginxBinary(): string | undefined {
  const found = (bin: string) => spawnSync(bin, ['-v'], { stdio: 'ignore' }).status === 0;
  for (const bin of ['nginx', '/usr/sbin/nginx']) if (found(bin)) return bin;
  if (process.getuid?.() !== 0) return undefined;
  process.stderr.write('router bench: nginx missing, installing it from Debian packages…\n');
  spawnSync('apt-get', ['update', '-qq'], { stdio: 'ignore', timeout: 120_000 });
  spawnSync('apt-get', ['install', '-y', '-qq', 'nginx'], { stdio: 'ignore', timeout: 180_000, env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
  for (const bin of ['nginx', '/usr/sbin/nginx']) if (found(bin)) return bin;
  return undefined;
}

function nginxConfig(dir: string, listenPort: number, upstreamPort: number): string {
  return `daemon off;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  keepalive_requests 1000000;
  upstream site { server 127.0.0.1:${upstreamPort}; keepalive 256; }
  server {
    listen 127.0.0.1:${listenPort};
    location / {
      proxy_pass http://site;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    }
  }
}
`;
}

/** The router in its own process, from the built module next to this file. */
const routerChildScript = `
const { startRouter } = await import(process.env.ROUTER_MODULE);
const { parseConfig } = await import(process.env.CONFIG_MODULE);
const { silentLogger } = await import(process.env.ENV_MODULE);
const { realClock, realTimers, realRandom, realTransport } = await import(process.env.REAL_ENV_MODULE);
const env = { clock: realClock, timers: realTimers, random: realRandom, transport: realTransport(), log: silentLogger };
const router = await startRouter(parseConfig(JSON.parse(process.env.ROUTER_CONFIG)), { env, dnsListen: null });
process.stdout.write('router ' + router.url + '\\n');
process.on('SIGTERM', () => router.stop().then(() => process.exit(0)));
`;

function ratio(a: number, b: number): number {
  return b === 0 ? 0 : Math.round((a / b) * 100) / 100;
}

export async function runRouterBench(argv: string[]): Promise<void> {
  const args = parseArgs(argv);
  const here = dirname(fileURLToPath(import.meta.url));
  const moduleUrl = (rel: string) => pathToFileURL(join(here, rel)).href;
  const work = mkdtempSync(join(tmpdir(), 'tandem-router-bench-'));
  const children: ChildProcess[] = [];
  try {
    const upstreamPort = await freePort();
    const upstream = await spawnUntil(process.execPath, ['--input-type=module', '-e', stubSiteScript], { ...process.env, STUB_SITE: 'bench', STUB_PORT: String(upstreamPort) }, /listening (\d+)/, 10_000);
    children.push(upstream.child);
    const directUrl = `http://127.0.0.1:${upstreamPort}`;
    await waitHttp(`${directUrl}/ready`, 10_000);

    const routerConfig = {
      cluster: 'bench',
      secret: 'bench-secret-0123456789',
      sites: [{ id: 'bench', url: directUrl }],
      tables: {},
      router: { listen: '127.0.0.1:0', policy: 'latency', healthCheck: { intervalMs: 1000 } },
    };
    const router = await spawnUntil(
      process.execPath,
      ['--input-type=module', '-e', routerChildScript],
      {
        ...process.env,
        ROUTER_MODULE: moduleUrl('../router/index.js'),
        CONFIG_MODULE: moduleUrl('../config/load.js'),
        ENV_MODULE: moduleUrl('../platform/env.js'),
        REAL_ENV_MODULE: moduleUrl('../platform/real/real-env.js'),
        ROUTER_CONFIG: JSON.stringify(routerConfig),
      },
      /router (http:\/\/\S+)/,
      15_000,
    );
    children.push(router.child);
    const routerUrl = router.match[1]!;

    let nginxUrl: string | undefined;
    const nginx = nginxBinary();
    if (nginx !== undefined) {
      const nginxPort = await freePort();
      const conf = join(work, 'nginx.conf');
      writeFileSync(conf, nginxConfig(work, nginxPort, upstreamPort));
      const child = spawn(nginx, ['-c', conf, '-p', work], { stdio: 'ignore' });
      children.push(child);
      nginxUrl = `http://127.0.0.1:${nginxPort}`;
      await waitHttp(`${nginxUrl}/ready`, 10_000);
    }

    const results: Record<string, TargetResult> = {};
    process.stderr.write(`router bench: ${args.connections} connections, ${args.durationS} s loaded + ${args.latencyS} s unloaded per target\n`);
    results.direct = await measure(directUrl, args);
    results.router = await measure(routerUrl, args);
    if (nginxUrl !== undefined) results.nginx = await measure(nginxUrl, args);

    const direct = results.direct;
    const added = (t: TargetResult) => ({ p50Us: t.p50Us - direct.p50Us, p99Us: t.p99Us - direct.p99Us });
    const report = {
      bench: 'router',
      connections: args.connections,
      durationS: args.durationS,
      latencyDurationS: args.latencyS,
      node: process.version,
      targets: results,
      added: Object.fromEntries(Object.entries(results).filter(([k]) => k !== 'direct').map(([k, t]) => [k, added(t)])),
      ratios: {
        routerVsDirect: ratio(results.router.requestsPerSecond, direct.requestsPerSecond),
        ...(results.nginx === undefined
          ? {}
          : {
              nginxVsDirect: ratio(results.nginx.requestsPerSecond, direct.requestsPerSecond),
              routerVsNginx: ratio(results.router.requestsPerSecond, results.nginx.requestsPerSecond),
            }),
      },
      targetsMet: {
        addedP50AtMost1ms: added(results.router).p50Us <= 1000,
        atLeastHalfOfNginx: results.nginx === undefined ? null : results.router.requestsPerSecond >= results.nginx.requestsPerSecond * 0.5,
      },
      ...(nginxUrl === undefined ? { note: 'nginx not available: install it (apt-get install -y nginx) for the comparison' } : {}),
    };
    mkdirSync(dirname(args.out), { recursive: true });
    writeFileSync(args.out, JSON.stringify(report, null, 2) + '\n');

    const rows = Object.entries(results).map(([name, t]) => [
      name.padEnd(7),
      String(t.requestsPerSecond).padStart(8),
      ratio(t.requestsPerSecond, direct.requestsPerSecond).toFixed(2).padStart(6),
      String(t.loadedP50Us).padStart(9),
      String(t.loadedP99Us).padStart(9),
      String(t.p50Us).padStart(8),
      String(t.p99Us).padStart(8),
      (name === 'direct' ? '-' : String(added(t).p50Us)).padStart(10),
      (name === 'direct' ? '-' : String(added(t).p99Us)).padStart(10),
      String(t.errors).padStart(6),
    ]);
    const header = ['target ', '   req/s', ' ×dir', ' load p50', ' load p99', ' 1c p50', ' 1c p99', ' +p50 (µs)', ' +p99 (µs)', ' errs'];
    process.stdout.write(`${header.join(' ')}\n${rows.map((r) => r.join(' ')).join('\n')}\n`);
    process.stdout.write(`latencies in µs; "load" with ${args.connections} connections, "1c" with one; +p50/+p99: added over direct (1c)\n`);
    process.stdout.write(`${JSON.stringify(report)}\n`);
    process.stderr.write(`router bench: report written to ${args.out}\n`);
  } finally {
    for (const c of children) if (c.exitCode === null) c.kill('SIGTERM');
    await realTimers.sleep(200);
    for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
    rmSync(work, { recursive: true, force: true });
  }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  await runRouterBench(process.argv.slice(2));
}
