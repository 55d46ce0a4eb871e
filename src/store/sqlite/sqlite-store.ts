// The embedded Store: SQLite through better-sqlite3 in WAL mode. Durability equals
// synchronous=FULL, without blocking the event loop: SQLite runs with synchronous=NORMAL (asserted
// at open) and every commit then fdatasyncs the WAL file on the libuv thread pool; commit() resolves
// only after that, so nothing is acknowledged before it is on disk, while the site keeps serving
// reads and replication during the sync. One transaction per group commit. Keys are stored as
// UTF-8 BLOBs so SQLite's memcmp order is the UTF-8 byte order the API promises for scans.
//
// One connection both reads and writes, on the main thread. A writer connection of its own (on a
// worker thread, to take the statements and the WAL writes off the event loop) would cost the
// reads more than it saves: SQLite drops a connection's whole page cache when another connection
// has committed since its last read (pagerBeginReadTransaction), so every read after every group
// commit would start cold.
import { closeSync, constants as fsConstants, fdatasync, fdatasyncSync, fstatSync, mkdirSync, openSync, rmSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { Decoder } from '@msgpack/msgpack';
import { assert } from '../../core/assert.js';
import { RequestError } from '../../core/errors.js';
import { limits } from '../../limits.js';
import { canonicalVector, dominates, joinVectors, originOf, type VersionVector } from '../../core/vector.js';
import { versionOf, type ItemState } from '../../core/item.js';
import { memberStates, type Member, type Membership } from '../../core/membership.js';
import { decodeLogEntry, encodeLogEntry, logEntryStateBytes } from '../log-codec.js';
import { RawWriter } from '../../platform/msgpack-raw.js';
import { copySnapshotFile } from './snapshot-file.js';
import type {
  CommitRequest,
  CommitResult,
  ConflictRecord,
  CurrentItem,
  EntryIdempotency,
  IdempotencyRecord,
  ItemRecord,
  LogEntry,
  LogRecord,
  QuarantinedEntry,
  ScanRange,
  SnapshotFileInfo,
  Store,
  StoreBoundary,
  StoreIdentity,
  VoidBacklogItem,
  VoidBookkeeping,
} from '../types.js';

/**
 * The layout. Items are a rowid table with (tbl, key) in a unique index: a new item's row is
 * appended at the right edge of the table, and only the small index entry lands at its key's place.
 * The log's rowid is its position, origin number × 2^47 + seq (`origins` numbers the origins; this
 * site's own is the highest, so its entries append at the table's right edge), so it needs no index.
 * Keyed by their natural keys instead (schema 1, WITHOUT ROWID), every insert at a random key
 * rebalanced full 400-byte-row leaves: a group commit of 32 new items wrote 91 WAL frames, against
 * 55 now, and cost 40% more main-thread time.
 */
/**
 * Schema 3 adds the void backlog (void owned items kept until their owner compensates them) and an
 * index of Idempotency-Keys by the write that used them (a void write's key stops answering).
 */
const schemaVersion = 3;
/** A log row's id is origin number × 2^47 + seq: a 64-bit rowid, so bound as a BigInt. */
const logSpan = 2n ** 47n;
const logSeqMax = Number(logSpan) - 1;
const logId = (originNumber: number, seq: number): bigint => BigInt(originNumber) * logSpan + BigInt(seq);
/** This site's own origin's number; peers' origins are numbered from 1 as they first appear. */
const ownOriginNumber = 65_535;
export const schemaSql = `
  CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY,
    tbl TEXT NOT NULL, key BLOB NOT NULL, state BLOB NOT NULL, live INTEGER NOT NULL,
    value TEXT, version TEXT NOT NULL, origin TEXT NOT NULL, hash TEXT NOT NULL, bucket INTEGER NOT NULL);
  CREATE UNIQUE INDEX IF NOT EXISTS items_key ON items (tbl, key);
  CREATE INDEX IF NOT EXISTS items_tombstones ON items (tbl, key) WHERE live = 0;
  CREATE TABLE IF NOT EXISTS origins (id INTEGER PRIMARY KEY, origin TEXT NOT NULL UNIQUE);
  CREATE TABLE IF NOT EXISTS log (id INTEGER PRIMARY KEY, hlc TEXT NOT NULL, body BLOB NOT NULL);
  CREATE TABLE IF NOT EXISTS vector (origin TEXT PRIMARY KEY, seq INTEGER NOT NULL) WITHOUT ROWID;
  CREATE TABLE IF NOT EXISTS members (site TEXT PRIMARY KEY, state TEXT NOT NULL) WITHOUT ROWID;
  CREATE TABLE IF NOT EXISTS conflicts (id INTEGER PRIMARY KEY AUTOINCREMENT, tbl TEXT NOT NULL, key BLOB NOT NULL,
    loser_dot TEXT NOT NULL, body TEXT NOT NULL, at_ms INTEGER NOT NULL, UNIQUE (tbl, key, loser_dot));
  CREATE INDEX IF NOT EXISTS conflicts_age ON conflicts (at_ms);
  CREATE TABLE IF NOT EXISTS quarantine (origin TEXT NOT NULL, seq INTEGER NOT NULL, reason TEXT NOT NULL, at_ms INTEGER NOT NULL,
    PRIMARY KEY (origin, seq)) WITHOUT ROWID;
  CREATE TABLE IF NOT EXISTS idempotency (key TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, origin TEXT NOT NULL, seq INTEGER NOT NULL,
    hlc TEXT NOT NULL, items TEXT NOT NULL, at_ms INTEGER NOT NULL) WITHOUT ROWID;
  CREATE INDEX IF NOT EXISTS idempotency_age ON idempotency (at_ms);
  CREATE INDEX IF NOT EXISTS idempotency_dot ON idempotency (origin, seq);
  CREATE TABLE IF NOT EXISTS void_backlog (id INTEGER PRIMARY KEY, tbl TEXT NOT NULL, key BLOB NOT NULL, dot TEXT NOT NULL,
    origin TEXT NOT NULL, seq INTEGER NOT NULL, value TEXT NOT NULL, state BLOB NOT NULL, UNIQUE (tbl, key, dot));
`;
const decoder = new Decoder();
const packr = {
  pack: (value: unknown): Buffer => new RawWriter().value(value).finish(),
  unpack: (bytes: Uint8Array): unknown => decoder.decode(bytes),
};

export interface SqliteStoreOptions {
  path: string;
  siteId: string;
  /** wall clock, for the incarnation of a new store and conflict timestamps */
  wallMs: () => number;
  conflictEntriesMax: number;
  /**
   * 'full' (default, every real site): fsync on every commit, asserted. 'os-buffered' is only for
   * simulations, where a "crash" is the loss of a process, not of the OS page cache.
   */
  durability?: 'full' | 'os-buffered';
  /** the WAL fdatasync (default node:fs fdatasync); tests inject a failing one */
  fdatasync?: (fd: number, callback: (error: NodeJS.ErrnoException | null) => void) => void;
  /**
   * SQLite's automatic checkpoint threshold in WAL pages (default limits.walCheckpointPages); 0
   * turns automatic checkpoints off. Simulations use 0: the WAL then only grows and the main
   * database file stays as it was opened, so a power loss can be modelled by keeping the file and
   * the WAL's synced prefix (syncedWalBytes).
   */
  walAutoCheckpointPages?: number;
  /** SQLite's page cache in KiB (default SQLite's, ~2 MB): a restore replaying a log into a large store wants more. */
  cacheSizeKiB?: number;
  /** Preallocate the WAL at open (default true; see preallocateWal). Simulations skip it: 40 MB per open. */
  preallocateWal?: boolean;
  /**
   * Called once when the store fails for good (a WAL sync failed): it takes no more writes from
   * then on, and the process should stop so that a restart recovers from what is on disk.
   */
  onFatal?: (error: Error) => void;
}

interface ItemRow {
  key: Buffer;
  state: Buffer;
  live: number;
  value: string | null;
  version: string;
  origin: string;
  hash: string;
}

export class SqliteStore implements Store {
  readonly backend = 'sqlite';
  private db: Database.Database | undefined;
  private vec: VersionVector = {};
  /** vec plus this site's own writes committed and not yet synced: what the digests reflect */
  private committed: VersionVector = {};
  /** what is on disk: vec as of the last WAL sync */
  private durable: VersionVector = {};
  private syncing: Promise<void> | undefined;
  /** Set when a WAL sync failed: every later commit and sync is refused with it. */
  private failure: RequestError | undefined;
  /** Reads holding this site's own writes that are committed but not yet synced wait here. */
  private durableWaiters: { seq: number; resolve: () => void; reject: (e: unknown) => void }[] = [];
  private floor: VersionVector = {};
  private members: Membership = { epoch: -1, members: [] };
  /** the WAL file, fdatasync'ed after every commit (durability 'full') */
  private walFd: number | undefined;
  /** see syncedWalBytes() */
  private walSyncedBytes = 0;
  private compacted: VersionVector = {};
  /** origin → its number in the log's row ids (the `origins` table) */
  private originNumbers = new Map<string, number>();
  /** origins numbered by the transaction in progress, kept once it commits */
  private pendingOrigins: [string, number][] = [];
  private identity: StoreIdentity | undefined;
  private stmts!: ReturnType<SqliteStore['prepare']>;
  /**
   * Runs its argument in one transaction (`.immediate(fn)`). Made once: better-sqlite3 builds each
   * transaction function with Object.defineProperties, about 13 µs, too much to pay per commit.
   */
  private inTransaction!: Database.Transaction<(body: () => void) => void>;
  /** Per table, 256 bucket digests (XOR of live item hashes), kept in memory and updated per commit. */
  private buckets = new Map<string, Buffer[]>();
  /** Digest changes of the transaction in progress, applied once it commits. */
  private pendingHashes: { table: string; bucket: number; hash: string }[] = [];
  /**
   * The row id of each item as a write read it (readCurrent), so that writing an item it read is
   * an UPDATE by row id, not a second search of the key index.
   */
  private readRowIds = new WeakMap<CurrentItem, number | bigint>();
  /** see onDurableOwnEntries */
  private ownEntryListeners = new Set<(records: LogRecord[]) => void>();
  /** boundary() readers waiting for a commit to finish (vec to catch up with committed) */
  private vecWaiters: (() => void)[] = [];
  /** the clock high water of what is committed (hlcHighWater moves once the commit is synced) */
  private committedHlc = '';

  constructor(private readonly options: SqliteStoreOptions) {}

  async open(): Promise<StoreIdentity> {
    assert(this.db === undefined, 'store already open');
    if (this.options.path !== ':memory:') mkdirSync(dirname(this.options.path), { recursive: true });
    const db = new Database(this.options.path);
    db.pragma('journal_mode = WAL');
    // Rarer, larger checkpoints: each group commit appends many pages; checkpointing every ~1,000
    // pages cost ~15% of write throughput. The WAL shrinks back to the limit after a checkpoint.
    db.pragma(`wal_autocheckpoint = ${this.options.walAutoCheckpointPages ?? limits.walCheckpointPages}`);
    db.pragma(`journal_size_limit = ${walBytesFor(db)}`);
    if (this.options.cacheSizeKiB !== undefined) db.pragma(`cache_size = -${Math.floor(this.options.cacheSizeKiB)}`);
    const full = (this.options.durability ?? 'full') === 'full';
    db.pragma(full ? 'synchronous = NORMAL' : 'synchronous = OFF');
    const sync = db.pragma('synchronous', { simple: true });
    const mode = db.pragma('journal_mode', { simple: true });
    assert(!full || (sync === 1 && mode === 'wal'), `SQLite must run WAL with synchronous=NORMAL plus a WAL fdatasync per commit, got ${String(mode)}/${String(sync)}`);
    db.exec('CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL) WITHOUT ROWID');
    const stored = (db.prepare("SELECT v FROM meta WHERE k = 'schema'").get() as { v: string } | undefined)?.v;
    if (stored !== undefined && stored !== '1' && stored !== '2' && stored !== String(schemaVersion)) {
      db.close();
      throw new Error(`${this.options.path} has store schema ${stored}; this version reads schemas 1 to ${schemaVersion}`);
    }
    if (stored === '1') migrateFromSchema1(db);
    if (stored === '2') migrateFromSchema2(db);
    db.exec(schemaSql);
    this.db = db;
    this.stmts = this.prepare(db);
    this.inTransaction = db.transaction((body: () => void) => body());
    const meta = new Map(
      (db.prepare('SELECT k, v FROM meta').all() as { k: string; v: string }[]).map((r) => [r.k, r.v]),
    );
    let created = false;
    if (!meta.has('site')) {
      created = true;
      const incarnation = Math.max(1, Math.floor(this.options.wallMs()));
      const put = db.prepare('INSERT INTO meta (k, v) VALUES (?, ?)');
      db.transaction(() => {
        put.run('schema', String(schemaVersion));
        put.run('site', this.options.siteId);
        put.run('incarnation', String(incarnation));
        put.run('hlc', '0'.repeat(16));
      })();
      meta.set('site', this.options.siteId).set('incarnation', String(incarnation)).set('hlc', '0'.repeat(16));
      meta.set('schema', String(schemaVersion));
    }
    if (meta.get('site') !== this.options.siteId) {
      db.close();
      this.db = undefined;
      throw new Error(`${this.options.path} belongs to site ${meta.get('site')}, not ${this.options.siteId}`);
    }
    this.vec = {};
    for (const r of db.prepare('SELECT origin, seq FROM vector').all() as { origin: string; seq: number }[])
      this.vec[r.origin] = r.seq;
    this.floor = JSON.parse(meta.get('floor') ?? '{}') as VersionVector;
    this.members = {
      epoch: Number(meta.get('members_epoch') ?? -1),
      members: (db.prepare('SELECT site, state FROM members ORDER BY site').all() as Member[]).map((m) => ({ site: m.site, state: m.state })),
    };
    this.compacted = JSON.parse(meta.get('compacted') ?? '{}') as VersionVector;
    this.buckets.clear();
    for (const t of this.stmts.tables.all() as { tbl: string }[]) this.bucketsOf(t.tbl);
    for (const row of this.stmts.liveHashes.iterate() as Iterable<{ tbl: string; bucket: number; hash: string }>)
      xorInto(this.bucketsOf(row.tbl)[row.bucket]!, row.hash);
    const incarnation = Number(meta.get('incarnation'));
    this.identity = {
      siteId: this.options.siteId,
      incarnation,
      origin: originOf(this.options.siteId, incarnation),
      hlcHighWater: meta.get('hlc')!,
      created,
    };
    this.originNumbers = new Map((db.prepare('SELECT origin, id FROM origins').all() as { origin: string; id: number }[]).map((r) => [r.origin, r.id]));
    if (!this.originNumbers.has(this.identity.origin)) {
      this.stmts.putOrigin.run(ownOriginNumber, this.identity.origin);
      this.originNumbers.set(this.identity.origin, ownOriginNumber);
    }
    if (full && this.options.path !== ':memory:') {
      const walPath = `${this.options.path}-wal`;
      this.walFd = (this.options.preallocateWal ?? true) ? preallocateWal(walPath, walBytesFor(db)) : openSync(walPath, fsConstants.O_RDWR | fsConstants.O_CREAT, 0o644);
      // what the WAL held at open is on disk from here on (preallocateWal syncs it; else it is
      // what a simulated power loss kept)
      this.walSyncedBytes = fstatSync(this.walFd).size;
    }
    this.durable = { ...this.vec };
    this.committed = { ...this.vec };
    return this.identity;
  }

  async takeNewIncarnation(incarnationAtLeast = 0): Promise<StoreIdentity> {
    const db = this.handle;
    const old = this.identity!;
    const incarnation = Math.max(old.incarnation + 1, incarnationAtLeast + 1, Math.floor(this.options.wallMs()));
    const origin = originOf(this.options.siteId, incarnation);
    assert(!this.originNumbers.has(origin), `origin ${origin} is already in this store`);
    // the old origin becomes a peer's origin: its log rows move to a peer number, in one statement
    const peerNumber = this.nextPeerOriginNumber();
    db.transaction(() => {
      db.prepare('UPDATE log SET id = id - ? WHERE id > ? AND id <= ?').run(BigInt(ownOriginNumber - peerNumber) * logSpan, logId(ownOriginNumber, 0), logId(ownOriginNumber, logSeqMax));
      db.prepare('UPDATE origins SET id = ? WHERE id = ?').run(peerNumber, ownOriginNumber);
      this.stmts.putOrigin.run(ownOriginNumber, origin);
      this.stmts.putMeta.run('incarnation', String(incarnation));
    }).immediate();
    await this.syncWal();
    this.originNumbers.set(old.origin, peerNumber);
    this.originNumbers.set(origin, ownOriginNumber);
    this.identity = { ...old, incarnation, origin, created: false };
    return { ...this.identity };
  }

  private prepare(db: Database.Database) {
    return {
      getItem: db.prepare('SELECT key, state, live, value, version, origin, hash FROM items WHERE tbl = ? AND key = ?'),
      readCurrent: db.prepare('SELECT id, state, live, version, origin, hash FROM items WHERE tbl = ? AND key = ?'),
      updateItem: db.prepare('UPDATE items SET state = ?, live = ?, value = ?, version = ?, origin = ?, hash = ? WHERE id = ?'),
      putItem: db.prepare(
        `INSERT INTO items (tbl, key, state, live, value, version, origin, hash, bucket) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (tbl, key) DO UPDATE SET state = excluded.state, live = excluded.live, value = excluded.value,
           version = excluded.version, origin = excluded.origin, hash = excluded.hash`,
      ),
      putLog: db.prepare('INSERT INTO log (id, hlc, body) VALUES (?, ?, ?)'),
      putOrigin: db.prepare('INSERT INTO origins (id, origin) VALUES (?, ?)'),
      putVector: db.prepare('INSERT INTO vector (origin, seq) VALUES (?, ?) ON CONFLICT (origin) DO UPDATE SET seq = excluded.seq'),
      putHlc: db.prepare("UPDATE meta SET v = ? WHERE k = 'hlc' AND v < ?"),
      // No `LIMIT ?`: SQLite prepares a statement with a bound LIMIT again on every run (about 11 µs
      // here). An origin's seqs are contiguous in the log, so the upper seq bounds the count.
      readLog: db.prepare('SELECT id - ? AS seq, hlc, body FROM log WHERE id > ? AND id <= ? ORDER BY id'),
      putQuarantine: db.prepare('INSERT OR IGNORE INTO quarantine (origin, seq, reason, at_ms) VALUES (?, ?, ?, ?)'),
      readQuarantine: db.prepare('SELECT origin, seq, reason, at_ms AS atMs FROM quarantine ORDER BY at_ms, origin, seq LIMIT ?'),
      putConflict: db.prepare('INSERT OR IGNORE INTO conflicts (tbl, key, loser_dot, body, at_ms) VALUES (?, ?, ?, ?, ?)'),
      trimConflicts: db.prepare('DELETE FROM conflicts WHERE id <= (SELECT MAX(id) FROM conflicts) - ?'),
      readConflicts: db.prepare('SELECT id, body FROM conflicts WHERE tbl = ? AND id > ? ORDER BY id LIMIT ?'),
      liveHashes: db.prepare('SELECT tbl, bucket, hash FROM items WHERE live = 1'),
      scanAll: db.prepare(
        'SELECT key, state, live, value, version, origin, hash FROM items WHERE tbl = ? AND key > ? ORDER BY key LIMIT ?',
      ),
      tables: db.prepare('SELECT DISTINCT tbl FROM items'),
      tombstones: db.prepare('SELECT tbl, key, state FROM items WHERE live = 0 AND (tbl > ? OR (tbl = ? AND key > ?)) ORDER BY tbl, key LIMIT ?'),
      deleteItem: db.prepare('DELETE FROM items WHERE tbl = ? AND key = ? AND live = 0'),
      compactLog: db.prepare('DELETE FROM log WHERE id > ? AND id <= ?'),
      putMeta: db.prepare('INSERT INTO meta (k, v) VALUES (?, ?) ON CONFLICT (k) DO UPDATE SET v = excluded.v'),
      trimConflictsByAge: db.prepare('DELETE FROM conflicts WHERE at_ms < ?'),
      getIdempotency: db.prepare('SELECT key, fingerprint, origin, seq, hlc, items, at_ms FROM idempotency WHERE key = ?'),
      // Two entries under one key (two sites took it for a local table before either had the
      // other's): every site keeps the earlier by (hlc, origin, seq), so all answer alike.
      putIdempotency: db.prepare(
        `INSERT INTO idempotency (key, fingerprint, origin, seq, hlc, items, at_ms) VALUES (?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (key) DO UPDATE SET fingerprint = excluded.fingerprint, origin = excluded.origin, seq = excluded.seq,
           hlc = excluded.hlc, items = excluded.items, at_ms = excluded.at_ms
         WHERE (excluded.hlc, excluded.origin, excluded.seq) < (idempotency.hlc, idempotency.origin, idempotency.seq)`,
      ),
      pageIdempotency: db.prepare('SELECT key, fingerprint, origin, seq, hlc, items, at_ms FROM idempotency WHERE key > ? ORDER BY key LIMIT ?'),
      dropIdempotencyOf: db.prepare('DELETE FROM idempotency WHERE origin = ? AND seq = ?'),
      putVoid: db.prepare('INSERT OR IGNORE INTO void_backlog (tbl, key, dot, origin, seq, value, state) VALUES (?, ?, ?, ?, ?, ?, ?)'),
      dropVoid: db.prepare('DELETE FROM void_backlog WHERE tbl = ? AND key = ? AND dot = ?'),
      readVoids: db.prepare('SELECT tbl, key, dot, origin, seq, value, state FROM void_backlog ORDER BY id LIMIT ?'),
      trimIdempotency: db.prepare('DELETE FROM idempotency WHERE key IN (SELECT key FROM idempotency WHERE at_ms < ? ORDER BY at_ms LIMIT ?)'),
    };
  }

  private assertOpen(): void {
    assert(this.db !== undefined, 'store is not open');
  }

  private get handle(): Database.Database {
    assert(this.db !== undefined, 'store is not open');
    return this.db;
  }

  /**
   * Makes the WAL durable. A failed fdatasync is fatal (fail-stop, as PostgreSQL panics): the
   * kernel may have dropped the unsynced pages and cleared the error, so a later sync that
   * succeeds would not prove the earlier frames are on disk, and SQLite's recovery stops at the
   * first bad frame, taking later acknowledged commits with it. So nothing is acknowledged after it.
   */
  private async syncWal(): Promise<void> {
    if (this.failure) throw this.failure;
    if ((this.options.durability ?? 'full') !== 'full' || this.options.path === ':memory:') return;
    this.walFd ??= openSync(`${this.options.path}-wal`, 'r');
    const fd = this.walFd;
    const sync = this.options.fdatasync ?? fdatasync;
    try {
      // every WAL frame written before the fdatasync starts is covered by it
      const bytes = fstatSync(fd).size;
      await new Promise<void>((resolve, reject) => sync(fd, (err) => (err ? reject(err) : resolve())));
      if (bytes > this.walSyncedBytes) this.walSyncedBytes = bytes;
    } catch (error) {
      const cause = (error as Error).message;
      const failed = (detail: string) => new RequestError(503, 'store-failed', 'Store failed', detail, [], { retryAfterS: 1 });
      const unknown = failed(
        `site ${this.options.siteId} could not make its write-ahead log durable (${cause}); the outcome of this write is unknown, and the site takes no more writes until it is restarted`,
      );
      if (this.failure === undefined) {
        this.failure = failed(`site ${this.options.siteId} takes no more writes until it is restarted: its write-ahead log could not be made durable (${cause}); this write was not applied`);
        this.options.onFatal?.(unknown);
        for (const w of this.durableWaiters.splice(0)) w.reject(this.unreadable(cause));
      }
      throw unknown;
    }
  }

  async close(): Promise<void> {
    if (this.walFd !== undefined) {
      closeSync(this.walFd);
      this.walFd = undefined;
    }
    if (this.db === undefined) return;
    this.db.close();
    this.db = undefined;
  }

  async getItem(table: string, key: string): Promise<ItemRecord | undefined> {
    this.assertOpen();
    const row = this.stmts.getItem.get(table, Buffer.from(key, 'utf8')) as ItemRow | undefined;
    return row ? this.durableOnly([rowToRecord(table, row)]).then((r) => r[0]) : undefined;
  }

  /**
   * Nothing leaves this site before it is durable here. A group commit's transaction is visible
   * before its fdatasync ends, so records read then may hold this site's own writes that a crash
   * would take back and that the site would number again after it; such reads wait for that
   * sync (it is always in flight: own writes are committed with sync). Peers' entries are durable
   * at their origin and need not wait.
   */
  private async durableOnly<T extends { state: ItemState }>(records: T[]): Promise<T[]> {
    const own = this.identity!.origin;
    let needed = 0;
    for (const r of records) needed = Math.max(needed, r.state.c[own] ?? 0);
    await this.waitDurable(needed);
    return records;
  }

  /** Resolves once this site's own writes up to `seq` are durable; rejects if their sync failed. */
  private waitDurable(seq: number): Promise<void> {
    if ((this.durable[this.identity!.origin] ?? 0) >= seq) return Promise.resolve();
    if (this.failure) return Promise.reject(this.unreadable());
    return new Promise((resolve, reject) => this.durableWaiters.push({ seq, resolve, reject }));
  }

  /** A read refused after a failed sync: what it found holds a write that may not be on disk. */
  private unreadable(cause?: string): RequestError {
    const why = cause === undefined ? '' : ` (${cause})`;
    return new RequestError(503, 'store-failed', 'Store failed', `site ${this.options.siteId} cannot serve this read: it holds a write that could not be made durable here${why}; read at another site`, [], { retryAfterS: 1 });
  }

  /** Raises the durable vector and wakes the reads it now covers. */
  private markDurable(covered: VersionVector): void {
    this.durable = joinVectors(this.durable, covered);
    if (this.durableWaiters.length === 0) return;
    const seq = this.durable[this.identity!.origin] ?? 0;
    const waiting = this.durableWaiters;
    this.durableWaiters = [];
    for (const w of waiting) {
      if (w.seq <= seq) w.resolve();
      else this.durableWaiters.push(w);
    }
  }

  async scanItems(range: ScanRange): Promise<ItemRecord[]> {
    const db = this.handle;
    const where = ['tbl = ?', 'live = 1'];
    const args: unknown[] = [range.table];
    const lower = maxKey(range.start, range.prefix);
    if (lower !== undefined) {
      where.push('key >= ?');
      args.push(Buffer.from(lower, 'utf8'));
    }
    if (range.after !== undefined) {
      where.push('key > ?');
      args.push(Buffer.from(range.after, 'utf8'));
    }
    if (range.end !== undefined) {
      where.push('key < ?');
      args.push(Buffer.from(range.end, 'utf8'));
    }
    if (range.prefix !== undefined && range.prefix !== '') {
      const upper = prefixUpperBound(Buffer.from(range.prefix, 'utf8'));
      if (upper) {
        where.push('key < ?');
        args.push(upper);
      }
    }
    args.push(range.limit);
    const rows = db
      .prepare(
        `SELECT key, state, live, value, version, origin, hash FROM items WHERE ${where.join(' AND ')} ORDER BY key LIMIT ?`,
      )
      .all(...args) as ItemRow[];
    return this.durableOnly(rows.map((r) => rowToRecord(range.table, r)));
  }

  async scanAll(table: string, after: string | undefined, limit: number): Promise<ItemRecord[]> {
    this.assertOpen();
    const rows = this.stmts.scanAll.all(table, Buffer.from(after ?? '', 'utf8'), limit) as ItemRow[];
    return this.durableOnly(rows.map((r) => rowToRecord(table, r)));
  }

  committedVector(): VersionVector {
    return { ...this.committed };
  }

  vector(): VersionVector {
    return { ...this.vec };
  }

  /**
   * The WAL file size covered by the last successful fdatasync: what survives a power loss (with
   * automatic checkpoints off, see walAutoCheckpointPages). Meaningless with a preallocated WAL.
   */
  syncedWalBytes(): number {
    return this.walSyncedBytes;
  }

  durableVector(): VersionVector {
    return { ...this.durable };
  }

  async sync(): Promise<VersionVector> {
    this.assertOpen();
    if (this.failure) throw this.failure;
    // everything committed, including a group commit whose own fdatasync is still in flight (it is
    // in `committed`, not yet in `vec`): a switchover's fence reads its cut here, and a write
    // numbered before the fence but left out of the cut would be acknowledged, then voided
    const target = { ...this.committed };
    while (!dominates(this.durable, target)) {
      if (this.syncing) {
        await this.syncing;
        continue;
      }
      // everything committed before the fdatasync starts is in the WAL file already
      const covered = { ...this.committed };
      this.syncing = this.syncWal()
        .then(() => this.markDurable(covered))
        .finally(() => {
          this.syncing = undefined;
        });
      await this.syncing;
    }
    return { ...this.durable };
  }

  gcFloor(): VersionVector {
    return { ...this.floor };
  }

  membership(): Membership {
    return { epoch: this.members.epoch, members: this.members.members.map((m) => ({ ...m })) };
  }

  async setMembership(next: Membership): Promise<boolean> {
    const db = this.handle;
    assert(Number.isSafeInteger(next.epoch) && next.epoch >= 0, `membership epoch must be a non-negative integer, got ${next.epoch}`);
    assert(new Set(next.members.map((m) => m.site)).size === next.members.length, 'a site appears once in a membership');
    for (const m of next.members) assert(memberStates.includes(m.state), `unknown member state ${String(m.state)}`);
    if (next.epoch < this.members.epoch) return false;
    if (next.epoch === this.members.epoch) return true;
    const members = [...next.members].sort((a, b) => (a.site < b.site ? -1 : a.site > b.site ? 1 : 0)).map((m) => ({ site: m.site, state: m.state }));
    db.transaction(() => {
      db.prepare('DELETE FROM members').run();
      const put = db.prepare('INSERT INTO members (site, state) VALUES (?, ?)');
      for (const m of members) put.run(m.site, m.state);
      this.stmts.putMeta.run('members_epoch', String(next.epoch));
    }).immediate();
    await this.syncWal();
    this.members = { epoch: next.epoch, members };
    return true;
  }

  logFloor(): VersionVector {
    return { ...this.compacted };
  }

  async purgeTombstones(floor: VersionVector, limit: number): Promise<number> {
    const db = this.handle;
    let purged = 0;
    let after: { tbl: string; key: Buffer } = { tbl: '', key: Buffer.alloc(0) };
    const victims: { tbl: string; key: Buffer }[] = [];
    for (let scanned = 0; scanned < limit * 10 && victims.length < limit; ) {
      const rows = this.stmts.tombstones.all(after.tbl, after.tbl, after.key, 500) as { tbl: string; key: Buffer; state: Buffer }[];
      if (rows.length === 0) break;
      for (const row of rows) {
        const state = packr.unpack(row.state) as ItemState;
        if (dominates(floor, state.c)) victims.push({ tbl: row.tbl, key: row.key });
      }
      scanned += rows.length;
      const last = rows[rows.length - 1]!;
      after = { tbl: last.tbl, key: last.key };
    }
    const nextFloor = joinVectors(this.floor, floor);
    db.transaction(() => {
      for (const v of victims.slice(0, limit)) purged += this.stmts.deleteItem.run(v.tbl, v.key).changes;
      this.stmts.putMeta.run('floor', JSON.stringify(canonicalVector(nextFloor)));
    }).immediate();
    this.floor = nextFloor;
    return purged;
  }

  async compactLog(upTo: VersionVector): Promise<number> {
    const db = this.handle;
    let removed = 0;
    const next = { ...this.compacted };
    db.transaction(() => {
      for (const [origin, seq] of Object.entries(upTo)) {
        if (seq <= (next[origin] ?? 0)) continue;
        assert(seq <= (this.vec[origin] ?? 0), `cannot compact ${origin} past what this site has`);
        const n = this.originNumbers.get(origin);
        if (n !== undefined) removed += this.stmts.compactLog.run(logId(n, 0), logId(n, seq)).changes;
        next[origin] = seq;
      }
      this.stmts.putMeta.run('compacted', JSON.stringify(canonicalVector(next)));
    }).immediate();
    this.compacted = next;
    return removed;
  }

  async trimConflicts(olderThanMs: number): Promise<number> {
    return this.handle.transaction(() => this.stmts.trimConflictsByAge.run(olderThanMs).changes).immediate();
  }

  /**
   * A consistent snapshot (invariant 4): items, tombstones, contexts and the vector read in one
   * read transaction on a connection of its own, so writers go on meanwhile. Yields pages.
   */
  async *snapshot(pageItems: number): AsyncIterable<{ vector?: VersionVector; gcFloor?: VersionVector; items: { table: string; key: string; state: ItemState }[] }> {
    this.assertOpen();
    if (this.options.path === ':memory:') throw new Error('snapshots need a store on disk');
    const reader = new Database(this.options.path, { readonly: true });
    try {
      reader.exec('BEGIN');
      const vector: VersionVector = {};
      for (const r of reader.prepare('SELECT origin, seq FROM vector').all() as { origin: string; seq: number }[]) vector[r.origin] = r.seq;
      // the read may include this site's own writes whose sync is still in flight: nothing of it
      // leaves before they are durable (and if their sync fails, nothing of it leaves at all)
      await this.waitDurable(vector[this.identity!.origin] ?? 0);
      // the floor in the same read: it covers exactly the tombstones this read no longer holds
      const floorRow = reader.prepare("SELECT v FROM meta WHERE k = 'floor'").get() as { v: string } | undefined;
      const gcFloor = JSON.parse(floorRow?.v ?? '{}') as VersionVector;
      yield { vector, gcFloor, items: [] };
      let page: { table: string; key: string; state: ItemState }[] = [];
      for (const row of reader.prepare('SELECT tbl, key, state FROM items ORDER BY tbl, key').iterate() as Iterable<{ tbl: string; key: Buffer; state: Buffer }>) {
        page.push({ table: row.tbl, key: row.key.toString('utf8'), state: packr.unpack(row.state) as ItemState });
        if (page.length >= pageItems) {
          yield { items: page };
          page = [];
        }
      }
      if (page.length > 0) yield { items: page };
      reader.exec('COMMIT');
    } finally {
      reader.close();
    }
  }

  async commit(batch: CommitRequest[], options: { sync?: boolean } = {}): Promise<CommitResult[]> {
    this.assertOpen();
    if (this.failure) throw this.failure;
    const sync = options.sync ?? true;
    assert(sync || batch.every((r) => r.kind !== 'local'), 'a batch with local writes is committed with sync');
    const identity = this.identity!;
    const results: CommitResult[] = [];
    let hlcHigh = '';
    const nextVec = { ...this.vec };
    this.pendingHashes = [];
    this.pendingOrigins = [];
    let nextCompacted: VersionVector | undefined;
    let nextFloor: VersionVector | undefined;
    const ownRecords: LogRecord[] = [];
    const run = () => {
      for (const req of batch) {
        const current = (refs: { table: string; key: string }[]) => refs.map((r) => this.readCurrent(r.table, r.key));
        if (req.kind === 'local') {
          // the key's check and its record are in this transaction: two writes under one key never both commit
          if (req.idempotency !== undefined) {
            const found = this.stmts.getIdempotency.get(req.idempotency.key) as IdempotencyRow | undefined;
            if (found !== undefined) {
              results.push({ kind: 'local', ok: false, replayed: idempotencyFromRow(found) });
              continue;
            }
          }
          const seq = (nextVec[identity.origin] ?? 0) + 1;
          let built: ReturnType<typeof req.build>;
          const before = current(req.refs);
          try {
            built = req.build(before, seq);
          } catch (error) {
            results.push({ kind: 'local', ok: false, error });
            continue;
          }
          assert(built.records.length > 0, 'a local write changes at least one item');
          // the entry is encoded first, with the states: the items table keeps the same bytes
          const { body, states } = encodeLogEntry(
            {
              origin: identity.origin,
              seq,
              hlc: built.hlc,
              ...(built.clock !== undefined ? { clock: built.clock } : {}),
              ...(req.awaitsAck ? { awaitsAck: true as const } : {}),
              ...(built.epoch !== undefined ? { epoch: built.epoch } : {}),
              ...(built.voids !== undefined ? { voids: built.voids } : {}),
              ...(req.idempotency !== undefined ? { idempotency: req.idempotency } : {}),
            },
            built.records.map((r) => ({ table: r.table, key: r.key, state: r.state })),
          );
          this.writeRecords(built.records, before, new Map(built.records.map((r, i) => [r.state, states[i]!])));
          assert(seq <= logSeqMax, `origin ${identity.origin} has used every sequence number`);
          this.stmts.putLog.run(logId(ownOriginNumber, seq), built.hlc, body);
          if (req.idempotency !== undefined)
            this.indexIdempotency(req.idempotency, identity.origin, seq, built.hlc, built.records.map((r) => ({ table: r.table, key: r.key, version: r.version, origin: r.origin })));
          if (built.voidBacklog !== undefined) this.keepVoids(built.voidBacklog);
          nextVec[identity.origin] = seq;
          const clock = built.clock ?? built.hlc;
          if (clock > hlcHigh) hlcHigh = clock;
          if (this.ownEntryListeners.size > 0) ownRecords.push({ origin: identity.origin, seq, hlc: built.hlc, body, clock });
          results.push({ kind: 'local', ok: true, seq, records: built.records });
        } else if (req.kind === 'advance-vector') {
          for (const [o, seq] of Object.entries(req.vector)) {
            assert(o !== identity.origin || seq <= (nextVec[o] ?? 0), 'a snapshot never advances this site\'s own origin');
            if (seq > (nextVec[o] ?? 0)) nextVec[o] = seq;
          }
          // entries below a snapshot's vector were never logged here: peers behind it need a snapshot too
          const others = Object.fromEntries(Object.entries(req.vector).filter(([o]) => o !== identity.origin));
          nextCompacted = joinVectors(nextCompacted ?? this.compacted, others);
          this.stmts.putMeta.run('compacted', JSON.stringify(canonicalVector(nextCompacted)));
          if (req.gcFloor !== undefined && !dominates(nextFloor ?? this.floor, req.gcFloor)) {
            nextFloor = joinVectors(nextFloor ?? this.floor, req.gcFloor);
            this.stmts.putMeta.run('floor', JSON.stringify(canonicalVector(nextFloor)));
          }
          results.push({ kind: 'advance-vector' });
        } else if (req.kind === 'repair') {
          // a merge that throws fails its own request only, before anything of it is written
          let before: (CurrentItem | undefined)[];
          let merged: ReturnType<typeof req.merge>;
          try {
            before = current(req.refs);
            merged = req.merge(before);
          } catch (error) {
            results.push({ kind: 'repair', written: 0, failed: (error as Error).message ?? String(error) });
            continue;
          }
          this.writeRecords(merged.records, before, undefined);
          this.writeConflicts(merged.conflicts);
          if (merged.voidBacklog !== undefined) this.keepVoids(merged.voidBacklog);
          results.push({ kind: 'repair', written: merged.records.length });
        } else {
          const { entry } = req;
          const have = nextVec[entry.origin] ?? 0;
          if (entry.seq <= have) {
            results.push({ kind: 'remote', applied: false, reason: 'duplicate' });
            continue;
          }
          if (entry.seq !== have + 1) {
            results.push({ kind: 'remote', applied: false, reason: 'gap' });
            continue;
          }
          // A merge that throws (a malformed entry, a bug) fails this entry alone, before anything
          // of it is written: the rest of the group commits. The entry is still logged and the
          // vector moves past it, so its origin's later entries are not held up behind it forever
          // and peers downstream still get it (invariant 1); its items stay as they were here, and
          // it is quarantined with the reason for an operator.
          let quarantined: string | undefined;
          let before: (CurrentItem | undefined)[] = [];
          let merged: ReturnType<typeof req.merge> | undefined;
          try {
            before = current(entry.items);
            merged = req.merge(before);
          } catch (error) {
            quarantined = (error as Error).message ?? String(error);
            this.stmts.putQuarantine.run(entry.origin, entry.seq, quarantined.slice(0, 1000), Math.floor(this.options.wallMs()));
          }
          if (merged !== undefined) {
            // a record whose state is the entry's own (the usual case) keeps the bytes received
            let received: Map<ItemState, Uint8Array> | undefined;
            if (req.raw !== undefined) {
              const bytes = logEntryStateBytes(req.raw);
              assert(bytes.length === entry.items.length, 'one encoded state per item of the entry');
              received = new Map(entry.items.map((it, i) => [it.state, bytes[i]!]));
            }
            this.writeRecords(merged.records, before, received);
            this.writeConflicts(merged.conflicts);
            if (merged.voidBacklog !== undefined) this.keepVoids(merged.voidBacklog);
          }
          // Invariant 1: every received entry is logged (and so relayed), losers included.
          assert(entry.seq <= logSeqMax, `origin ${entry.origin} has used every sequence number`);
          this.stmts.putLog.run(logId(this.logOriginNumber(entry.origin), entry.seq), entry.hlc, req.raw ?? packr.pack(entry));
          // indexed whether or not its items could be applied here: the write happened at its origin
          const idem = entry.idempotency;
          if (idem !== undefined && merged?.voided !== true && typeof idem.key === 'string' && typeof idem.fingerprint === 'string')
            this.indexIdempotency(idem, entry.origin, entry.seq, entry.hlc, entry.items.map((it) => ({ table: it.table, key: it.key, version: versionOf(it.state), origin: it.state.w.s })));
          nextVec[entry.origin] = entry.seq;
          if (req.clock !== undefined && req.clock > hlcHigh) hlcHigh = req.clock;
          results.push(quarantined === undefined ? { kind: 'remote', applied: true } : { kind: 'remote', applied: true, quarantined });
        }
      }
      for (const [o, s] of Object.entries(nextVec)) if (this.vec[o] !== s) this.stmts.putVector.run(o, s);
      if (hlcHigh !== '') this.stmts.putHlc.run(hlcHigh, hlcHigh);
    };
    let committed = false;
    try {
      this.inTransaction.immediate(run);
      committed = true;
    } catch (error) {
      // SQLite rolled the transaction back: nothing of the group was applied, and the store goes on
      if ((error as { code?: unknown }).code === 'SQLITE_FULL')
        throw RequestError.unavailable(
          'store-full',
          `site ${this.options.siteId} has no room left for this write (${(error as Error).message}); it was not applied: retry at another site, or here once space is freed`,
        );
      throw error;
    } finally {
      const changes = this.pendingHashes;
      const origins = this.pendingOrigins;
      this.pendingHashes = [];
      this.pendingOrigins = [];
      // a transaction that threw was rolled back: its digest changes and origin numbers are dropped
      if (committed) {
        for (const c of changes) xorInto(this.bucketsOf(c.table)[c.bucket]!, c.hash);
        this.committed = nextVec;
        if (hlcHigh > this.committedHlc) this.committedHlc = hlcHigh;
        for (const [origin, n] of origins) this.originNumbers.set(origin, n);
      }
    }
    if (sync) {
      try {
        await this.syncWal();
      } catch (error) {
        for (const wake of this.vecWaiters.splice(0)) wake();
        throw error;
      }
      this.markDurable(nextVec);
      if (ownRecords.length > 0) for (const listener of this.ownEntryListeners) listener(ownRecords);
    }
    this.vec = nextVec;
    for (const wake of this.vecWaiters.splice(0)) wake();
    if (nextCompacted) this.compacted = nextCompacted;
    if (nextFloor) this.floor = nextFloor;
    if (hlcHigh > identity.hlcHighWater) identity.hlcHighWater = hlcHigh;
    return results;
  }

  /** An item as a write in the transaction in progress reads it (no value: see CurrentItem); notes its row id. */
  private readCurrent(table: string, key: string): CurrentItem | undefined {
    const row = this.stmts.readCurrent.get(table, Buffer.from(key, 'utf8')) as (Omit<ItemRow, 'key' | 'value'> & { id: number | bigint }) | undefined;
    if (row === undefined) return undefined;
    const item: CurrentItem = { table, key, state: packr.unpack(row.state) as ItemState, live: row.live === 1, version: row.version, origin: row.origin, hash: row.hash };
    this.readRowIds.set(item, row.id);
    return item;
  }

  /** The number of an origin in the log's row ids; a new origin is numbered in the transaction in progress. */
  private logOriginNumber(origin: string): number {
    const known = this.originNumbers.get(origin) ?? this.pendingOrigins.find(([o]) => o === origin)?.[1];
    if (known !== undefined) return known;
    const next = this.nextPeerOriginNumber();
    this.stmts.putOrigin.run(next, origin);
    this.pendingOrigins.push([origin, next]);
    return next;
  }

  /** The lowest peer origin number above every one in use (the transaction in progress's included). */
  private nextPeerOriginNumber(): number {
    let next = 1;
    for (const n of [...this.originNumbers.values(), ...this.pendingOrigins.map(([, m]) => m)]) if (n !== ownOriginNumber && n >= next) next = n + 1;
    assert(next < ownOriginNumber, `the log numbers at most ${ownOriginNumber - 1} peer origins`);
    return next;
  }

  /**
   * Indexes an Idempotency-Key with the write (own or a peer's) that used it, in the transaction in
   * progress. The answer per item is what the write's origin answered: the version and the writing
   * site of the state the entry holds (buildRecord derives them the same way).
   */
  private indexIdempotency(idem: EntryIdempotency, origin: string, seq: number, hlc: string, items: IdempotencyRecord['items']): void {
    this.stmts.putIdempotency.run(idem.key, idem.fingerprint, origin, seq, hlc, JSON.stringify(items), Math.floor(this.options.wallMs()));
  }

  async idempotencyRecord(key: string): Promise<IdempotencyRecord | undefined> {
    this.assertOpen();
    const row = this.stmts.getIdempotency.get(key) as IdempotencyRow | undefined;
    if (row === undefined) return undefined;
    // like any read: not before this site's own write that it names is durable
    if (row.origin === this.identity!.origin) await this.waitDurable(row.seq);
    return idempotencyFromRow(row);
  }

  async idempotencyRecords(afterKey: string | undefined, limit: number): Promise<IdempotencyRecord[]> {
    this.assertOpen();
    const rows = this.stmts.pageIdempotency.all(afterKey ?? '', limit) as IdempotencyRow[];
    // like any read: not before this site's own writes they name are durable
    const own = this.identity!.origin;
    await this.waitDurable(rows.reduce((max, r) => (r.origin === own && r.seq > max ? r.seq : max), 0));
    return rows.map(idempotencyFromRow);
  }

  async putIdempotencyRecords(records: IdempotencyRecord[]): Promise<void> {
    if (this.failure) throw this.failure;
    this.handle.transaction(() => {
      for (const r of records) this.stmts.putIdempotency.run(r.key, r.fingerprint, r.origin, r.seq, r.hlc, JSON.stringify(r.items), Math.floor(r.atMs));
    }).immediate();
  }

  /** Void bookkeeping in the transaction in progress (VoidBookkeeping). */
  private keepVoids(book: VoidBookkeeping): void {
    for (const d of book.voidedDots ?? []) this.stmts.dropIdempotencyOf.run(d.origin, d.seq);
    for (const r of book.resolve ?? []) this.stmts.dropVoid.run(r.table, Buffer.from(r.key, 'utf8'), r.dot);
    for (const v of book.add ?? []) this.stmts.putVoid.run(v.table, Buffer.from(v.key, 'utf8'), v.dot, v.origin, v.seq, JSON.stringify(v.value), packr.pack(v.state));
  }

  async voidBacklog(limit: number): Promise<VoidBacklogItem[]> {
    this.assertOpen();
    const rows = this.stmts.readVoids.all(limit) as { tbl: string; key: Buffer; dot: string; origin: string; seq: number; value: string; state: Buffer }[];
    return rows.map((r) => ({ table: r.tbl, key: r.key.toString('utf8'), dot: r.dot, origin: r.origin, seq: r.seq, value: JSON.parse(r.value) as VoidBacklogItem['value'], state: packr.unpack(r.state) as ItemState }));
  }

  async trimIdempotencyKeys(olderThanMs: number, limit: number): Promise<number> {
    return this.handle.transaction(() => this.stmts.trimIdempotency.run(olderThanMs, limit).changes).immediate();
  }

  private writeConflicts(conflicts: ConflictRecord[]): void {
    for (const c of conflicts) this.stmts.putConflict.run(c.table, Buffer.from(c.key, 'utf8'), c.loserDot, JSON.stringify(c), c.atMs);
    if (conflicts.length > 0) this.stmts.trimConflicts.run(this.options.conflictEntriesMax);
  }

  /**
   * Writes records; `before` holds what these items were when this request read them. A state
   * found in `encoded` (the request's log entry holds it) is stored as those bytes.
   */
  private writeRecords(records: ItemRecord[], before: (CurrentItem | undefined)[], encoded?: Map<ItemState, Uint8Array>): void {
    const previous = new Map(before.filter((b) => b !== undefined).map((b) => [`${b!.table}\u0000${b!.key}`, b!]));
    for (const r of records) {
      const key = Buffer.from(r.key, 'utf8');
      const bucket = keyBucket(key);
      const old = previous.get(`${r.table}\u0000${r.key}`);
      if (old?.live) this.pendingHashes.push({ table: r.table, bucket, hash: old.hash });
      if (r.live) this.pendingHashes.push({ table: r.table, bucket, hash: r.hash });
      const bytes = encoded?.get(r.state);
      const state = bytes === undefined ? packr.pack(r.state) : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      const value = r.live ? JSON.stringify(r.value) : null;
      // an item read in this transaction has a row whose id is known; any other goes by its key
      const rowId = old === undefined ? undefined : this.readRowIds.get(old);
      if (rowId !== undefined) this.stmts.updateItem.run(state, r.live ? 1 : 0, value, r.version, r.origin, r.hash, rowId);
      else this.stmts.putItem.run(r.table, key, state, r.live ? 1 : 0, value, r.version, r.origin, r.hash, bucket);
    }
  }

  async readLog(vector: VersionVector, entriesMax: number, bytesMax: number, upTo?: VersionVector): Promise<LogEntry[]> {
    return (await this.readLogRaw(vector, entriesMax, bytesMax, upTo)).map((r) => decodeLogEntry(r.body));
  }

  async readLogRaw(vector: VersionVector, entriesMax: number, bytesMax: number, upTo?: VersionVector): Promise<LogRecord[]> {
    this.assertOpen();
    const out: LogRecord[] = [];
    let bytes = 0;
    for (const origin of Object.keys(this.vec).sort()) {
      // Own entries are served once durable (this.vec moves after their commit's sync); a peer's
      // entries may be relayed before this site has synced them: they are durable at their origin.
      const last = upTo === undefined ? this.vec[origin]! : Math.min(this.vec[origin]!, upTo[origin] ?? 0);
      const n = this.originNumbers.get(origin);
      if (last <= (vector[origin] ?? 0) || n === undefined) continue;
      const from = vector[origin] ?? 0;
      const rows = this.stmts.readLog.all(logId(n, 0), logId(n, from), logId(n, Math.min(last, from + entriesMax - out.length))) as { seq: number; hlc: string; body: Buffer }[];
      for (const row of rows) {
        if (out.length > 0 && bytes + row.body.byteLength > bytesMax) return out;
        bytes += row.body.byteLength;
        out.push({ origin, seq: row.seq, hlc: row.hlc, body: row.body });
      }
      if (out.length >= entriesMax) break;
    }
    return out;
  }

  async quarantined(limit: number): Promise<QuarantinedEntry[]> {
    this.assertOpen();
    return this.stmts.readQuarantine.all(limit) as QuarantinedEntry[];
  }

  async conflicts(table: string, afterId: number, limit: number): Promise<{ id: number; record: ConflictRecord }[]> {
    this.assertOpen();
    const rows = this.stmts.readConflicts.all(table, afterId, limit) as { id: number; body: string }[];
    return rows.map((r) => ({ id: r.id, record: JSON.parse(r.body) as ConflictRecord }));
  }

  private bucketsOf(table: string): Buffer[] {
    let b = this.buckets.get(table);
    if (!b) {
      b = Array.from({ length: 256 }, () => Buffer.alloc(16));
      this.buckets.set(table, b);
    }
    return b;
  }

  async digests(): Promise<Record<string, string>> {
    this.assertOpen();
    const out: Record<string, string> = {};
    for (const table of [...this.buckets.keys()].sort()) {
      const acc = Buffer.alloc(16);
      for (const b of this.buckets.get(table)!) for (let i = 0; i < 16; i++) acc[i]! ^= b[i]!;
      // a table with no live item has no digest, whether or not tombstones of it exist here
      if (acc.some((x) => x !== 0)) out[table] = acc.toString('hex');
    }
    return out;
  }

  async itemsInBuckets(table: string, buckets: number[], after: string | undefined, limit: number): Promise<ItemRecord[]> {
    const db = this.handle;
    const wanted = buckets.filter((b) => Number.isInteger(b) && b >= 0 && b < 256);
    if (wanted.length === 0) return [];
    const rows = db
      .prepare(
        `SELECT key, state, live, value, version, origin, hash FROM items WHERE tbl = ? AND key > ? AND bucket IN (${wanted.map(() => '?').join(',')}) ORDER BY key LIMIT ?`,
      )
      .all(table, Buffer.from(after ?? '', 'utf8'), ...wanted, limit) as ItemRow[];
    return this.durableOnly(rows.map((r) => rowToRecord(table, r)));
  }

  async boundary(): Promise<StoreBoundary> {
    this.assertOpen();
    // Sync until nothing committed is unsynced, then read everything in this same turn. A group
    // commit may land between a sync and the read that follows it: try again (bounded).
    for (let attempt = 0; attempt < 100; attempt++) {
      if (this.failure) throw this.failure;
      if (dominates(this.durable, this.committed) && !dominates(this.vec, this.committed)) {
        // synced, but the commit that wrote it has not finished (its own sync is still to return):
        // the feed (readLog) serves it only then. Woken in the same turn as it finishes.
        await new Promise<void>((resolve) => this.vecWaiters.push(resolve));
        attempt--;
        continue;
      }
      if (dominates(this.durable, this.committed)) {
        const hw = this.identity!.hlcHighWater;
        return {
          vector: canonicalVector(this.committed),
          digests: await this.digests(),
          maxHlc: this.committedHlc > hw ? this.committedHlc : hw,
          gcFloor: canonicalVector(this.floor),
          logFloor: canonicalVector(this.compacted),
        };
      }
      // one fdatasync covers every frame written before it starts: the commits seen now included
      const covered = { ...this.committed };
      await this.syncWal();
      this.markDurable(covered);
    }
    throw RequestError.unavailable('store-busy', `site ${this.options.siteId} could not read a durable boundary: commits kept landing between syncs`);
  }

  onDurableOwnEntries(listener: (records: LogRecord[]) => void): () => void {
    this.ownEntryListeners.add(listener);
    return () => this.ownEntryListeners.delete(listener);
  }

  async snapshotToFile(path: string, options: { itemsPerStep: number; pauseMs: number }): Promise<SnapshotFileInfo> {
    this.assertOpen();
    if (this.options.path === ':memory:') throw new Error('snapshots need a store on disk');
    const info = await copySnapshotFile({ dbPath: this.options.path, outPath: path, schemaSql, ...options });
    try {
      // the copy may hold commits whose sync is still in flight: it is handed out only once they are durable
      for (let attempt = 0; !dominates(this.durable, info.vector); attempt++) {
        assert(attempt < 100, 'a snapshot\'s vector becomes durable');
        const covered = { ...this.committed };
        await this.syncWal();
        this.markDurable(covered);
      }
    } catch (error) {
      rmSync(path, { force: true });
      throw error;
    }
    return info;
  }

  async bucketDigests(table: string): Promise<string[]> {
    this.assertOpen();
    return (this.buckets.get(table) ?? Array.from({ length: 256 }, () => Buffer.alloc(16))).map((b) => b.toString('hex'));
  }
}

/** Room for a full WAL between checkpoints: the pages, their frame headers, and a group commit's overshoot. */
function walBytesFor(db: Database.Database): number {
  const pageSize = Number(db.pragma('page_size', { simple: true }));
  return 32 + (limits.walCheckpointPages + limits.groupCommitWritesMax * 4) * (24 + pageSize);
}

/**
 * Extends the WAL file with zeros to `bytes` and returns a descriptor for the per-commit fdatasync.
 * A WAL that grows needs a journal commit of the file system on every fdatasync; one whose blocks
 * already exist syncs only data (measured here: ~45% less time and system CPU per sync). Safe for
 * SQLite: it reads WAL frames only up to the first whose header does not check out, so zeros after
 * the last frame (or a zero header) read as the end of the log. Done at open, before any write.
 */
function preallocateWal(path: string, bytes: number): number {
  const fd = openSync(path, fsConstants.O_RDWR | fsConstants.O_CREAT, 0o644);
  let size = fstatSync(fd).size;
  if (size < bytes) {
    const zeros = Buffer.alloc(1 << 20);
    while (size < bytes) size += writeSync(fd, zeros, 0, Math.min(zeros.byteLength, bytes - size), size);
  }
  // and whatever the WAL holds from before (a process that died) is on disk from now on
  fdatasyncSync(fd);
  return fd;
}

/**
 * Schema 1 kept items and the log WITHOUT ROWID, keyed by (tbl, key) and (origin, seq). Rewrites
 * both into schema 2's rowid tables in one transaction: a crash midway leaves schema 1 intact.
 */
function migrateFromSchema1(db: Database.Database): void {
  const meta = (k: string) => (db.prepare('SELECT v FROM meta WHERE k = ?').get(k) as { v: string }).v;
  const own = originOf(meta('site'), Number(meta('incarnation')));
  db.transaction(() => {
    db.exec(`
      DROP INDEX IF EXISTS items_tombstones;
      ALTER TABLE items RENAME TO items_v1;
      ALTER TABLE log RENAME TO log_v1;
      ${schemaSql}
      INSERT INTO items (tbl, key, state, live, value, version, origin, hash, bucket)
        SELECT tbl, key, state, live, value, version, origin, hash, bucket FROM items_v1 ORDER BY tbl, key;
    `);
    db.prepare('INSERT INTO origins (id, origin) SELECT row_number() OVER (ORDER BY origin), origin FROM (SELECT DISTINCT origin FROM log_v1 WHERE origin <> ?)').run(own);
    db.prepare('INSERT INTO origins (id, origin) VALUES (?, ?)').run(ownOriginNumber, own);
    db.exec(`
      INSERT INTO log (id, hlc, body) SELECT o.id * ${logSpan} + l.seq, l.hlc, l.body FROM log_v1 l JOIN origins o ON o.origin = l.origin ORDER BY 1;
      DROP TABLE items_v1;
      DROP TABLE log_v1;
    `);
    db.prepare("UPDATE meta SET v = ? WHERE k = 'schema'").run(String(schemaVersion));
  }).immediate();
}

/** Schema 3 adds tables and an index only (schemaSql creates them): the version moves in one transaction. */
function migrateFromSchema2(db: Database.Database): void {
  db.transaction(() => {
    db.exec(schemaSql);
    db.prepare("UPDATE meta SET v = ? WHERE k = 'schema'").run(String(schemaVersion));
  }).immediate();
}

interface IdempotencyRow {
  key: string;
  fingerprint: string;
  origin: string;
  seq: number;
  hlc: string;
  items: string;
  at_ms: number;
}

function idempotencyFromRow(row: IdempotencyRow): IdempotencyRecord {
  return {
    key: row.key,
    fingerprint: row.fingerprint,
    origin: row.origin,
    seq: row.seq,
    hlc: row.hlc,
    items: JSON.parse(row.items) as IdempotencyRecord['items'],
    atMs: row.at_ms,
  };
}

function rowToRecord(table: string, row: ItemRow): ItemRecord {
  return {
    table,
    key: row.key.toString('utf8'),
    state: packr.unpack(row.state) as ItemState,
    live: row.live === 1,
    value: row.value === null ? undefined : (JSON.parse(row.value) as ItemRecord['value']),
    version: row.version,
    origin: row.origin,
    hash: row.hash,
  };
}

/** The anti-entropy bucket of a key: FNV-1a over its bytes, low 8 bits (the same on every site). */
export function keyBucket(key: Buffer): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key[i]!, 0x01000193);
  return (h ^ (h >>> 8) ^ (h >>> 16) ^ (h >>> 24)) & 0xff;
}

