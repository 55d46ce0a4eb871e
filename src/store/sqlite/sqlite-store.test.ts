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
  expect(check.prepare("SELECT v FROM meta WHERE k = 'schema'").get()).toEqual({ v: '2' });
  expect(check.prepare("SELECT name FROM sqlite_schema WHERE name LIKE '%_v1' OR name LIKE '%_new'").all()).toEqual([]);
  expect(check.prepare("SELECT count(*) n FROM items WHERE tbl = 't' AND key = ?").get(Buffer.from('k1'))).toEqual({ n: 1 });
  expect(check.prepare('SELECT id, origin FROM origins ORDER BY id').all()).toEqual([
    { id: 1, origin: 'b.1' },
    { id: 2, origin: 'c.1' },
    { id: 65_535, origin },
  ]);
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
