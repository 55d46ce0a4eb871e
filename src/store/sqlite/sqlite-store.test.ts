import { fdatasync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import Database from 'better-sqlite3';
import { storeSuite } from '../conformance.js';
import { SqliteStore } from './sqlite-store.js';
import { emptyState, type ItemState } from '../../core/item.js';
import type { CommitRequest } from '../types.js';

let clock = 1_700_000_000_000;
storeSuite('sqlite', {
  async create(siteId) {
    const path = join(mkdtempSync(join(tmpdir(), 'tandem-store-')), 'store.db');
    const make = () => new SqliteStore({ path, siteId, wallMs: () => clock++, conflictEntriesMax: 1000 });
    return { store: make(), reopen: make };
  },
  snapshotFiles: {
    path: () => join(mkdtempSync(join(tmpdir(), 'tandem-snap-')), 'store.db'),
    open: (path, siteId) => new SqliteStore({ path, siteId, wallMs: () => clock++, conflictEntriesMax: 1000 }),
  },
});

/** A new store of site a, opened once and closed: its path. */
async function createdStore(): Promise<string> {
  const path = join(mkdtempSync(join(tmpdir(), 'tandem-store-')), 'store.db');
  const store = new SqliteStore({ path, siteId: 'a', wallMs: () => 1, conflictEntriesMax: 10 });
  await store.open();
  await store.close();
  return path;
}

it('sqlite: runs in WAL mode (fdatasync per commit) and refuses a data dir of another site', async () => {
  const path = await createdStore();
  const db = new Database(path);
  expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
  db.close();
  const other = new SqliteStore({ path, siteId: 'b', wallMs: () => 1, conflictEntriesMax: 10 });
  await expect(other.open()).rejects.toThrow(/belongs to site a/);
});

/** A local write of site a (origin `origin`) putting `key`, live ({ key }) or a tombstone. */
function localPut(origin: string, key: string, live = true): CommitRequest {
  const state = (seq: number): ItemState => ({ ...emptyState(), c: { [origin]: seq }, w: { h: '0000000000010000', s: 'a', d: `${origin}:${seq}` } });
  return {
    kind: 'local',
    refs: [{ table: 't', key }],
    build: (_c, seq) => ({
      hlc: '0000000000010000',
      records: [{ table: 't', key, live, value: live ? { key } : undefined, version: `v${seq}`, origin: 'a', hash: live ? 'cd'.repeat(16) : '', state: state(seq) }],
    }),
  };
}

/** A peer's entry (site b) leaving a tombstone at `key`: the log numbers its origin. */
function remoteEntry(origin: string, seq: number, key: string): CommitRequest {
  const st: ItemState = { ...emptyState(), c: { [origin]: seq }, w: { h: '0000000000020000', s: 'b', d: `${origin}:${seq}` } };
  const entry = { origin, seq, hlc: '0000000000020000', items: [{ table: 't', key, state: st }] };
  return { kind: 'remote', entry, merge: () => ({ records: [{ table: 't', key, live: false, value: undefined, version: `r${seq}`, origin: 'b', hash: '', state: st }], conflicts: [] }) };
}

it('sqlite: opens a schema 1 store (items and log WITHOUT ROWID) and migrates it, data intact', async () => {
  const path = join(mkdtempSync(join(tmpdir(), 'tandem-store-')), 'store.db');
  const open = () => new SqliteStore({ path, siteId: 'a', wallMs: () => clock++, conflictEntriesMax: 10 });
  const store = open();
  const { origin } = await store.open();
  const put = (key: string, live: boolean) => localPut(origin, key, live);
  await store.commit([put('k1', true), put('k2', false), remoteEntry('b.1', 1, 'rb'), put('é', true)]);
  const before = { items: await store.scanAll('t', undefined, 10), log: await store.readLog({}, 10, 1 << 20), digests: await store.digests() };
  await store.close();

  // rewrite the file into schema 1's layout, as an earlier version left it
  const db = new Database(path);
  db.exec(`
    DROP INDEX items_tombstones;
    ALTER TABLE items RENAME TO items_new; ALTER TABLE log RENAME TO log_new;
    CREATE TABLE items (tbl TEXT NOT NULL, key BLOB NOT NULL, state BLOB NOT NULL, live INTEGER NOT NULL,
      value TEXT, version TEXT NOT NULL, origin TEXT NOT NULL, hash TEXT NOT NULL, bucket INTEGER NOT NULL,
      PRIMARY KEY (tbl, key)) WITHOUT ROWID;
    CREATE TABLE log (origin TEXT NOT NULL, seq INTEGER NOT NULL, hlc TEXT NOT NULL, body BLOB NOT NULL, PRIMARY KEY (origin, seq)) WITHOUT ROWID;
    CREATE INDEX items_tombstones ON items (tbl, key) WHERE live = 0;
    INSERT INTO items SELECT tbl, key, state, live, value, version, origin, hash, bucket FROM items_new;
    INSERT INTO log SELECT o.origin, l.id - o.id * 140737488355328, l.hlc, l.body FROM log_new l JOIN origins o ON l.id / 140737488355328 = o.id;
    DROP TABLE items_new; DROP TABLE log_new; DROP TABLE origins;
    UPDATE meta SET v = '1' WHERE k = 'schema';
  `);
  db.close();

  const again = open();
  await again.open();
  expect(await again.scanAll('t', undefined, 10)).toEqual(before.items);
  expect(await again.readLog({}, 10, 1 << 20)).toEqual(before.log);
  expect(await again.digests()).toEqual(before.digests);
  expect(before.log.map((e) => `${e.origin}:${e.seq}`).sort()).toEqual([`${origin}:1`, `${origin}:2`, `${origin}:3`, 'b.1:1']);
  expect(again.vector()).toEqual({ [origin]: 3, 'b.1': 1 });
  // and it goes on writing: the next seq follows, the unique keys still hold, peers' origins append
  const next = await again.commit([put('k1', true), remoteEntry('b.1', 2, 'rb2'), remoteEntry('c.1', 1, 'rc')]);
  expect(next).toMatchObject([{ kind: 'local', ok: true, seq: 4 }, { kind: 'remote', applied: true }, { kind: 'remote', applied: true }]);
  expect((await again.readLog({ [origin]: 4, 'b.1': 1 }, 10, 1 << 20)).map((e) => `${e.origin}:${e.seq}`)).toEqual(['b.1:2', 'c.1:1']);
  expect(await again.compactLog({ 'b.1': 2 })).toBe(2);
  expect((await again.readLog({}, 10, 1 << 20)).map((e) => `${e.origin}:${e.seq}`)).toEqual([`${origin}:1`, `${origin}:2`, `${origin}:3`, `${origin}:4`, 'c.1:1']);
  await again.close();
  const check = new Database(path, { readonly: true });
  expect(check.prepare("SELECT v FROM meta WHERE k = 'schema'").get()).toEqual({ v: '3' });
  expect(check.prepare("SELECT name FROM sqlite_schema WHERE name LIKE '%_v1' OR name LIKE '%_new'").all()).toEqual([]);
  expect(check.prepare("SELECT count(*) n FROM items WHERE tbl = 't' AND key = ?").get(Buffer.from('k1'))).toEqual({ n: 1 });
  expect(check.prepare('SELECT id, origin FROM origins ORDER BY id').all()).toEqual([
    { id: 1, origin: 'b.1' },
    { id: 2, origin: 'c.1' },
    { id: 65_535, origin },
  ]);
  check.close();
});

it('sqlite: opens a schema 2 store (no void backlog) and migrates it: data intact, void items kept from then on', async () => {
  const path = join(mkdtempSync(join(tmpdir(), 'tandem-store-')), 'store.db');
  const open = () => new SqliteStore({ path, siteId: 'a', wallMs: () => clock++, conflictEntriesMax: 10 });
  const store = open();
  const { origin } = await store.open();
  await store.commit([localPut(origin, 'k1'), remoteEntry('b.1', 1, 'rb')]);
  const before = { items: await store.scanAll('t', undefined, 10), log: await store.readLog({}, 10, 1 << 20) };
  await store.close();
  // as schema 2 left it
  const db = new Database(path);
  db.exec("DROP TABLE void_backlog; DROP INDEX idempotency_dot; UPDATE meta SET v = '2' WHERE k = 'schema';");
  db.close();
  const again = open();
  await again.open();
  expect(await again.scanAll('t', undefined, 10)).toEqual(before.items);
  expect(await again.readLog({}, 10, 1 << 20)).toEqual(before.log);
  expect(await again.voidBacklog(10)).toEqual([]);
  const st = before.log[0]!.items[0]!.state;
  await again.commit([{ kind: 'repair', refs: [], merge: () => ({ records: [], conflicts: [], voidBacklog: { add: [{ table: 't', key: 'k1', dot: `${origin}:1`, origin, seq: 1, value: null, state: st }] } }) }, localPut(origin, 'k2')]);
  expect(await again.voidBacklog(10)).toHaveLength(1);
  await again.close();
  const check = new Database(path, { readonly: true });
  expect(check.prepare("SELECT v FROM meta WHERE k = 'schema'").get()).toEqual({ v: '3' });
  check.close();
});

it('sqlite: refuses a store of an unknown schema, naming it', async () => {
  const path = await createdStore();
  const db = new Database(path);
  db.prepare("UPDATE meta SET v = '9' WHERE k = 'schema'").run();
  db.close();
  await expect(new SqliteStore({ path, siteId: 'a', wallMs: () => 1, conflictEntriesMax: 10 }).open()).rejects.toThrow(/store schema 9/);
});

it('sqlite: a failed WAL sync is fatal: that commit and every later one is refused, and onFatal is told once', async () => {
  const path = join(mkdtempSync(join(tmpdir(), 'tandem-store-')), 'store.db');
  let failing = false;
  const fatal: Error[] = [];
  const open = () =>
    new SqliteStore({
      path,
      siteId: 'a',
      wallMs: () => clock++,
      conflictEntriesMax: 10,
      fdatasync: (fd, done) => (failing ? done(Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO' })) : fdatasync(fd, done)),
      onFatal: (e) => fatal.push(e),
    });
  const store = open();
  const { origin } = await store.open();
  const put = (key: string) => localPut(origin, key);
  expect(await store.commit([put('k1')])).toMatchObject([{ ok: true, seq: 1 }]);
  failing = true;
  const refused = { status: 503, type: 'store-failed' };
  await expect(store.commit([put('k2')])).rejects.toMatchObject(refused);
  expect(fatal).toHaveLength(1);
  expect(fatal[0]!.message).toMatch(/could not make its write-ahead log durable \(EIO: i\/o error, fdatasync\).*outcome of this write is unknown/);
  // the disk may work again; the store does not: a later sync would not prove the earlier frames
  failing = false;
  await expect(store.commit([put('k3')])).rejects.toThrow(/takes no more writes until it is restarted.*this write was not applied/);
  await expect(store.commit([put('k3')])).rejects.toMatchObject(refused);
  const remote = remoteEntry('b.1', 1, 'rb');
  await expect(store.commit([remote], { sync: false })).rejects.toMatchObject(refused);
  await expect(store.sync()).rejects.toMatchObject(refused);
  expect(fatal).toHaveLength(1);
  // what is served stops at the last durable commit
  expect(store.vector()).toEqual({ [origin]: 1 });
  expect(await store.readLog({}, 10, 1 << 20)).toHaveLength(1);
  await store.close();

  // a restart recovers from the disk: the refused commits were never applied
  const again = open();
  await again.open();
  expect(await again.getItem('t', 'k1')).toMatchObject({ live: true, version: 'v1' });
  expect(await again.getItem('t', 'k3')).toBeUndefined();
  expect(await again.getItem('t', 'rb')).toBeUndefined();
  expect(await again.commit([put('k4')])).toMatchObject([{ ok: true }]);
  await again.close();
});

it('sqlite: nothing of a write is read, scanned or snapshotted before its fdatasync ends', async () => {
  const path = join(mkdtempSync(join(tmpdir(), 'tandem-store-')), 'store.db');
  const held: (() => void)[] = [];
  const store = new SqliteStore({
    path,
    siteId: 'a',
    wallMs: () => clock++,
    conflictEntriesMax: 10,
    // every fdatasync waits until the test lets it go
    fdatasync: (fd, done) => held.push(() => fdatasync(fd, done)),
  });
  const { origin } = await store.open();
  const committed = store.commit([localPut(origin, 'k')]);
  // the transaction is committed (visible to this connection) while its sync is held
  await new Promise((r) => setImmediate(r));
  expect(held).toHaveLength(1);
  const settled: string[] = [];
  const read = store.getItem('t', 'k').then((r) => settled.push(`get ${r?.key}`));
  const scan = store.scanItems({ table: 't', limit: 10 }).then((r) => settled.push(`scan ${r.length}`));
  const all = store.scanAll('t', undefined, 10).then((r) => settled.push(`all ${r.length}`));
  const buckets = store.itemsInBuckets('t', Array.from({ length: 256 }, (_, i) => i), undefined, 10).then((r) => settled.push(`buckets ${r.length}`));
  const snapshot = (async () => {
    for await (const page of store.snapshot(10)) if (page.vector) settled.push(`snapshot ${page.vector[origin]}`);
  })();
  for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
  expect(settled).toEqual([]);
  held.shift()!();
  expect(await committed).toMatchObject([{ ok: true, seq: 1 }]);
  await Promise.all([read, scan, all, buckets, snapshot]);
  expect(settled.sort()).toEqual(['all 1', 'buckets 1', 'get k', 'scan 1', 'snapshot 1']);
  await store.close();
});

it('sqlite: sync() covers a group commit whose own fdatasync is still in flight (a switchover fence reads its cut there)', async () => {
  const path = join(mkdtempSync(join(tmpdir(), 'tandem-store-')), 'store.db');
  const held: (() => void)[] = [];
  const store = new SqliteStore({ path, siteId: 'a', wallMs: () => 1, conflictEntriesMax: 10, fdatasync: (fd, done) => held.push(() => fdatasync(fd, done)) });
  const { origin } = await store.open();
  const committed = store.commit([localPut(origin, 'k')]);
  await new Promise((r) => setImmediate(r));
  expect(held).toHaveLength(1);
  const synced = store.sync();
  for (let i = 0; i < 5 && held.length < 2; i++) await new Promise((r) => setImmediate(r));
  while (held.length > 0) held.shift()!();
  // the entry numbered before sync() was called is in what it returns (it was left out: a voided ack)
  expect((await synced)[origin]).toBe(1);
  expect(await committed).toMatchObject([{ ok: true, seq: 1 }]);
  await store.close();
});

it('sqlite: a read waiting for a sync that fails is refused (503 store-failed), not answered', async () => {
  const path = join(mkdtempSync(join(tmpdir(), 'tandem-store-')), 'store.db');
  let fail: (() => void) | undefined;
  const store = new SqliteStore({
    path,
    siteId: 'a',
    wallMs: () => clock++,
    conflictEntriesMax: 10,
    fdatasync: (_fd, done) => {
      fail = () => done(Object.assign(new Error('EIO: i/o error'), { code: 'EIO' }));
    },
  });
  const { origin } = await store.open();
  const committed = store.commit([localPut(origin, 'k')]);
  await new Promise((r) => setImmediate(r));
  const read = store.getItem('t', 'k');
  fail!();
  await expect(committed).rejects.toMatchObject({ status: 503, type: 'store-failed' });
  await expect(read).rejects.toMatchObject({ status: 503, type: 'store-failed' });
  await expect(store.getItem('t', 'k')).rejects.toMatchObject({ status: 503, type: 'store-failed' });
  await store.close();
});

it('sqlite: a peer entry whose merge throws is quarantined alone: the group commits, the vector moves, later entries apply', async () => {
  const path = join(mkdtempSync(join(tmpdir(), 'tandem-store-')), 'store.db');
  const store = new SqliteStore({ path, siteId: 'a', wallMs: () => clock++, conflictEntriesMax: 10 });
  const { origin } = await store.open();
  const poisoned = remoteEntry('b.1', 1, 'bad');
  const throwing: CommitRequest = {
    ...poisoned,
    merge: () => {
      throw new TypeError('malformed item state');
    },
  } as CommitRequest;
  const results = await store.commit([localPut(origin, 'mine'), throwing, remoteEntry('b.1', 2, 'good')]);
  expect(results).toMatchObject([{ kind: 'local', ok: true }, { kind: 'remote', applied: true, quarantined: 'malformed item state' }, { kind: 'remote', applied: true }]);
  expect(results[2]).not.toHaveProperty('quarantined');
  expect(store.vector()).toMatchObject({ [origin]: 1, 'b.1': 2 });
  expect(await store.getItem('t', 'mine')).toMatchObject({ live: true });
  expect(await store.getItem('t', 'bad')).toBeUndefined();
  expect(await store.getItem('t', 'good')).toMatchObject({ live: false });
  // logged as received, so peers downstream still get it
  expect((await store.readLog({}, 10, 1 << 20)).map((e) => `${e.origin}:${e.seq}`)).toEqual(['a.1:1', 'b.1:1', 'b.1:2'].map((d) => d.replace('a.1', origin)));
  expect(await store.quarantined(10)).toMatchObject([{ origin: 'b.1', seq: 1, reason: 'malformed item state' }]);
  // a repair whose merge throws fails alone too
  const repair: CommitRequest = { kind: 'repair', refs: [{ table: 't', key: 'x' }], merge: () => { throw new Error('bad state'); } };
  expect(await store.commit([repair, localPut(origin, 'mine2')])).toMatchObject([{ kind: 'repair', written: 0, failed: 'bad state' }, { kind: 'local', ok: true }]);
  await store.close();
});
