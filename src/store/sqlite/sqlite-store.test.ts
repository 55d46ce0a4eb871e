import { mkdtempSync } from 'node:fs';
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

it('sqlite: runs in WAL mode (fdatasync per commit) and refuses a data dir of another site', async () => {
  const path = join(mkdtempSync(join(tmpdir(), 'tandem-store-')), 'store.db');
  const store = new SqliteStore({ path, siteId: 'a', wallMs: () => 1, conflictEntriesMax: 10 });
  await store.open();
  await store.close();
  const db = new Database(path);
  expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
  db.close();
  const other = new SqliteStore({ path, siteId: 'b', wallMs: () => 1, conflictEntriesMax: 10 });
  await expect(other.open()).rejects.toThrow(/belongs to site a/);
});

it('sqlite: opens a schema 1 store (items and log WITHOUT ROWID) and migrates it, data intact', async () => {
  const path = join(mkdtempSync(join(tmpdir(), 'tandem-store-')), 'store.db');
  const open = () => new SqliteStore({ path, siteId: 'a', wallMs: () => clock++, conflictEntriesMax: 10 });
  const store = open();
  const { origin } = await store.open();
  const state = (seq: number): ItemState => ({ ...emptyState(), c: { [origin]: seq }, w: { h: '0000000000010000', s: 'a', d: `${origin}:${seq}` } });
  const put = (key: string, live: boolean): CommitRequest => ({
    kind: 'local',
    refs: [{ table: 't', key }],
    build: (_c, seq) => ({
      hlc: '0000000000010000',
      records: [{ table: 't', key, live, value: live ? { key } : undefined, version: `v${seq}`, origin: 'a', hash: live ? 'cd'.repeat(16) : '', state: state(seq) }],
    }),
  });
  await store.commit([put('k1', true), put('k2', false), put('é', true)]);
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
    INSERT INTO log SELECT origin, seq, hlc, body FROM log_new;
    DROP TABLE items_new; DROP TABLE log_new;
    UPDATE meta SET v = '1' WHERE k = 'schema';
  `);
  db.close();

  const again = open();
  await again.open();
  expect(await again.scanAll('t', undefined, 10)).toEqual(before.items);
  expect(await again.readLog({}, 10, 1 << 20)).toEqual(before.log);
  expect(await again.digests()).toEqual(before.digests);
  expect(again.vector()).toEqual({ [origin]: 3 });
  // and it goes on writing: the next seq follows, the unique keys still hold
  const [next] = await again.commit([put('k1', true)]);
  expect(next).toMatchObject({ kind: 'local', ok: true, seq: 4 });
  await again.close();
  const check = new Database(path, { readonly: true });
  expect(check.prepare("SELECT v FROM meta WHERE k = 'schema'").get()).toEqual({ v: '2' });
  expect(check.prepare("SELECT name FROM sqlite_schema WHERE name LIKE '%_v1' OR name LIKE '%_new'").all()).toEqual([]);
  expect(check.prepare("SELECT count(*) n FROM items WHERE tbl = 't' AND key = ?").get(Buffer.from('k1'))).toEqual({ n: 1 });
  check.close();
});

it('sqlite: refuses a store of an unknown schema, naming it', async () => {
  const path = join(mkdtempSync(join(tmpdir(), 'tandem-store-')), 'store.db');
  const store = new SqliteStore({ path, siteId: 'a', wallMs: () => 1, conflictEntriesMax: 10 });
  await store.open();
  await store.close();
  const db = new Database(path);
  db.prepare("UPDATE meta SET v = '9' WHERE k = 'schema'").run();
  db.close();
  await expect(new SqliteStore({ path, siteId: 'a', wallMs: () => 1, conflictEntriesMax: 10 }).open()).rejects.toThrow(/store schema 9/);
});
