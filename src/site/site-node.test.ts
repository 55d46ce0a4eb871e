// The site node over a real SQLite store, in process: what its clock keeps across a restart.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { demoConfig } from '../config/demo.js';
import { parseConfig } from '../config/load.js';
import type { ClusterConfig } from '../config/schema.js';
import { limits } from '../limits.js';
import { hlcFromHex, hlcMs, hlcOf } from '../core/hlc.js';
import { applyLocalWrite } from '../core/write.js';
import { realNextTurn, realRandom, realTimers } from '../platform/real/real-env.js';
import { silentLogger, type Env } from '../platform/env.js';
import { SqliteStore } from '../store/sqlite/sqlite-store.js';
import { SiteNode } from './site-node.js';

const config = demoConfig({ sites: 3, basePort: 7100 });

function nodeAt(dir: string, wallMs: () => number, tables: { config: ClusterConfig; configPath?: string } = { config }): SiteNode {
  const env: Env = {
    clock: { monotonicMs: () => performance.now(), wallMs },
    timers: realTimers,
    random: realRandom,
    transport: { request: () => Promise.reject(new Error('no network in this test')) },
    log: silentLogger,
  };
  const store = new SqliteStore({ path: join(dir, 'store.db'), siteId: 'us-east', wallMs, conflictEntriesMax: 100 });
  return new SiteNode({ env, config: tables.config, siteId: 'us-east', store, nextTurn: realNextTurn, ...(tables.configPath ? { configPath: tables.configPath } : {}) });
}

describe('site clock', () => {
  it('a write after an item from a site an hour ahead orders after it, and neither it nor a restart drags the clock', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tandem-node-'));
    const wall = 1_800_000_000_000;
    const node = nodeAt(dir, () => wall);
    await node.start();
    const profiles = node.table('profiles');
    const ahead = hlcOf(wall + 3_600_000, 0);
    const state = applyLocalWrite(profiles.semantics, undefined, { op: 'put', value: { by: 'fast clock' } }, { dot: 'eu-west.1:1', hlc: ahead, site: 'eu-west', origin: 'eu-west.1' });
    expect(await node.applyRemote([{ origin: 'eu-west.1', seq: 1, hlc: state.w.h, items: [{ table: 'profiles', key: 'k', state }] }])).toMatchObject({ applied: 1 });
    const successor = await node.write(profiles, 'k', { op: 'put', value: { by: 'us-east' } });
    expect(hlcFromHex(successor.record.state.w.h) > ahead).toBe(true);
    expect((await node.get(profiles, 'k'))?.value).toEqual({ by: 'us-east' });
    const other = await node.write(profiles, 'other', { op: 'put', value: {} });
    expect(hlcMs(hlcFromHex(other.record.state.w.h))).toBe(wall);
    await node.stop();

    const restarted = nodeAt(dir, () => wall);
    const identity = await restarted.start();
    await restarted.confirmOrigin(async () => ({ seq: 0, incarnationMax: 0 }));
    expect(hlcMs(hlcFromHex(identity.hlcHighWater))).toBe(wall);
    const after = await restarted.write(restarted.table('profiles'), 'third', { op: 'put', value: {} });
    expect(hlcMs(hlcFromHex(after.record.state.w.h))).toBe(wall);
    await restarted.stop();
  });
});

describe('origin confirmation after a restart', () => {
  async function reopened(): Promise<{ node: SiteNode; origin: string; dir: string }> {
    const dir = mkdtempSync(join(tmpdir(), 'tandem-node-'));
    const node = nodeAt(dir, () => 1_800_000_000_000);
    const { origin } = await node.start();
    // a new store takes writes at once: nobody can hold its brand-new origin
    expect(node.originConfirmed).toBe(true);
    for (const key of ['a', 'b', 'c']) await node.write(node.table('profiles'), key, { op: 'put', value: { key } });
    await node.stop();
    const again = nodeAt(dir, () => 1_800_000_000_500);
    await again.start();
    return { node: again, origin, dir };
  }

  it('takes no write until its peers confirm, and keeps its origin when none holds more of it', async () => {
    const { node, origin } = await reopened();
    expect(node.originConfirmed).toBe(false);
    await expect(node.write(node.table('profiles'), 'd', { op: 'put', value: {} })).rejects.toMatchObject({ status: 503, type: 'starting' });
    expect(await node.confirmOrigin(async (o) => (o === origin ? { seq: 3, incarnationMax: 0 } : undefined))).toBe('kept');
    const w = await node.write(node.table('profiles'), 'd', { op: 'put', value: {} });
    expect(w.dot).toBe(`${origin}:4`);
    await node.stop();
  });

  it('takes a new incarnation when a peer holds more of its origin (a rolled-back disk), or when it cannot tell', async () => {
    for (const held of [{ seq: 8, incarnationMax: 0 }, undefined]) {
      const { node, origin } = await reopened();
      expect(await node.confirmOrigin(async () => held)).toBe('renewed');
      expect(node.origin).not.toBe(origin);
      const w = await node.write(node.table('profiles'), 'd', { op: 'put', value: {} });
      // never origin:4 again, which a peer may hold with other content
      expect(w.dot).toBe(`${node.origin}:1`);
      // the old origin's entries stay, served like a peer's; its later ones can still be pulled in
      expect(node.vector()).toMatchObject({ [origin]: 3, [node.origin]: 1 });
      await node.stop();
    }
  });
});

