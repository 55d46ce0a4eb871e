// The site-local durable store behind one interface: items with their replicated state and the
// materialized value a reader sees, the change log, the version vector, the conflict feed and site
// metadata. The store is policy-free: the layers above build states; the store keeps them
// atomically and durably. SQLite is the embedded backend; the interface is async and transaction-
// shaped so a PostgreSQL backend fits (see conformance.ts, run against every backend).
import type { JsonValue } from '../core/canonical-json.js';
import type { ItemState } from '../core/item.js';
import type { Origin, VersionVector } from '../core/vector.js';
import type { Membership } from '../core/membership.js';

export type JsonObject = { [k: string]: JsonValue };

export interface ItemRef {
  table: string;
  key: string;
}

export interface ItemRecord extends ItemRef {
  state: ItemState;
  live: boolean;
  /** the materialized value; undefined when deleted (a tombstone) */
  value: JsonObject | undefined;
  version: string;
  /** site id of the latest write */
  origin: string;
  /** hash of the canonical content (key, value, context) for digests; '' when deleted */
  hash: string;
}

/**
 * An item as a write reads it before changing it: the record without its materialized value, which
 * no write needs (the state holds it), and which would cost a read and a parse per write.
 */
export type CurrentItem = Omit<ItemRecord, 'value'>;

/** One replicated change: a write at its origin, with the full state of every item it touched. */
export interface LogEntry {
  origin: Origin;
  seq: number;
  /** hlc of the write, 16 hex digits */
  hlc: string;
  /**
   * The origin's commit clock (16 hex digits): the site's clock after the write, monotonic per
   * origin and never pulled ahead by an item's timestamp (hlc may be). Point-in-time cuts use it.
   * Absent in entries written before it existed (commitClockOf reads those as their hlc).
   */
  clock?: string;
  items: { table: string; key: string; state: ItemState }[];
  /** the origin waits for peers' acks of this entry (quorum or all durability): ack it at once */
  awaitsAck?: true;
  /**
   * The topology epoch of the lease the entry was admitted under, when it writes owned items
   * (`global` or `partitioned` tables): whether those items count is decided by it (topology/record.ts,
   * entryCounts). Absent: no owned item, or written before topology epochs existed.
   */
  epoch?: number;
  /**
   * A compensating write (topology/): the void owned writes it undoes, with the values they had
   * where they were applied, so every site applying it records them in its conflict feed.
   */
  voids?: VoidedWrite[];
  /**
   * The client's Idempotency-Key for this write and the fingerprint of the request it named: every
   * site that holds the entry indexes the key (Store.idempotencyRecord), so a repeat anywhere, and
   * after a failover, finds the first answer. Absent on writes sent without the header.
   */
  idempotency?: EntryIdempotency;
}

export interface VoidedWrite {
  table: string;
  key: string;
  dot: string;
  /** the value the void write left (null: it deleted) */
  value: JsonValue | null;
}

/**
 * A void owned item (ARCHITECTURE.md, "Voiding is per item, by epoch") a site keeps until its
 * unit's owner commits the compensating write that names it: the void write's dot, and the item's
 * state as the void write left it (a compensation reads its counters).
 */
export interface VoidBacklogItem extends VoidedWrite {
  origin: string;
  seq: number;
  state: ItemState;
}

/**
 * Void bookkeeping committed in the transaction of the request that carries it, so that a crash
 * cannot separate finding a void item from keeping it, nor undoing it from forgetting it.
 */
export interface VoidBookkeeping {
  /** void items found (an item kept already is kept once) */
  add?: VoidBacklogItem[];
  /** void items compensated (by this request, or by the compensating entry it applies): forgotten */
  resolve?: { table: string; key: string; dot: string }[];
  /** writes found void: an Idempotency-Key indexed with one stops answering, so a repeat is written anew */
  voidedDots?: { origin: string; seq: number }[];
}

export interface EntryIdempotency {
  key: string;
  fingerprint: string;
}

/**
 * What a site knows of an Idempotency-Key: the write that first used it (its dot and hlc), the
 * request's fingerprint, and what that write answered for each item (derived from the entry's
 * states, so every site that holds the entry records the same answer).
 */
