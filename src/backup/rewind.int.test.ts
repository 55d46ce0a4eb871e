// Three real `tandem site` processes, each backing itself up to a directory. A bulk delete of
// 10,000 items at one site replicates everywhere while another site keeps writing; `tandem rewind
// --prefix` to a second before it brings all 10,000 back at every site with their values, and the
// writes made after the delete outside the prefix are untouched. A counter rewound while another
// site increments it ends at its value at T plus the increments the rewind did not see. A restore
// to that quiet second gives a store whose digests equal those the sites showed then.
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { demoConfig } from '../config/demo.js';
import { parseConfig } from '../config/load.js';
import { cliEntry, LocalCluster } from '../cluster/local-cluster.js';
import { freePortRange } from '../cluster/ports.js';

const run = promisify(execFile);
let cluster: LocalCluster | undefined;
afterAll(async () => {
  await cluster?.stop(5_000);
});

async function call(method: string, url: string, body?: unknown): Promise<{ status: number; json: any }> /* eslint-disable-line @typescript-eslint/no-explicit-any -- test JSON */ {
  const res = await request(url, {
    method: method as 'GET',
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await res.body.text();
  return { status: res.statusCode, json: text ? JSON.parse(text) : undefined };
}

async function waitFor(what: string, cond: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!(await cond())) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function scanAll(url: string, table: string, prefix: string): Promise<Map<string, unknown>> {
  const out = new Map<string, unknown>();
  for (let cursor: string | null = null; ; ) {
    const r = await call('GET', `${url}/v1/tables/${table}/items?prefix=${encodeURIComponent(prefix)}&limit=1000${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
    for (const it of r.json.items as { key: string; value: unknown }[]) out.set(it.key, it.value);
    if (r.json.cursor === null) return out;
    cursor = r.json.cursor;
  }
}

async function statuses(urls: string[]): Promise<{ vector: Record<string, number>; digests: Record<string, string> }[]> {
  return Promise.all(urls.map(async (u) => (await call('GET', `${u}/v1/status`)).json));
}

async function converged(urls: string[]): Promise<boolean> {
  const s = await statuses(urls);
  return s.every((x) => JSON.stringify(x.vector) === JSON.stringify(s[0]!.vector) && JSON.stringify(x.digests) === JSON.stringify(s[0]!.digests));
}

/** Runs the CLI until it stops refusing because T is not closed yet; returns its JSON answer. */
async function cli(args: string[]): Promise<any> /* eslint-disable-line @typescript-eslint/no-explicit-any -- CLI JSON */ {
  for (let attempt = 0; ; attempt++) {
    const r = await run(process.execPath, [cliEntry, ...args], { maxBuffer: 64 << 20 }).catch((e: { stdout: string; stderr: string; code: number }) => e);
    const last = r.stdout.trim().split('\n').pop() ?? '';
    if (!last.startsWith('{')) throw new Error(`tandem ${args.join(' ')}: no JSON answer; stderr: ${r.stderr}`);
    const out = JSON.parse(last);
    if (out.code === 'not-closed' && attempt < 30) {
      await new Promise((res) => setTimeout(res, 500));
      continue;
    }
    return out;
  }
}

describe('rewind and restore across a cluster of real processes', () => {
  it('undoes a replicated bulk delete of 10,000 items under continuing writes; a restore to a quiet second matches the sites', async () => {
    const basePort = await freePortRange(4);
    const dataDir = mkdtempSync(join(tmpdir(), 'tandem-rewind-'));
    const target = pathToFileURL(join(dataDir, 'backups')).href;
    const config = parseConfig({ ...JSON.parse(JSON.stringify(demoConfig({ sites: 3, basePort }))), backup: { target } }, 'test');
    cluster = new LocalCluster({ config, dataDir, withRouter: false });
    await cluster.start();
    const configPath = cluster.configPath;
    const urls = config.sites.map((s) => s.url);
    const [east, west, south] = urls as [string, string, string];

    // 10,000 items under bad: and a counter, written at us-east
    const original = new Map<string, unknown>();
    for (let b = 0; b < 100; b++) {
      const ops = Array.from({ length: 100 }, (_, i) => {
        const key = `bad:${String(b * 100 + i).padStart(5, '0')}`;
        const value = { n: b * 100 + i, name: `item ${key}` };
        original.set(key, value);
        return { op: 'put', table: 'profiles', key, value };
      });
      expect((await call('POST', `${east}/v1/batch`, { ops })).status).toBe(200);
    }
    for (let i = 0; i < 5; i++) expect((await call('PATCH', `${east}/v1/tables/counters/items/bad:counter`, { increment: { n: 10 } })).status).toBe(200);
    for (const k of ['u:1', 'u:2', 'u:3']) expect((await call('PUT', `${east}/v1/tables/profiles/items/${k}`, { k })).status).toBe(200);
    await waitFor('the items to reach every site', () => converged(urls), 30_000);
    // a quiet second: T
    await new Promise((r) => setTimeout(r, 1_200));
    const quiet = await statuses(urls);
    const T = new Date(Date.now() - 600).toISOString();
    await new Promise((r) => setTimeout(r, 1_200));

    // writes go on at eu-west outside the prefix, during the delete and the rewind
    let writing = true;
    const others = new Map<string, unknown>();
    const writer = (async () => {
      for (let n = 0; writing; n++) {
        const value = { n, at: 'after-delete' };
        if ((await call('PUT', `${west}/v1/tables/profiles/items/other:${n}`, value)).status === 200) others.set(`other:${n}`, value);
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
    // the bulk delete at us-east
    for (let b = 0; b < 100; b++) {
      const ops = Array.from({ length: 100 }, (_, i) => ({ op: 'delete', table: 'profiles', key: `bad:${String(b * 100 + i).padStart(5, '0')}` }));
      expect((await call('POST', `${east}/v1/batch`, { ops })).status).toBe(200);
    }
    expect((await call('DELETE', `${east}/v1/tables/counters/items/bad:counter`)).status).toBe(200);
    for (const k of ['u:1', 'u:2', 'u:3']) expect((await call('DELETE', `${east}/v1/tables/profiles/items/${k}`)).status).toBe(200);
    await waitFor('the delete to reach every site', async () => (await scanAll(south, 'profiles', 'bad:')).size === 0, 30_000);

    // rewind the prefix to T
    const journalDir = join(dataDir, 'journal');
    const summary = await cli(['rewind', '--config', configPath, '--table', 'profiles', '--prefix', 'bad:', '--to-time', T, '--json', '--journal-dir', journalDir]);
    expect(summary).toMatchObject({ ok: true, done: true, written: 10_000, counts: { 'deleted-after': 10_000 } });
    expect(summary.skipped).toEqual([]);
    for (const url of urls) {
      const back = await scanAll(url, 'profiles', 'bad:');
      expect(back.size).toBe(10_000);
      for (const [k, v] of original) expect(back.get(k)).toEqual(v);
    }

    // a dry run changes nothing and finds the prefix as at T
    const dry = await cli(['rewind', '--config', configPath, '--table', 'profiles', '--prefix', 'bad:0000', '--to-time', T, '--dry-run', '--json', '--journal-dir', journalDir]);
    expect(dry).toMatchObject({ dryRun: true, written: 0, counts: { unchanged: 10 } });
    // --undo reverts the keys whose latest write is still the rewind's, and skips one written since
    const small = await cli(['rewind', '--config', configPath, '--table', 'profiles', '--prefix', 'u:', '--to-time', T, '--json', '--journal-dir', journalDir]);
    expect(small).toMatchObject({ ok: true, written: 3 });
    expect((await call('PUT', `${south}/v1/tables/profiles/items/u:3`, { k: 'changed after the rewind' })).status).toBe(200);
    await waitFor('the change to reach the executing site', async () => (await call('GET', `${east}/v1/tables/profiles/items/u:3`)).json?.value?.k === 'changed after the rewind', 10_000);
    const undo = await cli(['rewind', '--config', configPath, '--undo', small.id, '--json', '--journal-dir', journalDir]);
    expect(undo).toMatchObject({ ok: true, written: 2, counts: { 'changed-since-rewind': 1 } });
    for (const url of urls) {
      expect((await call('GET', `${url}/v1/tables/profiles/items/u:1`)).status).toBe(404);
      expect((await call('GET', `${url}/v1/tables/profiles/items/u:3`)).json.value).toEqual({ k: 'changed after the rewind' });
    }

    // the counter: rewound (with --overwrite) while eu-west increments it
    let incrementing = true;
    let increments = 0;
    const incrementer = (async () => {
      while (incrementing) {
        if ((await call('PATCH', `${west}/v1/tables/counters/items/bad:counter`, { increment: { n: 1 } })).status === 200) increments++;
        await new Promise((r) => setTimeout(r, 10));
      }
    })();
    await new Promise((r) => setTimeout(r, 200));
    const counterRewind = await cli(['rewind', '--config', configPath, '--table', 'counters', '--prefix', 'bad:', '--to-time', T, '--overwrite', '--json', '--journal-dir', journalDir]);
    expect(counterRewind).toMatchObject({ ok: true, done: true, written: 1 });
    await new Promise((r) => setTimeout(r, 200));
    incrementing = false;
    await incrementer;
    writing = false;
    await writer;
    await waitFor('convergence', () => converged(urls), 30_000);
    const journal = JSON.parse(readFileSync(join(journalDir, `${counterRewind.id}.json`), 'utf8'));
    const observed = (journal.keys['bad:counter'].now?.n as number | undefined) ?? 0;
    for (const url of urls) expect((await call('GET', `${url}/v1/tables/counters/items/bad:counter`)).json.value.n).toBe(50 + increments - observed);

    // writes after the delete outside the prefix are untouched
    for (const url of urls) {
      const now = await scanAll(url, 'profiles', 'other:');
      for (const [k, v] of others) expect(now.get(k)).toEqual(v);
    }
    const conflicts = (await call('GET', `${east}/v1/tables/counters/conflicts`)).json.conflicts as { reason: string }[];
    if (observed > 0) expect(conflicts.some((c) => c.reason === 'rewound')).toBe(true);

    // a restore of ap-south to the quiet second: the digests the sites showed then
    const restored = await cli(['restore', '--config', configPath, '--site', 'ap-south', '--to-time', T, '--data-dir', join(dataDir, 'restored'), '--json']);
    expect(restored).toMatchObject({ ok: true, verified: true, detached: true });
    expect(restored.digests).toEqual(quiet[2]!.digests);
    expect(restored.vector).toEqual(quiet[2]!.vector);
    // --rejoin is refused while the old ap-south still answers, and the store stays detached
    const rejoin = await cli(['restore', '--config', configPath, '--site', 'ap-south', '--data-dir', join(dataDir, 'restored'), '--rejoin', '--json']);
    expect(rejoin).toMatchObject({ ok: false, detached: true });
    expect(rejoin.rejoin.refused.join(' ')).toMatch(/old ap-south still answers/);
    const verify = await cli(['backup', 'verify', '--config', configPath, '--site', 'ap-south', '--json']);
    expect(verify, JSON.stringify(verify)).toMatchObject({ ok: true });
  }, 180_000);
});
