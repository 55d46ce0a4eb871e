// First-writer homes with real processes and sockets (issue 15): the first site to write to a
// partition becomes its home, once, cluster-wide; a site that loses the race forwards its write to
// the winner; the home's unit fails over like any partition; the registry survives a restart.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { parseConfig } from '../config/load.js';
import { LocalCluster } from '../cluster/local-cluster.js';
import { freePortRange } from '../cluster/ports.js';
import { realTimers } from '../platform/real/real-env.js';
import { call, itemUrl, waitFor } from '../cluster/testing/http-client.js';

const clusters: { cluster: LocalCluster; dir: string }[] = [];
afterEach(async () => {
  for (const { cluster, dir } of clusters.splice(0)) {
    await cluster.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});


/** A write retried while the answer says nothing was written (503), as a client or the router would. */
async function put(url: string, key: string, value: unknown): Promise<{ status: number; json: Record<string, unknown> }> {
  for (;;) {
    const r = await call('PUT', itemUrl(url, 'sessions', key), value);
    if (r.status !== 503 && r.status !== 0) return r;
    await realTimers.sleep(100);
  }
}

describe('first-writer homes (real processes)', () => {
  it('homes each partition at its first writer once, forwards the loser, fails over, and survives a restart', async () => {
    const base = await freePortRange(4);
    const ids = ['us-east', 'eu-west', 'ap-south'];
    const config = parseConfig(
      {
        cluster: 'fw',
        secret: 'first-writer-test-secret-0123456789',
        sites: ids.map((id, i) => ({ id, url: `http://127.0.0.1:${base + 1 + i}` })),
        tables: { sessions: { pattern: 'partitioned', home: { from: 'first-writer' } } },
        topology: { leaseMs: 500, commitBudgetMs: 50 },
        router: { listen: `127.0.0.1:${base}` },
      },
      'test config',
    );
    const dir = mkdtempSync(join(tmpdir(), 'tandem-first-writer-'));
    const cluster = new LocalCluster({ config, dataDir: dir, withRouter: false });
    clusters.push({ cluster, dir });
    await cluster.start();
    const [east, west, south] = config.sites.map((s) => s.url) as [string, string, string];

    // two sites write first to different new partitions at once: each becomes its partition's home
    const [a, b] = await Promise.all([put(west, 'pa:1', { v: 'a1' }), put(south, 'pb:1', { v: 'b1' })]);
    expect([a.status, a.json.origin]).toEqual([200, 'eu-west']);
    expect([b.status, b.json.origin]).toEqual([200, 'ap-south']);

    // two sites write first to the same partition at once: one home, the loser's write forwarded to it
    const [c1, c2] = await Promise.all([put(west, 'pc:1', { v: 'c1' }), put(south, 'pc:2', { v: 'c2' })]);
    expect([c1.status, c2.status]).toEqual([200, 200]);
    const home = c1.json.origin as string;
    expect(['eu-west', 'ap-south']).toContain(home);
    expect(c2.json.origin).toBe(home);
    expect(c1.json.dot).not.toBe(c2.json.dot);
    // each write exactly once, at every site, and the registry names the one home everywhere
    for (const url of [east, west, south])
      await waitFor(
        `pc's items and assignment at ${url}`,
        async () =>
          (await call('GET', itemUrl(url, 'sessions', 'pc:1'))).json.value !== undefined &&
          (await call('GET', itemUrl(url, 'sessions', 'pc:2'))).json.value !== undefined &&
          ((await call('GET', itemUrl(url, '_homes', 'sessions/pc'))).json.value as { site?: string } | undefined)?.site === home,
        10_000,
      );
    const scanned = (await call('GET', `${east}/v1/tables/sessions/items?prefix=pc:`)).json.items as { key: string; value: { v: string } }[];
    expect(scanned.map((i) => [i.key, i.value.v])).toEqual([
      ['pc:1', 'c1'],
      ['pc:2', 'c2'],
    ]);
    // the topology shows one unit per site for the table
    const topo = (await call('GET', `${east}/v1/topology`)).json as { homes: Record<string, Record<string, string>> };
    expect(topo.homes['sessions']).toEqual({ 'us-east': 'us-east', 'eu-west': 'eu-west', 'ap-south': 'ap-south' });

    // the home of pa dies: its unit fails over, and pa's writes succeed at the new owner
    await cluster.kill('eu-west');
    await waitFor(
      "a new owner of eu-west's unit",
      async () => {
        const owner = ((await call('GET', `${east}/v1/topology`)).json as { homes?: Record<string, Record<string, string | null>> }).homes?.['sessions']?.['eu-west'];
        return owner !== undefined && owner !== null && owner !== 'eu-west';
      },
      20_000,
    );
    const after = await put(south, 'pa:2', { v: 'a2' });
    expect(after.status).toBe(200);
    expect(['us-east', 'ap-south']).toContain(after.json.origin);

    // eu-west restarts: its copy of the registry still homes pa and pb; a write of pb there goes to ap-south
    cluster.startSite('eu-west');
    await cluster.waitHealthy(20_000);
    const again = await put(west, 'pb:2', { v: 'b2' });
    expect([again.status, again.json.origin]).toEqual([200, 'ap-south']);
    expect(((await call('GET', itemUrl(west, '_homes', 'sessions/pa'))).json.value as { site: string }).site).toBe('eu-west');
  }, 90_000);
});
