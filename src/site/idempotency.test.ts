// Idempotency-Key at the site node, over real SQLite stores in process: a repeat answers the first
// answer and writes nothing (the vector does not move), at the same site, after a restart, and at a
// site that received the first write's entry; concurrent repeats commit once; the same key with a
// different request is 422.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { demoConfig } from '../config/demo.js';
import { realNextTurn, realRandom, realTimers } from '../platform/real/real-env.js';
import { silentLogger, type Env } from '../platform/env.js';
import { SqliteStore } from '../store/sqlite/sqlite-store.js';
import { SiteNode, type ReplayedWrite, type WriteOutcome } from './site-node.js';

const config = demoConfig({ sites: 3, basePort: 7100 });
const wall = 1_800_000_000_000;

function nodeAt(dir: string, siteId = 'us-east'): SiteNode {
  const env: Env = {
    clock: { monotonicMs: () => performance.now(), wallMs: () => wall },
    timers: realTimers,
    random: realRandom,
    transport: { request: () => Promise.reject(new Error('no network in this test')) },
    log: silentLogger,
  };
  const store = new SqliteStore({ path: join(dir, 'store.db'), siteId, wallMs: () => wall, conflictEntriesMax: 100 });
  return new SiteNode({ env, config, siteId, store, nextTurn: realNextTurn });
}

async function started(siteId = 'us-east'): Promise<{ node: SiteNode; dir: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'tandem-idem-'));
  const node = nodeAt(dir, siteId);
  await node.start();
  return { node, dir };
}

function replayed(outcome: WriteOutcome | ReplayedWrite | (WriteOutcome[] | ReplayedWrite)): ReplayedWrite {
  expect(outcome).toMatchObject({ replayed: true });
  return outcome as ReplayedWrite;
}

function fresh(outcome: WriteOutcome | ReplayedWrite): WriteOutcome {
  expect('replayed' in outcome).toBe(false);
  return outcome as WriteOutcome;
}

const increment = (n: number) => ({ op: 'patch' as const, patch: { increment: { n } } });

