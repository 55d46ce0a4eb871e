// Restore: rebuilds a store as of a restore point from a backup target.
//
// A site's restore point at time T is its newest shipped boundary whose local commit time (the
// store's clock then) is ≤ T. The store is rebuilt from the newest snapshot of that timeline whose
// vector the boundary covers, then every origin's entries from the snapshot's vector up to the
// boundary's are replayed, each origin in seq order, from that origin's own timeline (each site
// archives only its own entries). Segments are checked against their chain (each names the
// SHA-256 of the one before) and their own checksum; the first missing or bad object is named.
// When a point's entries are not all in the archive (an origin's site died before archiving its
// last entries), the restore falls back to the newest earlier point that is complete, and says so.
//
// The same machinery rebuilds the state at any vector (materializeAt): what a rewind reads.
import { mkdirSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { decode } from '@msgpack/msgpack';
import { hlcFromHex, hlcMs } from '../core/hlc.js';
import { canonicalVector, dominates, type VersionVector } from '../core/vector.js';
import { decodeLogEntry } from '../store/log-codec.js';
import type { LogEntry } from '../store/types.js';
import { requireTimeline, timelineFor, type CatalogObject, type Timeline } from './catalog.js';
import { BackupError } from './errors.js';
import type { Keyring } from './keyring.js';
import { decodeBytes, decodeFile, type ShippedBoundary } from './object-format.js';
import type { BackupTarget } from './targets/target.js';

/** What replays entries into the store being rebuilt (a SiteNode over it: each table's join). */
export interface RestoreApplier {
  applyRemote(entries: LogEntry[], raw?: Uint8Array[]): Promise<{ applied: number; duplicates: number; gaps: number; quarantined: number }>;
}

export interface RestorePoint {
  site: string;
  /** the boundary restored to (for materializeAt: the vector asked, with no digests) */
  vector: VersionVector;
  boundary?: ShippedBoundary;
  /** the segment that carries the boundary */
  segment?: string;
  snapshot: CatalogObject;
  /** restore points after it (≤ T) that could not be used, and why */
  skipped: string[];
}

export interface Progress {
  (phase: string, done: number, total: number): void;
}

function needRanges(from: VersionVector, to: VersionVector): [string, number, number][] {
  return Object.entries(to)
    .filter(([o, seq]) => seq > (from[o] ?? 0))
    .map(([o, seq]) => [o, from[o] ?? 0, seq] as [string, number, number])
    .sort((a, b) => (a[0] < b[0] ? -1 : 1));
}

/** The segments of `t` holding its origin's entries (from, to], in order, or why they cannot. */
function segmentsFor(t: Timeline, from: number, to: number): CatalogObject[] | string {
  const out: CatalogObject[] = [];
  let at = from;
  let prev: CatalogObject | undefined;
  for (const seg of t.segs) {
    const start = seg.header.start?.[t.origin] ?? 0;
    const end = seg.header.end?.[t.origin] ?? 0;
    const before = prev;
    prev = seg;
    if (end <= at) continue;
    // a hole in the numbering is a lost object, not a gap: the restore fails naming it
    if (before !== undefined && seg.n !== before.n + 1)
      throw new BackupError('missing-object', `${missingName(seg, before.n + 1)}: missing (the segments of ${t.site}/${t.incarnation} jump from ${before.n} to ${seg.n})`, missingName(seg, before.n + 1));
    if (start > at || (seg.header.gap !== undefined && seg.header.gap.from <= at + 1)) return `${t.origin} entries ${at + 1}..${Math.min(to, start)} are not in the archive (before ${seg.name}${seg.header.gap ? ', a recorded gap' : ''})`;
    out.push(seg);
    at = end;
    if (at >= to) return out;
  }
  return `${t.origin} entries ${at + 1}..${to} are not in the archive yet (newest segment of ${t.site}/${t.incarnation} ends at ${at})`;
}

function missingName(neighbour: CatalogObject, n: number): string {
  return `${neighbour.name.slice(0, -20)}${String(n).padStart(20, '0')}`;
}

function checkAvailable(timelines: Timeline[], from: VersionVector, to: VersionVector): string | undefined {
  for (const [o, a, b] of needRanges(from, to)) {
    const t = timelineFor(timelines, o);
    if (t === undefined) return `no backup of origin ${o} (entries ${a + 1}..${b})`;
    const segs = segmentsFor(t, a, b);
    if (typeof segs === 'string') return segs;
  }
  return undefined;
}

/** The newest snapshot among `timelines` (those of `preferSite` first) whose vector `v` covers. */
function snapshotUnder(timelines: Timeline[], v: VersionVector, preferSite?: string): CatalogObject | undefined {
  const ordered = [...timelines].sort((a, b) => Number(b.site === preferSite) - Number(a.site === preferSite));
  for (const t of ordered) {
    const snap = [...t.snaps].reverse().find((s) => dominates(v, s.header.snapshot!.vector));
    if (snap !== undefined) return snap;
  }
  return undefined;
}

/** Chooses the restore point of `site` at `toTimeMs` (see the head of this file). */
export function planRestore(timelines: Timeline[], site: string, toTimeMs: number): RestorePoint {
  const own = timelines.filter((t) => t.site === site);
  if (own.length === 0) throw new BackupError('no-restore-point', `no backup of site ${site}`);
  const candidates = own
    .flatMap((t) => t.segs.filter((s) => s.header.boundary !== undefined).map((s) => ({ t, s, b: s.header.boundary! })))
    .filter((c) => hlcMs(hlcFromHex(c.b.maxHlc)) <= toTimeMs)
    .sort((x, y) => y.b.atMs - x.b.atMs || y.s.n - x.s.n);
  const skipped: string[] = [];
  for (const c of candidates) {
    const snap = [...c.t.snaps].reverse().find((s) => dominates(c.b.vector, s.header.snapshot!.vector));
    if (snap === undefined) {
      if (skipped.length < 5) skipped.push(`${c.s.name}: no snapshot of its timeline under it`);
      continue;
    }
    const why = checkAvailable(timelines, snap.header.snapshot!.vector, c.b.vector);
    if (why !== undefined) {
      if (skipped.length < 5) skipped.push(`${c.s.name}: ${why}`);
      continue;
    }
    return { site, vector: c.b.vector, boundary: c.b, segment: c.s.name, snapshot: snap, skipped };
  }
  const first = own.flatMap((t) => t.segs).find((s) => s.header.boundary !== undefined);
  throw new BackupError(
    'no-restore-point',
    `no complete restore point of site ${site} at or before ${new Date(toTimeMs).toISOString()}` +
      (first ? ` (the oldest is at ${new Date(hlcMs(hlcFromHex(first.header.boundary!.maxHlc))).toISOString()})` : '') +
      (skipped.length > 0 ? `: ${skipped.join('; ')}` : ''),
  );
}

/** A plan to rebuild the state at vector `v` (rewind): a snapshot under it and every entry up to it. */
export function planAt(timelines: Timeline[], v: VersionVector, preferSite?: string): RestorePoint {
  const snap = snapshotUnder(timelines, v, preferSite);
  if (snap === undefined) throw new BackupError('no-restore-point', `no snapshot in the archive is older than the cut ${JSON.stringify(canonicalVector(v))}`);
  const why = checkAvailable(timelines, snap.header.snapshot!.vector, v);
  if (why !== undefined) throw new BackupError('missing-object', `cannot rebuild the cut: ${why}`);
  return { site: snap.header.site, vector: v, snapshot: snap, skipped: [] };
}

export interface RestoreExecution {
  target: BackupTarget;
  keyring: Keyring | undefined;
  timelines: Timeline[];
  point: RestorePoint;
  /** where the store file goes (it must not exist) */
  storePath: string;
  /** where downloads are staged */
  stagingDir: string;
  /** opens the store written at storePath and returns what replays entries into it */
  open(storePath: string): Promise<RestoreApplier>;
  progress?: Progress;
}

export interface RestoreReport {
  entriesReplayed: number;
  bytesReplayed: number;
  segmentsRead: number;
  snapshotBytes: number;
}

/** Writes the snapshot's store to storePath, then replays every origin's entries up to the point. */
export async function executeRestore(x: RestoreExecution): Promise<RestoreReport> {
  mkdirSync(x.stagingDir, { recursive: true });
  mkdirSync(dirname(x.storePath), { recursive: true });
  const stagedSnap = join(x.stagingDir, 'snapshot.obj');
  x.progress?.('download snapshot', 0, x.point.snapshot.size);
  await x.target.getToFile(x.point.snapshot.name, stagedSnap);
  decodeFile(x.point.snapshot.name, stagedSnap, x.storePath, x.keyring);
  rmSync(stagedSnap, { force: true });
  x.progress?.('download snapshot', x.point.snapshot.size, x.point.snapshot.size);
  const applier = await x.open(x.storePath);
  const from = x.point.snapshot.header.snapshot!.vector;
  const ranges = needRanges(from, x.point.vector);
  const total = ranges.reduce((n, [, a, b]) => n + (b - a), 0);
  const report: RestoreReport = { entriesReplayed: 0, bytesReplayed: 0, segmentsRead: 0, snapshotBytes: x.point.snapshot.size };
  for (const [origin, a, b] of ranges) {
    const t = requireTimeline(x.timelines, origin, x.target.url);
    const segs = segmentsFor(t, a, b);
    if (typeof segs === 'string') throw new BackupError('missing-object', segs);
    let prev: { n: number; sha256: string; name: string } | undefined;
    for (const seg of segs) {
      const stored = await x.target.get(seg.name);
      const { header, body, sha256 } = decodeBytes(seg.name, stored, x.keyring);
      // segments holding none of the entries needed (heartbeats) are not read: the chain is checked between neighbours
      if (prev !== undefined && prev.n + 1 === seg.n && header.prevSha256 !== prev.sha256)
        throw new BackupError('corrupt-object', `${prev.name}: its SHA-256 is not the one ${seg.name} chains to (replaced or corrupt)`, prev.name);
      prev = { n: seg.n, sha256, name: seg.name };
      report.segmentsRead++;
      const { entries } = decode(body) as { entries: [number, string, Uint8Array][] };
      const batch: LogEntry[] = [];
      const raw: Uint8Array[] = [];
      const flush = async () => {
        if (batch.length === 0) return;
        const r = await applier.applyRemote([...batch], [...raw]);
        if (r.gaps > 0) throw new BackupError('corrupt-object', `${seg.name}: entries of ${origin} do not follow on from what was replayed`, seg.name);
        report.entriesReplayed += batch.length;
        batch.length = 0;
        raw.length = 0;
        x.progress?.('replay log', report.entriesReplayed, total);
      };
      for (const [seq, , bytes] of entries) {
        if (seq <= a || seq > b) continue;
        const entry = decodeLogEntry(bytes);
        if (entry.origin !== origin || entry.seq !== seq) throw new BackupError('corrupt-object', `${seg.name}: holds ${entry.origin}:${entry.seq} where ${origin}:${seq} belongs`, seg.name);
        batch.push(entry);
        raw.push(bytes);
        report.bytesReplayed += bytes.byteLength;
        // large batches: the site's group committer splits them into transactions and works
        // through them while the next are decoded
        if (batch.length >= 2048) await flush();
      }
      await flush();
    }
  }
  return report;
}
