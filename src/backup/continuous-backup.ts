// Continuous backup of one site (ARCHITECTURE.md, "Backups and point-in-time recovery").
//
// Every `segmentIntervalMs` it reads a restore point (Store.boundary(): durable only) and ships a
// log segment: this site's own entries since the last segment up to that point, as the store
// handed them over once durable (Store.onDurableOwnEntries, so nothing is read back), with the
// boundary in its header — an empty segment is the heartbeat of an idle site. Peers' entries are
// archived by their own origins. Snapshots (Store.snapshotToFile: a worker, one read transaction,
// throttled) are taken at the start of each timeline, when the log since the last one exceeds
// `snapshotEntriesMax` entries or (at most once per `snapshotFractionMinMs`) `snapshotFraction` of
// the store, every `snapshotEveryMs`, after a snapshot install or anti-entropy repair (they change
// items without log entries), after a gap, and on request. Objects are encoded on a worker
// (object-format.ts) and are immutable; segments of a timeline are hash-chained. Log compaction keeps own entries the archive lacks
// (compactableUpTo) for at most `maxHoldBytes` / `maxHoldMs`; past that it proceeds, and the next
// segment records the gap and a new base snapshot follows.
import { mkdirSync, rmSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { encode } from '@msgpack/msgpack';
import { hlcFromHex, hlcMs } from '../core/hlc.js';
import { incarnationOf, type VersionVector } from '../core/vector.js';
import type { Env } from '../platform/env.js';
import { Backoff } from '../platform/backoff.js';
import { commitClockOf, decodeLogEntry } from '../store/log-codec.js';
import type { LogRecord, Store } from '../store/types.js';
import { manifestName, objectName, readCatalog, type Timeline } from './catalog.js';
import { newDataKey, type Keyring } from './keyring.js';
import { checksumOf, chunkBytesDefault, encodeHere, type EncodeRequest, type EncodeResult, type ObjectHeader, type ShippedBoundary } from './object-format.js';
import type { BackupTarget } from './targets/target.js';

export interface BackupSettings {
  segmentIntervalMs: number;
  snapshotEveryMs: number;
  snapshotEntriesMax: number;
  snapshotFraction: number;
  /**
   * the fraction rule waits at least this long after the last snapshot: under heavy writes a
   * small store would otherwise be copied every few seconds (`snapshotEntriesMax` still bounds
   * the log a restore replays)
   */
  snapshotFractionMinMs: number;
  retentionMs: number;
  maxHoldBytes: number;
  maxHoldMs: number;
  /** snapshot copy throttle: rows per step, pause between steps */
  snapshotItemsPerStep: number;
  snapshotPauseMs: number;
  /** own entries kept in memory for the next segment before they are read back from the log instead */
  bufferBytesMax: number;
  /** most entry bytes in one segment (a catch-up ships several) */
  segmentBytesMax: number;
  compressionLevel: number;
}

export const defaultBackupSettings: BackupSettings = {
  segmentIntervalMs: 1_000,
  snapshotEveryMs: 3_600_000,
  snapshotEntriesMax: 300_000,
  snapshotFraction: 0.2,
  snapshotFractionMinMs: 60_000,
  retentionMs: 7 * 86_400_000,
  maxHoldBytes: 1 << 30,
  maxHoldMs: 6 * 3_600_000,
  snapshotItemsPerStep: 2_000,
  snapshotPauseMs: 2,
  bufferBytesMax: 64 << 20,
  segmentBytesMax: 32 << 20,
  compressionLevel: 1,
};

export interface BackupMetricsSink {
  /** wall ms of the newest restore point shipped (0: none yet) */
  restorable(atMs: number): void;
  error(kind: 'segment' | 'snapshot' | 'retention' | 'manifest'): void;
  heldBytes(bytes: number): void;
}

export interface ContinuousBackupOptions {
  env: Env;
  store: Store;
  /** the site's current origin (it changes when the site takes a new incarnation) */
  origin: () => string;
  /** false until the site may number writes under its origin: nothing is shipped before */
  ready?: () => boolean;
  target: BackupTarget;
  cluster: string;
  siteId: string;
  stagingDir: string;
  keyring?: Keyring;
  settings: BackupSettings;
  /** encodes on a worker thread; defaults to this thread (tests) */
  encode?: (req: EncodeRequest) => Promise<EncodeResult>;
  metrics?: BackupMetricsSink;
}

interface TimelineState {
  origin: string;
  incarnation: number;
  nextSeg: number;
  nextSnap: number;
  prevSha256: string;
  archivedSeq: number;
  /** the last snapshot's vector and item count, and when it was taken (wall ms) */
  snapshot: { vector: VersionVector; items: number; atMs: number } | undefined;
  objects: Record<string, ObjectHeader>;
}

export interface BackupStatus {
  origin: string | undefined;
  archivedSeq: number;
  segments: number;
  snapshots: number;
  newestRestorableAtMs: number;
  errors: number;
  heldBytes: number;
  lastError?: string;
}

export class ContinuousBackup {
  readonly id = 'backup';
  private readonly log;
  private timeline: TimelineState | undefined;
  /** own entries durable and not yet archived, in seq order (see bufferBytesMax) */
  private buffer: LogRecord[] = [];
  private bufferBytes = 0;
  /** the buffer overflowed: entries are read back from the log until the next segment catches up */
  private bufferLost = false;
  private overflowBytes = 0;
  /** monotonic ms since the oldest own entry not yet archived became durable */
  private unarchivedSinceMs: number | undefined;
  private holdReleased = false;
  private snapshotWanted: string | undefined;
  private snapshotRunning: Promise<void> | undefined;
  private stopped = false;
  private loop: Promise<void> | undefined;
  private wake: (() => void) | undefined;
  private unsubscribe: (() => void) | undefined;
  private readonly backoff: Backoff;
  private errors = 0;
  private lastError: string | undefined;
  private newestRestorableAtMs = 0;
  private manifestDirty = 0;
  private lastRetentionMs = 0;

  constructor(private readonly options: ContinuousBackupOptions) {
    this.log = options.env.log.child({ component: 'backup' });
    this.backoff = new Backoff(options.env.random, 200, 5_000);
  }

  /** Discards local staging, resumes the timeline from the target, and starts shipping. */
  run(): void {
    rmSync(this.options.stagingDir, { recursive: true, force: true });
    mkdirSync(this.options.stagingDir, { recursive: true });
    this.unsubscribe = this.options.store.onDurableOwnEntries((records) => this.take(records));
    this.loop = this.runLoop();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.unsubscribe?.();
    this.wake?.();
    await this.loop;
    // a snapshot in progress is abandoned after a short wait: it is not stored, and its worker
    // ends with the process (a large one would otherwise hold a shutdown for its whole copy)
    if (this.snapshotRunning !== undefined) await Promise.race([this.snapshotRunning, this.options.env.timers.sleep(2_000)]);
  }

  status(): BackupStatus {
    const t = this.timeline;
    return {
      origin: t?.origin,
      archivedSeq: t?.archivedSeq ?? 0,
      segments: t ? t.nextSeg - 1 : 0,
      snapshots: t ? t.nextSnap - 1 : 0,
      newestRestorableAtMs: this.newestRestorableAtMs,
      errors: this.errors,
      heldBytes: this.heldBytes(),
      ...(this.lastError !== undefined ? { lastError: this.lastError } : {}),
    };
  }

  /** Asks for a snapshot at the next round (`why` is logged): an install, a repair, an operator. */
  requestSnapshot(why: string): void {
    this.snapshotWanted ??= why;
    this.wake?.();
  }

  /**
   * A segment and a snapshot now, resolved once both are stored (`tandem backup now`). Rejects
   * with the error if either failed.
   */
  async backupNow(): Promise<BackupStatus> {
    this.requestSnapshot('requested');
    await this.snapshotRunning;
    await this.shipSegment();
    if (this.snapshotWanted !== undefined) await this.startSnapshot(true);
    await this.snapshotRunning;
    await this.shipSegment();
    return this.status();
  }

  /**
   * How far log compaction may go for `origin`: this site's own entries are kept until archived,
   * for at most maxHoldBytes / maxHoldMs; undefined when the archive does not hold it back.
   */
  compactableUpTo(origin: string): number | undefined {
    if (origin !== this.options.origin()) return undefined;
    const s = this.options.settings;
    const heldMs = this.unarchivedSinceMs === undefined ? 0 : this.options.env.clock.monotonicMs() - this.unarchivedSinceMs;
    if (this.heldBytes() > s.maxHoldBytes || heldMs > s.maxHoldMs) {
      if (!this.holdReleased) {
        this.holdReleased = true;
        this.log.error({ heldBytes: this.heldBytes(), heldMs, archivedSeq: this.timeline?.archivedSeq ?? 0 }, 'backup archive is behind past its bound: log compaction proceeds, the archive will record a gap');
      }
      return undefined;
    }
    // before the archive has said how far it got (a target down at start), everything is held
    return this.timeline?.origin === origin ? this.timeline.archivedSeq : 0;
  }

  /** own entry bytes durable and not archived: in the buffer, or counted while it overflowed */
  private heldBytes(): number {
    return this.bufferBytes + this.overflowBytes;
  }

  private take(records: LogRecord[]): void {
    if (this.stopped) return;
    if (this.unarchivedSinceMs === undefined) this.unarchivedSinceMs = this.options.env.clock.monotonicMs();
    if (this.bufferLost) {
      for (const r of records) this.overflowBytes += r.body.byteLength;
      this.options.metrics?.heldBytes(this.heldBytes());
      return;
    }
    for (const r of records) {
      this.buffer.push(r);
      this.bufferBytes += r.body.byteLength;
    }
    if (this.bufferBytes > this.options.settings.bufferBytesMax) {
      // the log still has them (compaction waits for the archive): read back instead of holding memory
      this.overflowBytes = this.bufferBytes;
      this.buffer = [];
      this.bufferBytes = 0;
      this.bufferLost = true;
    }
    this.options.metrics?.heldBytes(this.heldBytes());
  }

  private async runLoop(): Promise<void> {
    while (!this.stopped) {
      let delayMs = this.options.settings.segmentIntervalMs;
      try {
        if (this.options.ready !== undefined && !this.options.ready()) {
          await this.options.env.timers.sleep(50);
          continue;
        }
        await this.shipSegment();
        if (this.shouldSnapshot()) await this.startSnapshot(false);
        await this.retention();
        this.backoff.reset();
      } catch (error) {
        this.errors++;
        this.lastError = (error as Error).message;
        this.options.metrics?.error('segment');
        this.log.warn({ err: this.lastError }, 'backup segment failed; retrying');
        delayMs = Math.max(delayMs, this.backoff.next());
      }
      if (this.stopped) break;
      await new Promise<void>((resolve) => {
        const timer = this.options.env.timers.after(delayMs, resolve);
        this.wake = () => {
          timer.cancel();
          resolve();
        };
      });
      this.wake = undefined;
    }
  }

  /** The timeline of the site's current origin, resumed from the target (its newest objects). */
  private async currentTimeline(): Promise<TimelineState> {
    const origin = this.options.origin();
    if (this.timeline?.origin === origin) return this.timeline;
    const incarnation = incarnationOf(origin);
    const [found] = (await readCatalog(this.options.target, this.options.cluster, this.options.siteId)).filter((t: Timeline) => t.incarnation === incarnation);
    const lastSeg = found?.segs[found.segs.length - 1];
    const lastSnap = found?.snaps[found.snaps.length - 1];
    let prevSha256 = '';
    if (lastSeg !== undefined) {
      prevSha256 = checksumOf(lastSeg.name, await this.options.target.get(lastSeg.name));
    }
    const objects: Record<string, ObjectHeader> = {};
    for (const o of [...(found?.snaps ?? []), ...(found?.segs ?? [])]) objects[o.name] = o.header;
    const state: TimelineState = {
      origin,
      incarnation,
      nextSeg: (lastSeg?.n ?? 0) + 1,
      nextSnap: (lastSnap?.n ?? 0) + 1,
      prevSha256,
      archivedSeq: lastSeg?.header.end?.[origin] ?? 0,
      snapshot: lastSnap?.header.snapshot ? { vector: lastSnap.header.snapshot.vector, items: lastSnap.header.snapshot.items, atMs: lastSnap.header.snapshot.atMs } : undefined,
      objects,
    };
    if (this.timeline !== undefined) this.log.info({ was: this.timeline.origin, now: origin }, 'site took a new incarnation: backing up a new timeline');
    this.timeline = state;
    this.buffer = this.buffer.filter((r) => r.origin === origin && r.seq > state.archivedSeq);
    this.bufferBytes = this.buffer.reduce((n, r) => n + r.body.byteLength, 0);
    if (state.snapshot === undefined) this.snapshotWanted ??= 'first snapshot of this timeline';
    return state;
  }

  private shouldSnapshot(): boolean {
    if (this.snapshotRunning !== undefined) return false;
    if (this.snapshotWanted !== undefined) return true;
    const t = this.timeline;
    if (t?.snapshot === undefined) return true;
    const s = this.options.settings;
    if (this.options.env.clock.wallMs() - t.snapshot.atMs >= s.snapshotEveryMs) {
      this.snapshotWanted = 'snapshotEvery';
      return true;
    }
    let since = 0;
    for (const [o, seq] of Object.entries(this.options.store.vector())) since += Math.max(0, seq - (t.snapshot.vector[o] ?? 0));
    const fractionDue = t.snapshot.items > 0 && since >= s.snapshotFraction * t.snapshot.items && this.options.env.clock.wallMs() - t.snapshot.atMs >= s.snapshotFractionMinMs;
    if (since >= s.snapshotEntriesMax || fractionDue) {
      this.snapshotWanted = `${since} entries since the last snapshot`;
      return true;
    }
    return false;
  }

  /** Starts a snapshot in the background (one at a time); `wait` resolves when it is stored. */
  private async startSnapshot(wait: boolean): Promise<void> {
    if (this.snapshotRunning === undefined) {
      const why = this.snapshotWanted ?? 'requested';
      this.snapshotWanted = undefined;
      this.snapshotRunning = this.takeSnapshot(why)
        .catch((error: unknown) => {
          this.errors++;
          this.lastError = (error as Error).message;
          this.options.metrics?.error('snapshot');
          this.log.warn({ err: this.lastError }, 'backup snapshot failed; retrying at the next round');
          this.snapshotWanted ??= why;
          if (wait) throw error;
        })
        .finally(() => {
          this.snapshotRunning = undefined;
        });
    }
    if (wait) await this.snapshotRunning;
  }

  private async takeSnapshot(why: string): Promise<void> {
    const t = await this.currentTimeline();
    const n = t.nextSnap;
    const plain = join(this.options.stagingDir, `snap-${n}.db`);
    const stored = join(this.options.stagingDir, `snap-${n}.obj`);
    const s = this.options.settings;
    const started = this.options.env.clock.monotonicMs();
    try {
      const info = await this.options.store.snapshotToFile(plain, { itemsPerStep: s.snapshotItemsPerStep, pauseMs: s.snapshotPauseMs });
      const atMs = Math.floor(this.options.env.clock.wallMs());
      const header = this.header('snap', n, t, {
        snapshot: { vector: info.vector, gcFloor: info.gcFloor, maxHlc: info.maxHlc, items: info.items, atMs, backend: this.options.store.backend },
      });
      const name = objectName(this.options.cluster, this.options.siteId, t.incarnation, 'snap', n);
      await this.encodeAndPut(name, header, { inPath: plain }, stored);
      t.nextSnap = n + 1;
      t.snapshot = { vector: info.vector, items: info.items, atMs };
      t.objects[name] = header;
      this.manifestDirty += 100;
      this.log.info({ name, why, items: info.items, ms: Math.round(this.options.env.clock.monotonicMs() - started) }, 'backup snapshot stored');
    } finally {
      await rm(plain, { force: true });
      await rm(stored, { force: true });
    }
  }

  private header(kind: 'snap' | 'seg', n: number, t: TimelineState, extra: Partial<ObjectHeader>): ObjectHeader {
    return { format: 1, kind, cluster: this.options.cluster, site: this.options.siteId, incarnation: t.incarnation, n, compression: 'deflate-raw', chunkBytes: chunkBytesDefault, ...extra };
  }

  private async encodeAndPut(name: string, header: ObjectHeader, input: { inPath?: string; inBytes?: Uint8Array }, stagingPath: string): Promise<EncodeResult> {
    const ring = this.options.keyring;
    let dataKey: Buffer | undefined;
    if (ring !== undefined) {
      const k = newDataKey(ring);
      dataKey = k.key;
      header.encryption = { alg: 'AES-256-GCM', ...k.wrapped };
    }
    const req: EncodeRequest = { header, ...input, outPath: stagingPath, level: this.options.settings.compressionLevel, ...(dataKey ? { dataKey } : {}) };
    const result = await (this.options.encode ?? ((r: EncodeRequest) => Promise.resolve(encodeHere(r))))(req);
    await this.options.target.put(name, stagingPath);
    return result;
  }

  private shipping: Promise<void> | undefined;

  /** One round: a boundary and the own entries up to it, as one segment (several when catching up). */
  private shipSegment(): Promise<void> {
    this.shipping ??= this.shipSegmentNow().finally(() => {
      this.shipping = undefined;
    });
    return this.shipping;
  }

  private async shipSegmentNow(): Promise<void> {
    const t = await this.currentTimeline();
    const store = this.options.store;
    const boundary: ShippedBoundary = { ...(await store.boundary()), atMs: Math.floor(this.options.env.clock.wallMs()) };
    // the site may have taken a new incarnation meanwhile: the next round starts its timeline
    if (this.options.origin() !== t.origin) return;
    const upTo = boundary.vector[t.origin] ?? 0;
    for (;;) {
      let gap: { from: number; to: number } | undefined;
      const floor = boundary.logFloor[t.origin] ?? 0;
      if (floor > t.archivedSeq && !this.bufferHas(t.archivedSeq + 1)) {
        // compaction went past the archive (its hold expired): those entries are gone
        gap = { from: t.archivedSeq + 1, to: floor };
        this.log.error({ origin: t.origin, gap }, 'own log entries were compacted before they were archived: the archive records a gap, a new base snapshot follows');
        t.archivedSeq = floor;
        this.snapshotWanted ??= 'gap in the archive';
      }
      const entries = await this.entriesAfter(t, t.archivedSeq, upTo);
      const end = entries.length > 0 ? entries[entries.length - 1]!.seq : t.archivedSeq;
      const last = end >= upTo;
      if (!last && entries.length === 0) throw new Error(`own entries ${t.archivedSeq + 1}..${upTo} of ${t.origin} could not be read from the log`);
      const clocks = entries.map((e) => e.clock ?? commitClockOf(decodeLogEntry(e.body)));
      const n = t.nextSeg;
      const header = this.header('seg', n, t, {
        prevSha256: t.prevSha256,
        start: { [t.origin]: t.archivedSeq },
        end: { [t.origin]: end },
        ...(last ? { boundary } : {}),
        ...(clocks.length > 0 ? { firstClock: clocks[0]!, lastClock: clocks[clocks.length - 1]! } : {}),
        ...(gap ? { gap } : {}),
      });
      const body = encode({ entries: entries.map((e, i) => [e.seq, clocks[i]!, e.body]) });
      const name = objectName(this.options.cluster, this.options.siteId, t.incarnation, 'seg', n);
      const staging = join(this.options.stagingDir, `seg-${n}.obj`);
      try {
        const result = await this.encodeAndPut(name, header, { inBytes: body }, staging);
        t.prevSha256 = result.sha256;
      } finally {
        await rm(staging, { force: true });
      }
      t.nextSeg = n + 1;
      t.archivedSeq = end;
      t.objects[name] = header;
      this.manifestDirty++;
      this.dropArchived(end);
      if (last) break;
    }
    if (t.snapshot !== undefined) {
      this.newestRestorableAtMs = boundary.atMs;
      this.options.metrics?.restorable(boundary.atMs);
    }
    if (this.manifestDirty >= 30) await this.writeManifest(t);
  }

  private bufferHas(seq: number): boolean {
    return !this.bufferLost && this.buffer.length > 0 && this.buffer[0]!.seq === seq;
  }

  /** Own entries after `from` up to `upTo` (bounded by segmentBytesMax): from the buffer, or read back from the log. */
  private async entriesAfter(t: TimelineState, from: number, upTo: number): Promise<LogRecord[]> {
    if (upTo <= from) return [];
    const out: LogRecord[] = [];
    let bytes = 0;
    if (this.bufferHas(from + 1)) {
      for (const r of this.buffer) {
        if (r.seq > upTo) break;
        if (out.length > 0 && bytes + r.body.byteLength > this.options.settings.segmentBytesMax) return out;
        out.push(r);
        bytes += r.body.byteLength;
      }
      if (out[out.length - 1]?.seq === upTo) return out;
    }
    // read back: after a restart, or when the buffer overflowed
    let at = out.length > 0 ? out[out.length - 1]!.seq : from;
    while (at < upTo && bytes < this.options.settings.segmentBytesMax) {
      const page = await this.options.store.readLogRaw({ [t.origin]: at }, 512, 4 << 20, { [t.origin]: upTo });
      if (page.length === 0) break;
      for (const r of page) {
        out.push(r);
        bytes += r.body.byteLength;
      }
      at = page[page.length - 1]!.seq;
    }
    return out;
  }

  private dropArchived(seq: number): void {
    let i = 0;
    while (i < this.buffer.length && this.buffer[i]!.seq <= seq) {
      this.bufferBytes -= this.buffer[i]!.body.byteLength;
      i++;
    }
    this.buffer = this.buffer.slice(i);
    if (this.bufferLost && seq >= (this.options.store.durableVector()[this.timeline!.origin] ?? 0)) {
      this.bufferLost = false;
      this.buffer = [];
      this.bufferBytes = 0;
      this.overflowBytes = 0;
    }
    this.unarchivedSinceMs = this.buffer.length > 0 || this.bufferLost ? this.unarchivedSinceMs : undefined;
    if (this.holdReleased && this.buffer.length === 0 && !this.bufferLost) this.holdReleased = false;
    this.options.metrics?.heldBytes(this.heldBytes());
  }

  private async writeManifest(t: TimelineState): Promise<void> {
    try {
      await this.options.target.putBytes(manifestName(this.options.cluster, this.options.siteId, t.incarnation), Buffer.from(JSON.stringify({ format: 1, objects: t.objects })));
      this.manifestDirty = 0;
    } catch (error) {
      this.options.metrics?.error('manifest');
      this.log.warn({ err: (error as Error).message }, 'backup manifest not written (a cache: restore lists the objects)');
    }
  }

  /**
   * Retention: keeps the newest snapshot older than the window and everything after it; segments
   * older than that snapshot, and older snapshots, go. Runs at most once a minute.
   */
  private async retention(): Promise<void> {
    const now = this.options.env.clock.wallMs();
    if (now - this.lastRetentionMs < 60_000) return;
    this.lastRetentionMs = now;
    const t = this.timeline;
    if (t === undefined) return;
    const windowStart = now - this.options.settings.retentionMs;
    const snaps = Object.entries(t.objects).filter(([, h]) => h.kind === 'snap').sort(([, a], [, b]) => a.n - b.n);
    const keep = snaps.filter(([, h]) => h.snapshot!.atMs <= windowStart).pop();
    if (keep === undefined) return;
    const keepAtMs = keep[1].snapshot!.atMs;
    const doomed = Object.entries(t.objects).filter(([, h]) =>
      h.kind === 'snap' ? h.n < keep[1].n : h.boundary !== undefined && h.boundary.atMs < keepAtMs - this.options.settings.snapshotEveryMs && (h.lastClock === undefined || hlcMs(hlcFromHex(h.lastClock)) < keepAtMs - this.options.settings.snapshotEveryMs),
    );
    try {
      for (const [name] of doomed) {
        await this.options.target.delete(name);
        delete t.objects[name];
      }
      if (doomed.length > 0) await this.writeManifest(t);
    } catch (error) {
      this.options.metrics?.error('retention');
      this.log.warn({ err: (error as Error).message }, 'backup retention failed; retrying later');
    }
  }
}
