// `tandem restore`: rebuilds one site's store as of a second into a new data directory, detached
// (a marker file keeps it read-only and unpeered until `--rejoin`), and checks the result against
// the restore point: the vector and the per-table digests the site showed when it was read.
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { canonicalVector, vectorsEqual, type VersionVector } from '../core/vector.js';
import { readCatalog } from './catalog.js';
import { BackupError } from './errors.js';
import type { Keyring } from './keyring.js';
import { executeRestore, planRestore, type Progress, type RestoreApplier } from './restore.js';
import type { BackupTarget } from './targets/target.js';

export const detachedMarker = 'DETACHED.json';

/** The store being rebuilt, opened by the caller (a site node over it, for each table's join). */
export interface RestoredStore extends RestoreApplier {
  vector(): VersionVector;
  digests(): Promise<Record<string, string>>;
  close(): Promise<void>;
}

export interface RestoreSummary {
  site: string;
  toTime: string;
  dataDir: string;
  /** when the restore point was read, and its local commit time */
  pointAt: string;
  vector: VersionVector;
  digests: Record<string, string>;
  /** the digests the site showed at the restore point; equal to `digests` when the restore is right */
  expectedDigests: Record<string, string>;
  verified: boolean;
  snapshot: string;
  segment: string;
  entriesReplayed: number;
  bytesReplayed: number;
  segmentsRead: number;
  skipped: string[];
  detached: boolean;
  ms: number;
}

export interface RestoreSiteOptions {
  target: BackupTarget;
  keyring: Keyring | undefined;
  cluster: string;
  site: string;
  toTimeMs: number;
  dataDir: string;
  open(storePath: string): Promise<RestoredStore>;
  progress?: Progress;
  nowMs: () => number;
}

export function storePathOf(dataDir: string, site: string): string {
  return join(dataDir, site, 'store.db');
}

export async function restoreSite(o: RestoreSiteOptions): Promise<RestoreSummary> {
  const started = o.nowMs();
  const storePath = storePathOf(o.dataDir, o.site);
  if (existsSync(storePath)) throw new BackupError('refused', `--data-dir ${o.dataDir} already holds a store of site ${o.site} (${storePath}): restore into a new directory`);
  o.progress?.('list backup', 0, 1);
  const timelines = await readCatalog(o.target, o.cluster);
  const point = planRestore(timelines, o.site, o.toTimeMs);
  const staging = join(o.dataDir, '.restore-staging');
  let opened: RestoredStore | undefined;
  try {
    const report = await executeRestore({
      target: o.target,
      keyring: o.keyring,
      timelines,
      point,
      storePath,
      stagingDir: staging,
      open: async (path) => (opened = await o.open(path)),
      ...(o.progress ? { progress: o.progress } : {}),
    });
    const store = opened!;
    const vector = canonicalVector(store.vector());
    const digests = await store.digests();
    const b = point.boundary!;
    const verified = vectorsEqual(vector, b.vector) && JSON.stringify(digests) === JSON.stringify(b.digests);
    if (!verified)
      throw new BackupError(
        'corrupt-object',
        `the restored store does not match its restore point (${point.segment}): vector ${JSON.stringify(vector)} vs ${JSON.stringify(b.vector)}, digests ${JSON.stringify(digests)} vs ${JSON.stringify(b.digests)}`,
        point.segment,
      );
    await store.close();
    opened = undefined;
    const summary: RestoreSummary = {
      site: o.site,
      toTime: new Date(o.toTimeMs).toISOString(),
      dataDir: o.dataDir,
      pointAt: new Date(b.atMs).toISOString(),
      vector,
      digests,
      expectedDigests: b.digests,
      verified,
      snapshot: point.snapshot.name,
      segment: point.segment!,
      entriesReplayed: report.entriesReplayed,
      bytesReplayed: report.bytesReplayed,
      segmentsRead: report.segmentsRead,
      skipped: point.skipped,
      detached: true,
      ms: Math.round(o.nowMs() - started),
    };
    mkdirSync(join(o.dataDir, o.site), { recursive: true });
    writeFileSync(join(o.dataDir, o.site, detachedMarker), JSON.stringify({ restoredFrom: o.target.url, point: point.segment, pointAt: summary.pointAt, vector, logFloor: b.logFloor }, null, 2));
    return summary;
  } catch (error) {
    // nothing half-written: a failed restore leaves no store behind
    await opened?.close().catch(() => undefined);
    for (const suffix of ['', '-wal', '-shm']) rmSync(`${storePath}${suffix}`, { force: true });
    throw error;
  } finally {
    rmSync(staging, { recursive: true, force: true });
  }
}