export interface IdempotencyRecord {
  key: string;
  fingerprint: string;
  origin: string;
  seq: number;
  hlc: string;
  items: { table: string; key: string; version: string; origin: string }[];
  /** wall ms when this site indexed it: the retention counts from here */
  atMs: number;
}

export interface ConflictRecord {
  table: string;
  key: string;
  loserDot: string;
  winner: { version: string; origin: string };
  loser: { value: JsonValue | null; deleted: boolean; version: string; origin: string };
  field: string;
  /** wall ms when recorded */
  atMs: number;
  /**
   * Why the loser lost (absent: `concurrent`): a concurrent write, a write voided by a failover,
   * or a value overwritten by a rewind.
   */
  reason?: ConflictReason;
}

export type ConflictReason = 'concurrent' | 'voided' | 'rewound';

export interface QuarantinedEntry {
  origin: string;
  seq: number;
  reason: string;
  /** wall ms when quarantined */
  atMs: number;
}

/** A local write: reads some items, builds their next records under the seq the store assigns. */
export interface LocalCommit {
  kind: 'local';
  refs: ItemRef[];
  /** the writer will wait for peers' acks (quorum or all durability): flags the log entry */
  awaitsAck?: boolean;
  /**
   * Checked in the commit's transaction, before `build`: if the key is indexed already (by an
   * earlier write here, by one earlier in this group, or by a peer's entry), nothing is built or
   * written and the result carries the record (`replayed`). Otherwise the entry carries it and the
   * key is indexed with the write.
   */
  idempotency?: EntryIdempotency;
  /**
   * Throws a RequestError to reject this write alone (nothing of it is written). `clock` is the
   * site's clock after the write (hex), kept as the floor a restart resumes from; the entry's
   * `hlc` may be ahead of it (a write stamped after a far-ahead item does not drag the clock).
   */
  build(current: (CurrentItem | undefined)[], seq: number): { records: ItemRecord[]; hlc: string; clock?: string; epoch?: number; voids?: VoidedWrite[]; voidBacklog?: VoidBookkeeping };
}

/** A log entry as stored: its MessagePack bytes (log-codec.ts), with the fields a feed needs. */
export interface LogRecord {
  origin: string;
  seq: number;
  hlc: string;
  body: Uint8Array;
  /** the entry's commit clock, when the reader has it at hand (own entries as committed) */
  clock?: string;
}

/**
 * A restore point (ARCHITECTURE.md, "Backups"): what the store durably held at one instant.
 * `digests` hash exactly the items that `vector` covers.
 */
export interface StoreBoundary {
  vector: VersionVector;
  digests: Record<string, string>;
  /** the store's clock high water then (hex): its local commit time */
  maxHlc: string;
  gcFloor: VersionVector;
  logFloor: VersionVector;
}

/** What a snapshot file copied from the store holds (Store.snapshotToFile). */
export interface SnapshotFileInfo {
  vector: VersionVector;
  gcFloor: VersionVector;
  maxHlc: string;
  items: number;
  bytes: number;
}

/** Applying a peer's entry: joins it into the current records. */
export interface RemoteApply {
  kind: 'remote';
  entry: LogEntry;
  /** the entry's bytes as received (they decode to `entry`): logged as they are */
  raw?: Uint8Array;
  /** `voided`: the entry's owned items do not count (topology/): its Idempotency-Key is not indexed, so a repeat is written anew */
  merge(current: (CurrentItem | undefined)[]): { records: ItemRecord[]; conflicts: ConflictRecord[]; voided?: boolean; voidBacklog?: VoidBookkeeping };
  /** the site's clock after observing the entry (hex), kept as the restart floor; the entry's own hlc is not */
  clock?: string;
}

/** Anti-entropy: joins peers' states into items; no log entry, the vector does not move. */
export interface RepairApply {
  kind: 'repair';
  refs: ItemRef[];
  merge(current: (CurrentItem | undefined)[]): { records: ItemRecord[]; conflicts: ConflictRecord[]; voidBacklog?: VoidBookkeeping };
}

/** The end of a snapshot install: the site now has everything the snapshot's vector covers. */
export interface AdvanceVector {
  kind: 'advance-vector';
  vector: VersionVector;
  /** the snapshot's GC floor: what the tombstones it no longer holds had seen (joined into ours) */
  gcFloor?: VersionVector;
}

