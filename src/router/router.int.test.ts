// The router with real processes: three site processes (`tandem site` from dist/ when built, else a
// standalone stub site script), a steady stream of GETs and unconditional PUTs through the router,
// then kill -9 of one site and SIGSTOP of another. No client may see an error; the dead site stops
// getting requests within intervalMs × unhealthyAfter (sooner, by passive ejection) and gets
// traffic again after it comes back. Also: `tandem router` as a process prints its endpoints and
// exits 0 on SIGTERM.
import { afterAll, describe, expect, it } from 'vitest';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Agent, request } from 'undici';
import { silentLogger } from '../platform/env.js';
import { realClock, realRandom, realTimers, realTransport } from '../platform/real/real-env.js';
import { startRouter, type RunningRouter } from './index.js';
import { sleep, stubSiteScript, waitFor } from './testing/stub-site.js';
import { freePort } from '../cluster/ports.js';

const mainJs = resolve(import.meta.dirname, '../../dist/cli/main.js');
/** Whether the built `tandem` runs this subcommand (dist/ is built by `npm test`; it may be absent or stale). */
const builtCommandWorks = (command: string) =>
  existsSync(mainJs) && spawnSync(process.execPath, [mainJs, command, '--help'], { stdio: 'ignore', timeout: 20_000 }).status === 0;
const useTandemSite = builtCommandWorks('site');
const cliRouterWorks = builtCommandWorks('router');
const dir = mkdtempSync(join(tmpdir(), 'tandem-router-int-'));
const children = new Set<ChildProcess>();