describe('custom merge siblings bound', () => {
  it('keeps the highest siblingsMax concurrent siblings and records the ones it drops in the conflict feed', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tandem-node-'));
    writeFileSync(join(dir, 'union.js'), 'exports.merge = (siblings) => ({ n: siblings.length });');
    const customConfig = parseConfig(
      { ...config, tables: { docs: { pattern: 'local', conflict: 'custom', merge: './union.js' } } },
      'test config',
    );
    const wall = 1_800_000_000_000;
    const node = nodeAt(dir, () => wall, { config: customConfig, configPath: join(dir, 'cluster.yaml') });
    await node.start();
    const docs = node.table('docs');
    // one concurrent write from each of siblingsMax + 1 origins
    const entries = Array.from({ length: limits.siblingsMax + 1 }, (_, i) => {
      const origin = `peer-${i}.1`;
      const state = applyLocalWrite(docs.semantics, undefined, { op: 'put', value: { i } }, { dot: `${origin}:1`, hlc: hlcOf(wall + i, 0), site: `peer-${i}`, origin });
      return { origin, seq: 1, hlc: state.w.h, items: [{ table: 'docs', key: 'k', state }] };
    });
    expect(await node.applyRemote(entries)).toMatchObject({ applied: limits.siblingsMax + 1 });
    expect((await node.get(docs, 'k'))?.value).toEqual({ n: limits.siblingsMax });
    const feed = await node.store.conflicts('docs', 0, 100);
    expect(feed.map((c) => c.record.loserDot)).toEqual(['peer-0.1:1']);
    await node.stop();
  });
});

describe('snapshot install over stale local items', () => {
  it('a local item the snapshot covers is replaced, not joined; one it covers and lacks is retired; newer local items are kept', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tandem-node-'));
    const wall = 1_800_000_000_000;
    const node = nodeAt(dir, () => wall);
    await node.start();
    const counters = node.table('counters');
    const stamp = (origin: string, seq: number, ms: number) => ({ dot: `${origin}:${seq}`, hlc: hlcOf(ms, 0), site: origin.split('.')[0]!, origin });
    // a stale copy: +2 by ap-south, from before a delete its peers have since purged
    const stale = applyLocalWrite(counters.semantics, undefined, { op: 'patch', patch: { increment: { n: 2 } } }, stamp('ap-south.1', 1, wall - 10));
    const gone = applyLocalWrite(counters.semantics, undefined, { op: 'patch', patch: { increment: { n: 4 } } }, stamp('ap-south.1', 2, wall - 9));
    const mine = applyLocalWrite(counters.semantics, undefined, { op: 'patch', patch: { increment: { n: 1 } } }, stamp('eu-west.1', 1, wall - 8));
    expect(await node.applyRemote([
      { origin: 'ap-south.1', seq: 1, hlc: stale.w.h, items: [{ table: 'counters', key: 'k', state: stale }] },
      { origin: 'ap-south.1', seq: 2, hlc: gone.w.h, items: [{ table: 'counters', key: 'gone', state: gone }] },
      { origin: 'eu-west.1', seq: 1, hlc: mine.w.h, items: [{ table: 'counters', key: 'newer', state: mine }] },
    ])).toMatchObject({ applied: 3 });
    // the peer's snapshot: k deleted (resetting the +2), purged, then written again with +5 from the GC floor
    const snapshotVector = { 'ap-south.1': 2, 'us-east.9': 3 };
    const again = applyLocalWrite(counters.semantics, undefined, { op: 'patch', patch: { increment: { n: 5 } } }, stamp('us-east.9', 3, wall - 5), { 'ap-south.1': 2, 'us-east.9': 2 });
    // a join would keep ap-south's +2 (pairs merge by max): 7
    expect(await node.repairItems([{ table: 'counters', key: 'k', state: again }], { supersededBy: snapshotVector })).toBe(1);
    expect((await node.get(counters, 'k'))?.value).toMatchObject({ n: 5 });
    // 'gone' is covered and absent from the snapshot: deleted and purged at the source
    expect(await node.retireItemsCoveredBy(snapshotVector, (_t, key) => key === 'k')).toBe(1);
    expect(await node.get(counters, 'gone')).toBeUndefined();
    expect((await node.store.getItem('counters', 'gone'))?.state).toMatchObject({ c: { 'ap-south.1': 2 }, k: {}, x: [] });
    // 'newer' holds a dot the snapshot has not seen: kept as it is
    expect((await node.get(counters, 'newer'))?.value).toMatchObject({ n: 1 });
    await node.stop();
  });
});
