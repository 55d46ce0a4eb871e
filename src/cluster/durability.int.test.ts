// Acknowledged data against the disk faults that lose it, with real site processes and sockets:
// a data directory put back from an older copy (a VM snapshot, an operator's `cp -a`) under quorum
// writes, and a crash between a write's commit and its fdatasync.
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { demoConfig } from '../config/demo.js';
import type { ClusterConfig } from '../config/schema.js';
import { LocalCluster } from './local-cluster.js';
import { freePortRange } from './ports.js';

let cluster: LocalCluster | undefined;
afterEach(async () => {
  await cluster?.stop(2_000);
  cluster = undefined;
});

interface Written {
  status: number;
  dot?: string;
}

async function put(url: string, key: string, value: object, durability: 'local' | 'quorum' | 'all' = 'quorum'): Promise<Written> {
  const res = await request(`${url}/v1/tables/profiles/items/${key}`, {
    method: 'PUT',
    headers: { 'content-type': 'application/json', 'tandem-durability': durability },
    body: JSON.stringify(value),
  });
  const body = (await res.body.json()) as { dot?: string };
  return { status: res.statusCode, ...(body.dot !== undefined ? { dot: body.dot } : {}) };
}

async function get(url: string, key: string, signal?: AbortSignal): Promise<{ status: number; value?: unknown }> {
  const res = await request(`${url}/v1/tables/profiles/items/${key}`, signal ? { signal } : {});
  const body = (await res.body.json()) as { value?: unknown };
  return { status: res.statusCode, value: body.value };
}

async function eventually(what: string, check: () => Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!(await check().catch(() => false))) {
    if (performance.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function digestsEqual(config: ClusterConfig): Promise<boolean> {
  const all = await Promise.all(
    config.sites.map(async (s) => {
      const res = await request(`${s.url}/v1/status`);
      const body = (await res.body.json()) as { vector: object; digests: object };
      return JSON.stringify([body.vector, body.digests]);
    }),
  );
  return all.every((d) => d === all[0]);
}

const originOf = (dot: string) => dot.slice(0, dot.lastIndexOf(':'));

describe('disk faults (real processes)', () => {
  it('a site whose data directory is put back from an older copy never reissues a dot: quorum writes after it hold, nothing is lost', async () => {
    const config = demoConfig({ sites: 3, basePort: await freePortRange(4) });
    const dataDir = mkdtempSync(join(tmpdir(), 'tandem-rollback-'));
    cluster = new LocalCluster({ config, dataDir, withRouter: false });
    await cluster.start();
    const [east, west, south] = config.sites.map((s) => s.url) as [string, string, string];
    for (const k of ['r1', 'r2', 'r3']) expect((await put(east, k, { k, v: 1 })).status).toBe(200);
    await cluster.kill('us-east', 'SIGTERM');
    const copy = join(dataDir, 'us-east.copy');
    cpSync(join(dataDir, 'us-east'), copy, { recursive: true });

    cluster.startSite('us-east');
    await cluster.waitHealthy(20_000);
    const later: Written[] = [];
    for (const k of ['r4', 'r5', 'r6', 'r7', 'r8']) later.push(await put(east, k, { k, v: 1 }));
    later.push(await put(east, 'r1', { k: 'r1', v: 2 }));
    expect(later.map((w) => w.status)).toEqual([200, 200, 200, 200, 200, 200]);
    const oldOrigin = originOf(later[0]!.dot!);
    await cluster.kill('us-east', 'SIGTERM');

    // the old copy comes back: its store ends at oldOrigin:3 while the peers hold oldOrigin:9
    rmSync(join(dataDir, 'us-east'), { recursive: true });
    cpSync(copy, join(dataDir, 'us-east'), { recursive: true });
    cluster.startSite('us-east');
    await cluster.waitHealthy(20_000);
    const after = await put(east, 'after-restore', { v: 1 }, 'quorum');
    expect(after.status).toBe(200);
    // a new origin: a reissued oldOrigin:4 would mean something else to the peers holding r4
    expect(originOf(after.dot!)).not.toBe(oldOrigin);
    expect((await put(east, 'r2', { k: 'r2', v: 2 }, 'all')).status).toBe(200);

    // everything acknowledged is everywhere, including at the restored site (pulled back)
    for (const url of [east, west, south]) {
      await eventually(`${url} has every write`, async () => {
        for (const k of ['r3', 'r4', 'r5', 'r6', 'r7', 'r8', 'after-restore']) if ((await get(url, k)).status !== 200) return false;
        return (await get(url, 'r1')).value !== undefined && JSON.stringify((await get(url, 'r1')).value) === '{"k":"r1","v":2}' && JSON.stringify((await get(url, 'r2')).value) === '{"k":"r2","v":2}';
      });
    }
    await eventually('the sites hold equal vectors and digests', () => digestsEqual(config));
  });

  it('a write is not read before its fdatasync ends; a crash inside the sync loses nothing acknowledged and the sites converge', async () => {
    const config = demoConfig({ sites: 3, basePort: await freePortRange(4) });
    const dataDir = mkdtempSync(join(tmpdir(), 'tandem-fsync-'));
    const fsyncDelayMs = 1_500;
    cluster = new LocalCluster({
      config,
      dataDir,
      withRouter: false,
      siteEnv: (id): Record<string, string> => (id === 'us-east' ? { TANDEM_FAULT_FSYNC_DELAY_MS: String(fsyncDelayMs) } : {}),
    });
    await cluster.start();
    const [east, west] = config.sites.map((s) => s.url) as [string, string, string];
    expect((await put(east, 'before', { v: 1 }, 'local')).status).toBe(200);

    const pending = put(east, 'k', { v: 'unacknowledged' }, 'local').catch(() => ({ status: 0 }));
    await new Promise((r) => setTimeout(r, 300));
    // the write is committed and its sync is held: a read must not answer it yet (it waits, or, on a
    // machine slow enough that the write is not even committed, finds nothing)
    const early = await get(east, 'k', AbortSignal.timeout(600)).catch(() => ({ status: 0 }));
    expect(early.status, 'answered a write whose fdatasync had not ended').not.toBe(200);
    await cluster.kill('us-east', 'SIGKILL');
    expect((await pending).status).toBe(0);
    // nothing of it left the site
    expect((await get(west, 'k')).status).toBe(404);

    cluster.startSite('us-east');
    await cluster.waitHealthy(30_000);
    expect((await get(east, 'before')).status).toBe(200);
    expect((await put(east, 'after', { v: 1 }, 'quorum')).status).toBe(200);
    await eventually('the sites hold equal vectors and digests', () => digestsEqual(config), 30_000);
  });
});