afterAll(() => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

interface SiteProcess {
  id: string;
  port: number;
  child: ChildProcess;
}

const configPath = join(dir, 'cluster.json');

function spawnSite(id: string, port: number): ChildProcess {
  const child = useTandemSite
    ? spawn(process.execPath, [mainJs, 'site', '--config', configPath, '--site', id, '--data-dir', join(dir, id)], { stdio: ['ignore', 'ignore', 'pipe'] })
    : spawn(process.execPath, ['--input-type=module', '-e', stubSiteScript], { stdio: 'ignore', env: { ...process.env, STUB_SITE: id, STUB_PORT: String(port) } });
  children.add(child);
  child.stderr?.on('data', (c: Buffer) => siteErrors.push(`${id}: ${c.toString()}`));
  return child;
}
const siteErrors: string[] = [];

async function waitReady(port: number): Promise<void> {
  await waitFor(
    async () => {
      try {
        const res = await request(`http://127.0.0.1:${port}/ready`);
        await res.body.text();
        return res.statusCode === 200;
      } catch {
        return false;
      }
    },
    20_000,
    `site on port ${port} to be ready`,
  );
}

interface LoadStats {
  ok: number;
  errors: string[];
  bySite: Map<string, number>;
}

/** Closed-loop clients: each PUTs a key, then GETs it, until stopped. */
function startLoad(url: string, workers: number): { stop(): Promise<LoadStats> } {
  const agent = new Agent({ connections: workers });
  const stats: LoadStats = { ok: 0, errors: [], bySite: new Map() };
  let running = true;
  const one = async (method: 'GET' | 'PUT', path: string, body?: string) => {
    try {
      const res = await request(`${url}${path}`, { method, body, headers: { 'content-type': 'application/json' }, dispatcher: agent });
      await res.body.text();
      if (res.statusCode >= 500) stats.errors.push(`${method} ${path}: ${res.statusCode} ${String(res.headers['tandem-outcome'] ?? '')}`);
      else {
        stats.ok += 1;
        const site = String(res.headers['tandem-site']);
        stats.bySite.set(site, (stats.bySite.get(site) ?? 0) + 1);
      }
    } catch (err) {
      stats.errors.push(`${method} ${path}: ${(err as Error).message}`);
    }
  };
  const loops = Array.from({ length: workers }, async (_, w) => {
    for (let i = 0; running; i++) {
      const path = `/v1/tables/profiles/items/w${w}-k${i % 50}`;
      await one('PUT', path, JSON.stringify({ w, i }));
      await one('GET', path);
    }
  });
  return {
    async stop() {
      running = false;
      await Promise.all(loops);
      await agent.close();
      return stats;
    },
  };
}

describe.sequential('router with real site processes', () => {
  let sites: SiteProcess[] = [];
  let router: RunningRouter;
  const transport = realTransport();
  const intervalMs = 100;
  const unhealthyAfter = 3;
  const healthyAfter = 2;
  const upstreamTimeoutMs = 1000;
  const slackMs = 1500; // a loaded 2-core machine

  it(`starts three sites (${useTandemSite ? 'tandem site' : 'stub site script'}) and a router`, async () => {
    const ids = ['us-east', 'eu-west', 'ap-south'];
    const ports = await Promise.all(ids.map(() => freePort()));
    writeFileSync(
      configPath,
      JSON.stringify({
        cluster: 'int',
        secret: 'int-test-secret-0123456789',
        sites: ids.map((id, i) => ({ id, url: `http://127.0.0.1:${ports[i]}` })),
        tables: { profiles: { pattern: 'local' } },
        router: {
          listen: '127.0.0.1:0',
          policy: 'weighted',
          healthCheck: { intervalMs, timeoutMs: 300, unhealthyAfter, healthyAfter },
          upstreamTimeoutMs,
        },
      }),
    );
    sites = ids.map((id, i) => ({ id, port: ports[i]!, child: spawnSite(id, ports[i]!) }));
    await Promise.all(sites.map((s) => waitReady(s.port))).catch((err: unknown) => {
      throw new Error(`${(err as Error).message}\n${siteErrors.join('')}`);
    });
    const { loadConfigFile } = await import('../config/load.js');
    router = await startRouter(loadConfigFile(configPath), {
      env: { clock: realClock, timers: realTimers, random: realRandom, transport, log: silentLogger },
      dnsListen: null,
    });
    for (const s of sites) expect(router.status().sites[s.id]!.healthy).toBe(true);
  });

  it('kill -9 of a site under load: no client-visible error, ejected in time, back after it restarts', async () => {
    const load = startLoad(router.url, 4);
    await sleep(800);
    const victim = sites[0]!;
    victim.child.kill('SIGKILL');
    const killedAt = realClock.monotonicMs();
    await waitFor(() => !router.status().sites[victim.id]!.healthy, 10_000, 'the killed site to be ejected');
    const ejectMs = realClock.monotonicMs() - killedAt;
    expect(ejectMs).toBeLessThan(intervalMs * unhealthyAfter + slackMs);
    const attemptsAtEject = router.status().sites[victim.id]!.attempts;
    await sleep(700);
    expect(router.status().sites[victim.id]!.attempts).toBe(attemptsAtEject); // no new requests while down

    victim.child = spawnSite(victim.id, victim.port);
    await waitReady(victim.port);
    const restartedAt = realClock.monotonicMs();
    await waitFor(() => router.status().sites[victim.id]!.healthy, 10_000, 'the restarted site to be healthy again');
    expect(realClock.monotonicMs() - restartedAt).toBeLessThan(intervalMs * (healthyAfter + 1) + slackMs);
    const servedBefore = router.status().sites[victim.id]!.requests;
    await waitFor(() => router.status().sites[victim.id]!.requests > servedBefore + 5, 10_000, 'traffic to return to the restarted site');
    const stats = await load.stop();
    expect(stats.errors).toEqual([]);
    expect(stats.ok).toBeGreaterThan(100);
  });

  it('SIGSTOP of a site under load: ejected within the timeout, no client-visible error', async () => {
    const load = startLoad(router.url, 4);
    await sleep(500);
    const paused = sites[1]!;
    paused.child.kill('SIGSTOP');
    const pausedAt = realClock.monotonicMs();
    try {
      await waitFor(() => !router.status().sites[paused.id]!.healthy, 10_000, 'the paused site to be ejected');
      expect(realClock.monotonicMs() - pausedAt).toBeLessThan(Math.max(upstreamTimeoutMs, intervalMs * unhealthyAfter + 300) + slackMs);
      await sleep(upstreamTimeoutMs + 300); // requests in flight at the pause time out and are retried
    } finally {
      paused.child.kill('SIGCONT');
    }
    await waitFor(() => router.status().sites[paused.id]!.healthy, 10_000, 'the resumed site to be healthy again');
    const stats = await load.stop();
    expect(stats.errors).toEqual([]);
  });

  it('stops cleanly', async () => {
    await router.stop();
    await transport.close();
    for (const s of sites) s.child.kill('SIGTERM');
  });
});

describe.skipIf(!cliRouterWorks)('tandem router as a process', () => {
  it('prints its endpoints, serves, and exits 0 on SIGTERM', async () => {
    const port = await freePort();
    const file = join(dir, 'router-cli.json');
    writeFileSync(
      file,
      JSON.stringify({
        cluster: 'cli',
        secret: 'cli-test-secret-0123456789',
        sites: [{ id: 'a', url: `http://127.0.0.1:${port}` }],
        tables: {},
        router: { listen: '127.0.0.1:0', dns: { listen: '127.0.0.1:0', zone: 'cli.test' }, healthCheck: { intervalMs: 100 } },
      }),
    );
    const child = spawn(process.execPath, [mainJs, 'router', '--config', file], { stdio: ['ignore', 'pipe', 'pipe'] });
    children.add(child);
    let out = '';
    child.stdout!.on('data', (c: Buffer) => (out += c.toString()));
    await waitFor(() => out.includes('dns udp+tcp'), 15_000, 'the router to print its endpoints');
    const lines = out.trim().split('\n');
    expect(lines[0]).toMatch(/^router http:\/\/127\.0\.0\.1:\d+$/);
    expect(lines[1]).toMatch(/^dns udp\+tcp 127\.0\.0\.1:\d+ zone cli\.test$/);
    const url = lines[0]!.slice('router '.length);
    const status = await request(`${url}/_tandem/router/status`);
    expect(status.statusCode).toBe(200);
    await status.body.text();
    // no site is up: fail open still answers, with a 502 from the router
    const res = await request(`${url}/x`);
    expect(res.statusCode).toBe(502);
    await res.body.text();
    const dial = spawn(process.execPath, [mainJs, 'dial', 'a', '40', '--url', url], { stdio: ['ignore', 'pipe', 'pipe'] });
    const dialCode = await new Promise<number | null>((r) => dial.once('exit', r));
    expect(dialCode).toBe(0);
    const bad = spawn(process.execPath, [mainJs, 'dial', 'a', '140', '--url', url], { stdio: 'ignore' });
    expect(await new Promise<number | null>((r) => bad.once('exit', r))).toBe(2);
    const exit = new Promise<number | null>((r) => child.once('exit', r));
    child.kill('SIGTERM');
    expect(await exit).toBe(0);
  });
});