export type CommitRequest = LocalCommit | RemoteApply | RepairApply | AdvanceVector;

export type CommitResult =
  | { kind: 'local'; ok: true; seq: number; records: ItemRecord[] }
  | { kind: 'local'; ok: false; error: unknown; replayed?: undefined }
  /** the request's Idempotency-Key was indexed already: nothing was written (LocalCommit.idempotency) */
  | { kind: 'local'; ok: false; error?: undefined; replayed: IdempotencyRecord }
  /**
   * `quarantined`: the entry's merge threw; it was logged (and so relayed) and the vector moved
   * past it, but its items were not changed here: the reason is kept (Store.quarantined()).
   */
  | { kind: 'remote'; applied: true; quarantined?: string }
  /** already covered by the vector (a duplicate delivery) */
  | { kind: 'remote'; applied: false; reason: 'duplicate' | 'gap' }
  /** `failed`: the merge threw; nothing of this request was written */
  | { kind: 'repair'; written: number; failed?: string }
  | { kind: 'advance-vector' };

export interface ScanRange {
  table: string;
  /** inclusive, UTF-8 */
  start?: string;
  /** exclusive, UTF-8 */
  end?: string;
  prefix?: string;
  /** resume strictly after this key */
  after?: string;
  limit: number;
}

export interface StoreIdentity {
  siteId: string;
  incarnation: number;
  origin: Origin;
  /** highest hlc ever issued or applied here (hex), so the clock stays monotonic across restarts */
  hlcHighWater: string;
  /** true when this store was created now (no earlier data) */
  created: boolean;
}

