// The three ways ownership moves when a majority or a site is missing, with real processes:
// `failover --force` on two data sites without a witness, `degradedDurability: allow` on two data
// sites with a witness, and the handover a site runs on SIGTERM before it stops.
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { parseConfig } from '../config/load.js';
import type { ClusterConfig } from '../config/schema.js';
import { cliEntry, LocalCluster } from '../cluster/local-cluster.js';
import { freePortRange } from '../cluster/ports.js';
import { realTimers } from '../platform/real/real-env.js';
import { limits } from '../limits.js';
import { call, itemUrl, waitFor } from '../cluster/testing/http-client.js';

const scanLimit = limits.scanLimitMax;

const run = promisify(execFile);
const clusters: { cluster: LocalCluster; dir: string }[] = [];
afterEach(async () => {
  for (const { cluster, dir } of clusters.splice(0)) {
    await cluster.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

async function startCluster(options: { sites: number; witnesses?: number; leaseMs: number; degraded?: 'allow' }): Promise<{ cluster: LocalCluster; config: ClusterConfig }> {
  const base = await freePortRange(options.sites + (options.witnesses ?? 0) + 1);
  const ids = ['us-east', 'eu-west', 'ap-south'].slice(0, options.sites);
  const config = parseConfig(
    {
      cluster: 'fo',
      secret: 'failover-test-secret-0123456789',
      sites: ids.map((id, i) => ({ id, url: `http://127.0.0.1:${base + 1 + i}` })),
      witnesses: Array.from({ length: options.witnesses ?? 0 }, (_, i) => ({ id: `w${i + 1}`, url: `http://127.0.0.1:${base + 1 + options.sites + i}` })),
      tables: { ledger: { pattern: 'global', writeSite: 'us-east', durability: 'quorum' }, profiles: { pattern: 'local' } },
      topology: { leaseMs: options.leaseMs, commitBudgetMs: Math.floor(options.leaseMs / 10), ...(options.degraded ? { degradedDurability: options.degraded } : {}) },
      router: { listen: `127.0.0.1:${base}` },
    },
    'test config',
  );
  const dir = mkdtempSync(join(tmpdir(), 'tandem-forced-'));
  const cluster = new LocalCluster({ config, dataDir: dir, withRouter: false });
  clusters.push({ cluster, dir });
  await cluster.start();
  return { cluster, config };
}

const item = (base: string, key: string) => itemUrl(base, 'ledger', key);

interface TopologyView {
  epoch: number;
  owners: Record<string, string | null>;
  members: { id: string; state: string }[];
  history: { action: string; by: string; why: string; forced?: boolean }[];
}

async function topologyOf(url: string): Promise<TopologyView | undefined> {
  const r = await call('GET', `${url}/v1/topology`);
  return r.status === 200 ? (r.json as unknown as TopologyView) : undefined;
}

const stateOf = (t: TopologyView | undefined, id: string) => t?.members.find((m) => m.id === id)?.state;

/** Runs the CLI; resolves with its exit code and output (a refusal exits 1, bad usage 2). */
async function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const out = await run(process.execPath, [cliEntry, ...args]);
    return { code: 0, stdout: out.stdout, stderr: out.stderr };
  } catch (e) {
    const err = e as { code?: number; stdout?: string; stderr?: string };
    return { code: err.code ?? -1, stdout: err.stdout ?? '', stderr: err.stderr ?? '' };
  }
}

/** A write loop at `url` (quorum and local durability in turn) until stopped: the keys acknowledged. */
function writers(urls: string[], prefix: string) {
  const acked: string[] = [];
  const refused: string[] = [];
  let stop = false;
  let n = 0;
  const loops = urls.map(async (url) => {
    while (!stop) {
      const i = n++;
      const key = `${prefix}-${i}`;
      const r = await call('PUT', item(url, key), { v: i }, { headers: { 'tandem-durability': i % 2 === 0 ? 'quorum' : 'local' } });
      if (r.status === 200) acked.push(key);
      else refused.push(`${r.status} ${String(r.json.detail ?? '').slice(0, 120)}`);
    }
  });
  return {
    acked,
    refused,
    async stop() {
      stop = true;
      await Promise.all(loops);
    },
  };
}

/** The acknowledged keys a site does not have (one scan of the table, page by page). */
async function missingAt(url: string, keys: string[]): Promise<string[]> {
  const have = new Set<string>();
  let cursor: string | undefined;
  for (let page = 0; page < 100; page++) {
    const r = await call('GET', `${url}/v1/tables/ledger/items?limit=${scanLimit}${cursor !== undefined ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
    for (const it of (r.json.items as { key: string }[] | undefined) ?? []) have.add(it.key);
    cursor = typeof r.json.cursor === 'string' ? r.json.cursor : undefined;
    if (cursor === undefined) break;
  }
  return keys.filter((k) => !have.has(k));
}

describe('failover without a majority, degraded durability, handover on SIGTERM (real processes)', () => {
  it('two data sites, no witness, the owner killed: plain failover refuses, --force promotes the survivor, the killed site returns without admitting writes', async () => {
    const { cluster, config } = await startCluster({ sites: 2, leaseMs: 500 });
    const [east, west] = config.sites.map((s) => s.url) as [string, string];
    expect((await call('PUT', item(west, 'before'), { v: 1 })).status).toBe(200);
    await cluster.kill('us-east');
    const killedAt = performance.now();

    // (the API, as the CLI sends it; the CLI itself prints the dry run)
    const admin = (body: Record<string, unknown>) => call('POST', `${west}/v1/admin/failover`, body);
    const plain = await admin({ site: 'us-east' });
    expect(plain.status).toBe(409);
    expect(JSON.stringify(plain.json.refused)).toMatch(/majority-reachable: 1 of 2 voters answer/);
    const unconfirmed = await admin({ site: 'us-east', force: true, confirm: 'not-the-name' });
    expect(unconfirmed.status).toBe(400);
    expect(String(unconfirmed.json.detail)).toMatch(/body\.confirm/);

    const dry = await cli(['failover', '--site', 'us-east', '--url', west, '--force', '--dry-run']);
    expect(dry.code).toBe(0);
    expect(dry.stdout).toMatch(/split-brain risk: us-east did not answer/);
    expect(dry.stdout).toMatch(/ledger: us-east -> eu-west/);
    expect(dry.stdout).toMatch(/owned writes beyond \d+ become void/);
    expect((await topologyOf(west))!.owners['ledger']).toBe('us-east');

    const forced = await admin({ site: 'us-east', force: true, confirm: 'fo', why: 'us-east lost' });
    expect(forced.status, JSON.stringify(forced.json)).toBe(200);
    const answer = forced.json as { down: string[]; cut: { origin: string; seq: number }[]; votersAfter: string[] };
    expect(answer.down).toEqual(['us-east']);
    expect(answer.votersAfter).toEqual(['eu-west']);
    expect(answer.cut.some((c) => c.origin.startsWith('us-east.'))).toBe(true);
    const t = (await topologyOf(west))!;
    expect(t.owners['ledger']).toBe('eu-west');
    expect(stateOf(t, 'us-east')).toBe('down');
    expect(t.history.some((h) => h.action === 'forced-failover' && h.forced === true && h.why === 'us-east lost')).toBe(true);

    // writes resume: local durability at once; quorum still counts us-east (degradedDurability: refuse)
    let local = await call('PUT', item(west, 'after-force'), { v: 1 }, { headers: { 'tandem-durability': 'local' } });
    for (let i = 0; i < 40 && local.status === 503; i++) {
      await realTimers.sleep(100);
      local = await call('PUT', item(west, 'after-force'), { v: 1 }, { headers: { 'tandem-durability': 'local' } });
    }
    expect(local.status).toBe(200);
    expect(local.json.origin).toBe('eu-west');
    // (a peer counts as heard from for three heartbeats, 1.5 s here, after its last frame)
    await realTimers.sleep(Math.max(0, killedAt + 2_000 - performance.now()));
    const quorum = await call('PUT', item(west, 'quorum-while-down'), { v: 1 });
    expect(quorum.status, JSON.stringify(quorum.json)).toBe(503);
    expect(quorum.json.type).toMatch(/quorum-unavailable/);

    // the killed site returns: it learns the forced epoch, owns nothing, admits no write of its own
    cluster.startSite('us-east');
    await waitFor('us-east learns the forced epoch', async () => ((await topologyOf(east))?.epoch ?? 0) >= t.epoch);
    const atEast = await call('PUT', item(east, 'at-returned'), { v: 1 }, { headers: { 'tandem-durability': 'local' } });
    expect(atEast.json.origin).not.toBe('us-east');
    // caught up, it is made active again by an epoch: quorum writes count it again
    await waitFor('us-east active again', async () => stateOf(await topologyOf(west), 'us-east') === 'active');
    await waitFor('a quorum write', async () => (await call('PUT', item(west, 'quorum-after-return'), { v: 1 })).status === 200);
    expect((await topologyOf(west))!.owners['ledger']).toBe('eu-west');
    expect(await missingAt(east, ['before', 'after-force'])).toEqual([]);
  });

  it('degradedDurability: allow: two data sites and a witness, one killed: the survivor owns, marks it down, quorum writes go on marked degraded, and it comes back active', async () => {
    const { cluster, config } = await startCluster({ sites: 2, witnesses: 1, leaseMs: 500, degraded: 'allow' });
    const [, west] = config.sites.map((s) => s.url) as [string, string];
    const healthy = await call('PUT', item(west, 'healthy'), { v: 1 });
    expect(healthy.status).toBe(200);
    expect(healthy.headers?.get('tandem-durability')).toBeNull();
    await cluster.kill('us-east');
    await waitFor('us-east down and eu-west owner', async () => {
      const t = await topologyOf(west);
      return stateOf(t, 'us-east') === 'down' && t?.owners['ledger'] === 'eu-west';
    });
    let degraded = await call('PUT', item(west, 'degraded'), { v: 1 });
    for (let i = 0; i < 40 && degraded.status === 503; i++) {
      await realTimers.sleep(100);
      degraded = await call('PUT', item(west, 'degraded'), { v: 1 });
    }
    expect(degraded.status).toBe(200);
    expect(degraded.headers?.get('tandem-durability')).toBe('degraded');
    expect(degraded.headers?.get('tandem-degraded-sites')).toBe('us-east');
    const metrics = await (await fetch(`${west}/metrics`)).text();
    expect(metrics).toMatch(/tandem_degraded_durability_writes_total\{level="quorum"\} [1-9]/);

    cluster.startSite('us-east');
    await waitFor('us-east active again', async () => stateOf(await topologyOf(west), 'us-east') === 'active');
    const whole = await call('PUT', item(west, 'whole-again'), { v: 1 });
    expect(whole.status).toBe(200);
    expect(whole.headers?.get('tandem-durability')).toBeNull();
  });

  it('SIGTERM of the owner under writes: ownership moves by switchover (no lease wait), no acknowledged write lost', async () => {
    const { cluster, config } = await startCluster({ sites: 3, leaseMs: 2_000 });
    const [, west, south] = config.sites.map((s) => s.url) as [string, string, string];
    const load = writers([west, south], 'k');
    await waitFor('some writes', async () => load.acked.length >= 10);
    await cluster.kill('us-east', 'SIGTERM');
    const t = (await topologyOf(west))!;
    // handed over before it exited (and the new owner told): a planned switchover, not a revoke after the lease lapsed
    expect(t.owners['ledger']).toBe('eu-west');
    expect(t.history.some((h) => h.action === 'switchover' && h.by === 'us-east' && /SIGTERM/.test(h.why))).toBe(true);
    expect(t.history.some((h) => h.action === 'revoke')).toBe(false);
    const before = load.acked.length;
    await waitFor('writes after the stop', async () => load.acked.length > before + 10);
    await load.stop();
    expect(await missingAt(west, load.acked)).toEqual([]);
    expect(await missingAt(south, load.acked)).toEqual([]);
  });
});
