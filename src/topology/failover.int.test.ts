// Failover with real processes and sockets: the owner of a global table is killed (SIGKILL) or
// stopped (SIGSTOP) under quorum writes sent to the other sites; a planned switchover, an
// evacuation and a failback run under load; two data sites fail over only with a witness.
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
import { call, itemUrl, waitFor } from '../cluster/testing/http-client.js';

const run = promisify(execFile);
const clusters: { cluster: LocalCluster; dir: string }[] = [];
afterEach(async () => {
  for (const { cluster, dir } of clusters.splice(0)) {
    await cluster.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

async function startCluster(options: { sites: number; witnesses?: number; leaseMs: number; topology?: Record<string, unknown> }): Promise<{ cluster: LocalCluster; config: ClusterConfig }> {
  const base = await freePortRange(options.sites + (options.witnesses ?? 0) + 1);
  const ids = ['us-east', 'eu-west', 'ap-south'].slice(0, options.sites);
  const config = parseConfig(
    {
      cluster: 'fo',
      secret: 'failover-test-secret-0123456789',
      sites: ids.map((id, i) => ({ id, url: `http://127.0.0.1:${base + 1 + i}` })),
      witnesses: Array.from({ length: options.witnesses ?? 0 }, (_, i) => ({ id: `w${i + 1}`, url: `http://127.0.0.1:${base + 1 + options.sites + i}` })),
      tables: {
        ledger: { pattern: 'global', writeSite: 'us-east', durability: 'quorum' },
        tally: { pattern: 'global', writeSite: 'us-east', conflict: 'crdt', fields: { n: 'counter' }, durability: 'quorum' },
        profiles: { pattern: 'local' },
      },
      topology: { leaseMs: options.leaseMs, commitBudgetMs: Math.floor(options.leaseMs / 10), ...options.topology },
      router: { listen: `127.0.0.1:${base}` },
    },
    'test config',
  );
  const dir = mkdtempSync(join(tmpdir(), 'tandem-failover-'));
  const cluster = new LocalCluster({ config, dataDir: dir, withRouter: false });
  clusters.push({ cluster, dir });
  await cluster.start();
  return { cluster, config };
}


async function topologyOf(url: string): Promise<{ epoch: number; owners: Record<string, string | null>; members: { id: string; state: string }[] } | undefined> {
  const r = await call('GET', `${url}/v1/topology`, undefined, { timeoutMs: 2_000 });
  return r.status === 200 ? (r.json as never) : undefined;
}

/** Writers sending unique ledger keys to `urls` in turn until stopped; what each answer was. */
function writers(urls: string[], prefix: string) {
  const acked: string[] = [];
  const answers: { status: number; atMs: number; key: string; origin?: string }[] = [];
  let stop = false;
  let n = 0;
  const loops = urls.map(async (url) => {
    while (!stop) {
      const key = `${prefix}-${n++}`;
      const r = await call('PUT', itemUrl(url, 'ledger', key), { v: key });
      answers.push({ status: r.status, atMs: performance.now(), key, ...(typeof r.json.origin === 'string' ? { origin: r.json.origin } : typeof r.json.detail === 'string' ? { origin: r.json.detail } : {}) });
      if (r.status === 200) acked.push(key);
      else await realTimers.sleep(20);
    }
  });
  return {
    acked,
    answers,
    async stop() {
      stop = true;
      await Promise.all(loops);
    },
  };
}

async function allPresent(url: string, keys: string[]): Promise<string[]> {
  const missing: string[] = [];
  for (const k of keys) if ((await call('GET', itemUrl(url, 'ledger', k))).status !== 200) missing.push(k);
  return missing;
}

describe('failover (real processes)', () => {
  it('SIGKILL of the ledger owner under quorum writes: a new owner takes over, no acknowledged write is lost', async () => {
    const { cluster, config } = await startCluster({ sites: 3, leaseMs: 500 });
    const [east, west, south] = config.sites.map((s) => s.url) as [string, string, string];
    const load = writers([west, south], 'k');
    await realTimers.sleep(500);
    const killedAt = performance.now();
    await cluster.kill('us-east');
    await waitFor('a new owner', async () => ((await topologyOf(west))?.owners['ledger'] ?? 'us-east') !== 'us-east' && (await topologyOf(west))?.owners['ledger'] !== null, 15_000);
    await waitFor('a write accepted after the kill', async () => load.answers.some((a) => a.status === 200 && a.atMs > killedAt), 15_000);
    await realTimers.sleep(300);
    await load.stop();
    expect(load.acked.length).toBeGreaterThan(10);
    expect(await allPresent(west, load.acked)).toEqual([]);
    expect(await allPresent(south, load.acked)).toEqual([]);
    // the old owner comes back, learns the new epoch, and forwards instead of writing
    cluster.startSite('us-east');
    await cluster.waitHealthy(15_000);
    await waitFor('us-east caught up', async () => (await allPresent(east, load.acked)).length === 0, 15_000);
    const after = await call('PUT', itemUrl(east, 'ledger', 'after-return'), { v: 1 });
    expect(after.status).toBe(200);
    expect(after.json.origin).not.toBe('us-east');
  });

  it('SIGSTOP of the owner longer than its lease, then SIGCONT: it acknowledges nothing in the old epoch', async () => {
    const { cluster, config } = await startCluster({ sites: 3, leaseMs: 500 });
    const [east, west] = config.sites.map((s) => s.url) as [string, string, string];
    const epochBefore = (await topologyOf(west))!.epoch;
    const proc = cluster.process('us-east')!;
    proc.child.kill('SIGSTOP');
    // writes sent to the stopped owner itself hang in its socket until it resumes
    const stuck = Array.from({ length: 5 }, (_, i) => call('PUT', itemUrl(east, 'ledger', `stuck-${i}`), { v: i }, { timeoutMs: 20_000 }));
    await waitFor('a new owner', async () => {
      const t = await topologyOf(west);
      return t !== undefined && t.owners['ledger'] !== 'us-east' && t.owners['ledger'] !== null;
    }, 15_000);
    // (503 owner-changed while the new owner renews its lease: nothing written, retried like a client would)
    let moved = await call('PUT', itemUrl(west, 'ledger', 'while-stopped'), { v: 1 });
    for (let i = 0; i < 50 && moved.status === 503; i++) {
      await realTimers.sleep(100);
      moved = await call('PUT', itemUrl(west, 'ledger', 'while-stopped'), { v: 1 });
    }
    expect(moved.status).toBe(200);
    proc.child.kill('SIGCONT');
    const answers = await Promise.all(stuck);
    for (const a of answers) {
      // never acknowledged by us-east under the old epoch: refused, unknown, or committed by the new owner
      if (a.status === 200) expect(a.json.origin).not.toBe('us-east');
      else expect([502, 503, 504]).toContain(a.status);
    }
    const t = await topologyOf(west);
    expect(t!.epoch).toBeGreaterThan(epochBefore);
  });

  it('a stopped owner the voters no longer hear from: writes at other sites are held, then 503 (nothing sent), not forwarded into a 502', async () => {
    // no automatic failover: the owner stays stopped and owns the ledger throughout
    const { cluster, config } = await startCluster({ sites: 3, leaseMs: 500, topology: { autoFailover: false, switchoverWaitMs: 1_000 } });
    const west = config.sites[1]!.url;
    expect((await call('PUT', itemUrl(west, 'ledger', 'before'), { v: 1 })).status).toBe(200);
    const proc = cluster.process('us-east')!;
    proc.child.kill('SIGSTOP');
    try {
      await realTimers.sleep(1_000);
      // a forward would hang in the stopped owner's socket for the forward timeout, then 502 outcome-unknown
      const held = await call('PUT', itemUrl(west, 'ledger', 'while-stopped'), { v: 1 }, { timeoutMs: 20_000 });
      expect([held.status, held.json.type]).toEqual([503, 'https://tandem.dev/problems/owner-unavailable']);
    } finally {
      proc.child.kill('SIGCONT');
    }
    // the owner renews again: forwards resume
    await waitFor('a write through eu-west', async () => (await call('PUT', itemUrl(west, 'ledger', 'after'), { v: 1 })).status === 200, 10_000);
  });

  it('switchover under load: every acknowledged increment counted once, no client error', async () => {
    const { config } = await startCluster({ sites: 3, leaseMs: 1000 });
    const urls = config.sites.map((s) => s.url);
    let acked = 0;
    let unknown = 0;
    const errors: string[] = [];
    const unknowns: string[] = [];
    let stop = false;
    const loops = urls.map(async (url) => {
      while (!stop) {
        const r = await call('PATCH', itemUrl(url, 'tally', 't'), { increment: { n: 1 } });
        if (r.status === 200) acked++;
        else if (r.status === 502 || r.status === 504 || r.status === 0) {
          unknown++;
          unknowns.push(`${url}: ${r.status} ${JSON.stringify(r.json).slice(0, 300)}`);
        } else errors.push(`${r.status} ${JSON.stringify(r.json).slice(0, 200)}`);
      }
    });
    await realTimers.sleep(500);
    const out = await run(process.execPath, [cliEntry, 'switchover', '--table', 'tally', '--to', 'eu-west', '--url', urls[1]!, '--json']);
    expect(JSON.parse(out.stdout).ok).toBe(true);
    await realTimers.sleep(500);
    stop = true;
    await Promise.all(loops);
    expect(errors).toEqual([]);
    expect(unknown, unknowns.join('\n')).toBe(0);
    expect((await topologyOf(urls[0]!))!.owners['tally']).toBe('eu-west');
    // read at the new owner once every site has it: acked + unknown bounds the counter, here exactly acked
    await waitFor('the count', async () => ((await call('GET', itemUrl(urls[1]!, 'tally', 't'))).json.value as { n?: number } | undefined)?.n === acked, 10_000);
  });

  it('evacuate, then failback: the site owns nothing and fails /ready, then owns its tables again', async () => {
    const { config } = await startCluster({ sites: 3, leaseMs: 1000 });
    const [east, west] = config.sites.map((s) => s.url) as [string, string, string];
    const dry = await run(process.execPath, [cliEntry, 'evacuate', 'us-east', '--url', west, '--dry-run', '--json']);
    expect(JSON.parse(dry.stdout)).toMatchObject({ ok: true, dryRun: true });
    expect((await topologyOf(west))!.owners['ledger']).toBe('us-east');
    const load = writers([west, east], 'e');
    await run(process.execPath, [cliEntry, 'evacuate', 'us-east', '--url', west]);
    const t = (await topologyOf(west))!;
    expect(t.owners['ledger']).not.toBe('us-east');
    expect(t.members.find((m) => m.id === 'us-east')!.state).toBe('evacuated');
    const ready = await call('GET', `${east}/ready`);
    expect(ready.status).toBe(503);
    expect(String(ready.json.reason)).toMatch(/evacuated/);
    await run(process.execPath, [cliEntry, 'failback', 'us-east', '--url', west]);
    expect((await topologyOf(west))!.owners['ledger']).toBe('us-east');
    await waitFor('us-east ready again', async () => (await call('GET', `${east}/ready`)).status === 200, 10_000);
    await load.stop();
    expect(load.answers.filter((a) => a.status !== 200).map((a) => `${a.status} ${a.key} ${a.origin ?? ''}`)).toEqual([]);
    expect(await allPresent(east, load.acked)).toEqual([]);
  });

  it('two data sites fail over only with a witness (RPO 0 for quorum writes)', async () => {
    const two = await startCluster({ sites: 2, leaseMs: 500 });
    const westOnly = two.config.sites[1]!.url;
    await two.cluster.kill('us-east');
    await realTimers.sleep(2_000);
    expect((await topologyOf(westOnly))!.owners['ledger']).toBe('us-east');
    expect((await call('PUT', itemUrl(westOnly, 'ledger', 'x'), { v: 1 })).status).toBe(503);

    const withWitness = await startCluster({ sites: 2, witnesses: 1, leaseMs: 500 });
    const [east, west] = withWitness.config.sites.map((s) => s.url) as [string, string];
    const load = writers([west, east], 'w');
    await waitFor('some quorum writes', async () => load.acked.length >= 5, 15_000);
    await load.stop();
    await withWitness.cluster.kill('us-east');
    await waitFor('eu-west promoted', async () => (await topologyOf(west))?.owners['ledger'] === 'eu-west', 15_000);
    expect(load.acked.length).toBeGreaterThan(3);
    expect(await allPresent(west, load.acked)).toEqual([]);
  });
});