export interface Store {
  readonly backend: string;
  open(): Promise<StoreIdentity>;
  /**
   * Gives this store a new origin (incarnation) in one durable transaction: the old origin's
   * entries stay, numbered as a peer's, and its vector entry stays; writes from now on are
   * numbered from 1 under the new origin. For a store that may have been rolled back (a restored
   * disk) or whose peers could not tell: a site must never issue a dot twice. The new incarnation
   * is above `incarnationAtLeast` (the highest one of this site that peers have seen) and above
   * the old one.
   */
  takeNewIncarnation(incarnationAtLeast?: number): Promise<StoreIdentity>;
  close(): Promise<void>;
  getItem(table: string, key: string): Promise<ItemRecord | undefined>;
  /** Live items in UTF-8 byte order of keys. */
  scanItems(range: ScanRange): Promise<ItemRecord[]>;
  /** All items of a table, tombstones included, in key order (for snapshots and repair). */
  scanAll(table: string, after: string | undefined, limit: number): Promise<ItemRecord[]>;
  /** Current version vector (what this site has applied with no gap). */
  vector(): VersionVector;
  /**
   * The vector of what the items and digests hold right now: vector() plus this site's own writes
   * committed and still syncing. Read in the same turn as digests() or bucketDigests() (both
   * answer from memory), it says exactly which entries those digests cover.
   */
  committedVector(): VersionVector;
  /**
   * The part of vector() that is on disk here: after a crash the store holds at least this. Own
   * writes are durable when their commit resolves; peers' entries applied by an unsynced commit
   * become durable at the next sync (or commit with sync).
   */
  durableVector(): VersionVector;
  /** Makes everything committed so far durable; resolves with the durable vector. */
  sync(): Promise<VersionVector>;
  /** What purged tombstones had seen: the context of a write to a key with no item. */
  gcFloor(): VersionVector;
  /** The membership as of the latest topology epoch stored here (epoch -1 and none before any). */
  membership(): Membership;
  /**
   * Stores a membership of a newer epoch (durably). An older epoch is refused (returns false); the
   * same epoch again is a no-op.
   */
  setMembership(next: Membership): Promise<boolean>;
  /** Up to where the log has been compacted per origin: a peer below it needs a snapshot. */
  logFloor(): VersionVector;
  /** Removes tombstones whose context the floor covers (causally stable); raises the GC floor. */
  purgeTombstones(floor: VersionVector, limit: number): Promise<number>;
  /** Removes log entries every member has (seq <= upTo[origin]). */
  compactLog(upTo: VersionVector): Promise<number>;
  /** Drops conflict feed entries recorded before `olderThanMs` (wall ms). */
  trimConflicts(olderThanMs: number): Promise<number>;
  /** What this site knows of an Idempotency-Key (indexed with a local write or a peer's entry). */
  idempotencyRecord(key: string): Promise<IdempotencyRecord | undefined>;
  /** Idempotency-Keys in key order after `afterKey`: what a snapshot carries to a site it bootstraps. */
  idempotencyRecords(afterKey: string | undefined, limit: number): Promise<IdempotencyRecord[]>;
  /**
   * Adds records a peer's snapshot carried, as received (the earlier of two records under one key
   * is kept). Durable with the next commit that syncs: the snapshot's vector is taken after them.
   */
  putIdempotencyRecords(records: IdempotencyRecord[]): Promise<void>;
  /**
   * The void owned items this site keeps until their owner compensates them (VoidBookkeeping), in
   * the order they were found; at most `limit`.
   */
  voidBacklog(limit: number): Promise<VoidBacklogItem[]>;
  /** Drops at most `limit` Idempotency-Keys indexed before `olderThanMs` (wall ms), oldest first. */
  trimIdempotencyKeys(olderThanMs: number, limit: number): Promise<number>;
  /** One consistent read of the vector (first page) and every item, tombstones included. */
  snapshot(pageItems: number): AsyncIterable<{ vector?: VersionVector; gcFloor?: VersionVector; items: { table: string; key: string; state: ItemState }[] }>;
  /**
   * Commits requests in one durable transaction (group commit), in order. A local request that
   * throws is rejected alone; everything else in the batch commits. Resolves after fsync, unless
   * `sync` is false (allowed only for a batch without local writes: a peer's entries are durable
   * at their origin, so this site may make them visible first and durable with its next sync).
   */
  commit(batch: CommitRequest[], options?: { sync?: boolean }): Promise<CommitResult[]>;
  /**
   * Entries not covered by `vector`, each origin in seq order, bounded by count and bytes; with
   * `upTo`, only origins it names and no further than it says (a feed holding back relays).
   */
  readLog(vector: VersionVector, entriesMax: number, bytesMax: number, upTo?: VersionVector): Promise<LogEntry[]>;
  /** readLog without decoding: what a feed splices into its frames. */
  readLogRaw(vector: VersionVector, entriesMax: number, bytesMax: number, upTo?: VersionVector): Promise<LogRecord[]>;
  conflicts(table: string, afterId: number, limit: number): Promise<{ id: number; record: ConflictRecord }[]>;
  /** Peers' entries this site logged without applying their items (their merge failed), oldest first. */
  quarantined(limit: number): Promise<QuarantinedEntry[]>;
  /** Per-table digest of live items' canonical content (equal across sites iff contents are); tables with no live item are absent. */
  digests(): Promise<Record<string, string>>;
  /**
   * A restore point read at one instant, durable only: it waits until everything the items (and so
   * the digests) hold is on disk, and reads vector, digests, clock and floors in the same turn.
   */
  boundary(): Promise<StoreBoundary>;
  /**
   * Calls `listener` with this site's own log entries (their stored bytes and commit clocks) once
   * their commit is durable, in seq order: what a continuous backup ships without reading the log
   * back. Returns the function that removes the listener.
   */
  onDurableOwnEntries(listener: (records: LogRecord[]) => void): () => void;
  /**
   * Copies a consistent image of the store (items, tombstones, vector, floors, identity; no log)
   * into a new file at `path`, off the main thread, in one read transaction, throttled to
   * `itemsPerStep` rows every `pauseMs`. Resolves once the copy holds nothing this site has not
   * made durable. The file opens as a store of this backend (a restore's starting point).
   */
  snapshotToFile(path: string, options: { itemsPerStep: number; pauseMs: number }): Promise<SnapshotFileInfo>;
  /** Per-bucket digests of one table (256 buckets by key hash), for anti-entropy. */
  bucketDigests(table: string): Promise<string[]>;
  /** Items (tombstones included) of the given buckets, in key order after `after`. */
  itemsInBuckets(table: string, buckets: number[], after: string | undefined, limit: number): Promise<ItemRecord[]>;
}
