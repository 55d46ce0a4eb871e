// Membership online with real processes: a 3-site cluster grows to 4 and shrinks back to 3 under
// quorum writes (`tandem members add`, a site started with a config that lists it, `tandem members
// remove`). Writes keep succeeding, nothing acknowledged is lost, digests are equal at the end.
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { parseConfig } from '../config/load.js';
import { cliEntry, LocalCluster } from '../cluster/local-cluster.js';
import { freePortRange } from '../cluster/ports.js';
import { realTimers } from '../platform/real/real-env.js';
import { call, itemUrl, waitFor } from '../cluster/testing/http-client.js';

const run = promisify(execFile);
const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0)) await c();
});


async function stateOf(url: string, id: string): Promise<string | undefined> {
  const r = await call('GET', `${url}/v1/topology`, undefined, { timeoutMs: 2_000 });
  return (r.json.members as { id: string; state: string }[] | undefined)?.find((m) => m.id === id)?.state;
}

describe('membership online (real processes)', () => {
  it('a 3-site cluster grows to 4 and shrinks back under quorum writes: nothing acknowledged lost, digests equal', async () => {
    const base = await freePortRange(5);
    const ids = ['us-east', 'eu-west', 'ap-south'];
    const config = parseConfig(
      {
        cluster: 'mem',
        secret: 'members-test-secret-0123456789',
        sites: ids.map((id, i) => ({ id, url: `http://127.0.0.1:${base + 1 + i}` })),
        tables: {
          ledger: { pattern: 'global', writeSite: 'us-east', durability: 'quorum' },
          profiles: { pattern: 'local' },
        },
        topology: { leaseMs: 1000, commitBudgetMs: 100 },
        router: { listen: `127.0.0.1:${base}` },
      },
      'test config',
    );
    const dir = mkdtempSync(join(tmpdir(), 'tandem-members-'));
    const cluster = new LocalCluster({ config, dataDir: dir, withRouter: false });
    cleanup.push(async () => {
      await cluster.stop();
      rmSync(dir, { recursive: true, force: true });
    });
    await cluster.start();
    const urls = config.sites.map((s) => s.url);
    const newUrl = `http://127.0.0.1:${base + 4}`;

    // load: quorum writes to the ledger through the three original sites, all along
    const acked: { table: string; key: string }[] = [];
    const failures: number[] = [];
    let stop = false;
    let n = 0;
    const writeLoop = async (url: string, table: string, active: () => boolean) => {
      while (!stop) {
        if (!active()) {
          await realTimers.sleep(20);
          continue;
        }
        const key = `k-${n++}`;
        const r = await call('PUT', itemUrl(url, table, key), { v: key }, { timeoutMs: 10_000 });
        if (r.status === 200) acked.push({ table, key });
        else {
          failures.push(r.status);
          await realTimers.sleep(20);
        }
      }
    };
    let joinerTakesWrites = false;
    const loops = [...urls.map((u) => writeLoop(u, 'ledger', () => true)), writeLoop(urls[1]!, 'profiles', () => true), writeLoop(newUrl, 'profiles', () => joinerTakesWrites)];
    await realTimers.sleep(500);

    // grow: the operator adds the site, then starts it with a config that lists it
    const dry = await call('POST', `${urls[2]}/v1/admin/members`, { id: 'site-4', url: newUrl, dryRun: true });
    expect(dry.json).toMatchObject({ ok: true, dryRun: true });
    expect((await call('POST', `${urls[2]}/v1/admin/members`, { id: 'Site 4!', url: newUrl })).status).toBe(400);
    expect((await call('POST', `${urls[2]}/v1/admin/members`, { id: 'site-5', url: 'ftp://x' })).status).toBe(400);
    const added = await run(process.execPath, [cliEntry, 'members', 'add', 'site-4', '--url', newUrl, '--region', 'sa-east-1', '--config', cluster.configPath]);
    expect(added.stdout).toMatch(/members add site-4 done/);
    expect(await stateOf(urls[0]!, 'site-4')).toBe('joining');
    cluster.joinSite('site-4', newUrl);
    await waitFor('site-4 active', async () => (await stateOf(urls[0]!, 'site-4')) === 'active', 30_000);
    await waitFor('site-4 ready', async () => (await call('GET', `${newUrl}/ready`)).status === 200, 15_000);
    joinerTakesWrites = true;
    await realTimers.sleep(1_500);
    const four = await call('GET', `${urls[0]}/v1/status`);
    expect(Object.keys(four.json.peers as object).sort()).toEqual(['ap-south', 'eu-west', 'site-4']);

    // shrink: the joiner is drained (no more writes sent to it), then removed with a final cut
    joinerTakesWrites = false;
    await realTimers.sleep(500);
    const removed = await run(process.execPath, [cliEntry, 'members', 'remove', 'site-4', '--config', cluster.configPath]);
    expect(removed.stdout).toMatch(/members remove site-4 done/);
    expect(await stateOf(urls[0]!, 'site-4')).toBe('removed');
    await realTimers.sleep(1_000);
    stop = true;
    await Promise.all(loops);
    await cluster.kill('site-4', 'SIGTERM');

    // writes kept succeeding: a few bounded waits at most
    expect(acked.length).toBeGreaterThan(100);
    expect(failures.length).toBeLessThan(acked.length / 20);
    // nothing acknowledged lost, at every remaining site; digests equal
    await waitFor('digests equal', async () => {
      const ds = await Promise.all(urls.map(async (u) => JSON.stringify((await call('GET', `${u}/v1/status`)).json.digests)));
      return ds.every((d) => d === ds[0]);
    }, 20_000);
    for (const u of urls) {
      const missing: string[] = [];
      for (let i = 0; i < acked.length; i += 50)
        await Promise.all(
          acked.slice(i, i + 50).map(async (w) => {
            if ((await call('GET', itemUrl(u, w.table, w.key))).status !== 200) missing.push(`${w.table}/${w.key}`);
          }),
        );
      expect(missing, `missing at ${u}`).toEqual([]);
    }
    const status = await call('GET', `${urls[0]}/v1/status`);
    expect(Object.keys(status.json.peers as object).sort()).toEqual(['ap-south', 'eu-west']);
  }, 120_000);
});