describe('Idempotency-Key at the site node', () => {
  it('a repeated increment is applied once: the repeat answers the first answer and the vector does not move', async () => {
    const { node } = await started();
    const counters = node.table('counters');
    const first = fresh(await node.write(counters, 'c', increment(5), { idempotencyKey: 'inc-1' }));
    const vector = node.vector();
    const again = replayed(await node.write(counters, 'c', increment(5), { idempotencyKey: 'inc-1' }));
    expect(again).toEqual({ replayed: true, dot: first.dot, origin: node.origin, seq: first.seq, items: [{ table: 'counters', key: 'c', version: first.record.version, origin: 'us-east' }] });
    expect(node.vector()).toEqual(vector);
    expect((await node.get(counters, 'c'))?.value).toMatchObject({ n: 5 });
    // without the key, the same request is a new increment
    await node.write(counters, 'c', increment(5));
    expect((await node.get(counters, 'c'))?.value).toMatchObject({ n: 10 });
    await node.stop();
  });

  it('concurrent requests under one key commit once, in one group or across groups, and all get the same answer', async () => {
    const { node } = await started();
    const counters = node.table('counters');
    const same = Array.from({ length: 8 }, () => node.write(counters, 'c', increment(1), { idempotencyKey: 'burst' }));
    // one more after the first group has started committing
    const later = new Promise<WriteOutcome | ReplayedWrite>((resolve, reject) => setImmediate(() => node.write(counters, 'c', increment(1), { idempotencyKey: 'burst' }).then(resolve, reject)));
    const outcomes = await Promise.all([...same, later]);
    expect(outcomes.filter((o) => !('replayed' in o))).toHaveLength(1);
    expect(new Set(outcomes.map((o) => o.dot)).size).toBe(1);
    expect(node.vector()).toEqual({ [node.origin]: 1 });
    expect((await node.get(counters, 'c'))?.value).toMatchObject({ n: 1 });
    await node.stop();
  });

  it('the same key with another request is 422 idempotency-key-reused naming the key, and writes nothing', async () => {
    const { node } = await started();
    const profiles = node.table('profiles');
    await node.write(profiles, 'a', { op: 'put', value: { v: 1 } }, { idempotencyKey: 'k-1' });
    const vector = node.vector();
    for (const attempt of [
      () => node.write(profiles, 'a', { op: 'put', value: { v: 2 } }, { idempotencyKey: 'k-1' }),
      () => node.write(profiles, 'b', { op: 'put', value: { v: 1 } }, { idempotencyKey: 'k-1' }),
      () => node.write(node.table('carts'), 'a', { op: 'put', value: { v: 1 } }, { idempotencyKey: 'k-1' }),
      () => node.write(profiles, 'a', { op: 'delete' }, { idempotencyKey: 'k-1' }),
      () => node.write(profiles, 'a', { op: 'put', value: { v: 1 } }, { idempotencyKey: 'k-1', ifMatch: '*' }),
      () => node.batch([{ op: 'put', table: 'profiles', key: 'a', itemOp: { op: 'put', value: { v: 1 } } }], { idempotencyKey: 'k-1' }),
    ])
      await expect(attempt()).rejects.toMatchObject({ status: 422, type: 'idempotency-key-reused', message: expect.stringContaining('"k-1"') });
    expect(node.vector()).toEqual(vector);
    expect((await node.get(profiles, 'a'))?.value).toEqual({ v: 1 });
    // the same request with a different durability is the same request
    replayed(await node.write(profiles, 'a', { op: 'put', value: { v: 1 } }, { idempotencyKey: 'k-1', awaitsAck: true }));
    await node.stop();
  });

  it('a repeated batch answers every item of the first batch and writes nothing', async () => {
    const { node } = await started();
    const ops = [
      { op: 'put' as const, table: 'profiles', key: 'x', itemOp: { op: 'put' as const, value: { x: 1 } } },
      { op: 'patch' as const, table: 'counters', key: 'y', itemOp: increment(2) },
    ];
    const first = await node.batch(ops, { idempotencyKey: 'batch-1' });
    expect(Array.isArray(first)).toBe(true);
    const firstItems = (first as WriteOutcome[]).map((o) => ({ table: o.record.table, key: o.record.key, version: o.record.version, origin: o.record.origin }));
    const again = replayed(await node.batch(ops, { idempotencyKey: 'batch-1' }));
    expect(again.items).toEqual(firstItems);
    expect(again.dot).toBe((first as WriteOutcome[])[0]!.dot);
    expect((await node.get(node.table('counters'), 'y'))?.value).toMatchObject({ n: 2 });
    await node.stop();
  });

  it('a refused write records no key: its repeat is decided again', async () => {
    const { node } = await started();
    const profiles = node.table('profiles');
    await expect(node.write(profiles, 'a', { op: 'put', value: { v: 1 } }, { idempotencyKey: 'cas', ifMatch: '*' })).rejects.toMatchObject({ status: 412 });
    await node.write(profiles, 'a', { op: 'put', value: { v: 0 } });
    fresh(await node.write(profiles, 'a', { op: 'put', value: { v: 1 } }, { idempotencyKey: 'cas', ifMatch: '*' }));
    await node.stop();
  });

  it('the key survives a restart: the repeat after it answers the first answer', async () => {
    const { node, dir } = await started();
    const first = fresh(await node.write(node.table('counters'), 'c', increment(3), { idempotencyKey: 'restart' }));
    await node.stop();
    const again = nodeAt(dir);
    await again.start();
    await again.confirmOrigin(async () => ({ seq: 0, incarnationMax: 0 }));
    expect(replayed(await again.write(again.table('counters'), 'c', increment(3), { idempotencyKey: 'restart' })).dot).toBe(first.dot);
    expect((await again.get(again.table('counters'), 'c'))?.value).toMatchObject({ n: 3 });
    await again.stop();
  });

  it("a site that applied the first write's entry answers a repeat with the first answer (the owner's, after a failover)", async () => {
    const { node: east } = await started('us-east');
    const { node: west } = await started('eu-west');
    const first = fresh(await east.write(east.table('ledger'), 'acct', { op: 'put', value: { paid: 7 } }, { idempotencyKey: 'pay-1' }));
    const entries = await east.store.readLog({}, 100, 1 << 20);
    expect(entries[0]!.idempotency).toMatchObject({ key: 'pay-1' });
    expect(await west.applyRemote(entries)).toMatchObject({ applied: 1 });
    const vector = west.vector();
    const again = replayed(await west.write(west.table('ledger'), 'acct', { op: 'put', value: { paid: 7 } }, { idempotencyKey: 'pay-1' }));
    expect(again).toMatchObject({ dot: first.dot, items: [{ table: 'ledger', key: 'acct', version: first.record.version, origin: 'us-east' }] });
    expect(west.vector()).toEqual(vector);
    await expect(west.write(west.table('ledger'), 'acct', { op: 'put', value: { paid: 8 } }, { idempotencyKey: 'pay-1' })).rejects.toMatchObject({ status: 422 });
    await east.stop();
    await west.stop();
  });
});