/** Value of each hex digit's char code (lower and upper case), -1 elsewhere. */
const hexDigit = new Int8Array(128).fill(-1);
for (let i = 0; i < 16; i++) {
  hexDigit['0123456789abcdef'.charCodeAt(i)] = i;
  hexDigit['0123456789ABCDEF'.charCodeAt(i)] = i;
}

/**
 * XORs the bytes a hex string spells into `acc`, as Buffer.from(hex, 'hex') would read them (it
 * stops at the first pair that is not hex), without allocating: opening a store runs it per live
 * item (a million of them in ~1 s, against 3 s through Buffer.from).
 */
function xorInto(acc: Buffer, hex: string): void {
  const n = Math.min(acc.length, hex.length >> 1);
  for (let i = 0; i < n; i++) {
    const hi = hexDigit[hex.charCodeAt(2 * i)] ?? -1;
    const lo = hexDigit[hex.charCodeAt(2 * i + 1)] ?? -1;
    if (hi < 0 || lo < 0) return;
    acc[i]! ^= (hi << 4) | lo;
  }
}

function maxKey(a: string | undefined, b: string | undefined): string | undefined {
  if (a === undefined) return b;
  if (b === undefined) return a;
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8')) >= 0 ? a : b;
}

/** The smallest byte string greater than every string with this prefix, or undefined if none. */
function prefixUpperBound(prefix: Buffer): Buffer | undefined {
  const b = Buffer.from(prefix);
  for (let i = b.length - 1; i >= 0; i--) {
    if (b[i]! < 0xff) {
      b[i]! += 1;
      return b.subarray(0, i + 1);
    }
  }
  return undefined;
}
