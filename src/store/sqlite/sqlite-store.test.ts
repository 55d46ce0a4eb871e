import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import Database from 'better-sqlite3';
import { storeSuite } from '../conformance.js';
import { SqliteStore } from './sqlite-store.js';

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
