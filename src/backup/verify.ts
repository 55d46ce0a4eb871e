// `tandem backup verify`: reads every object of the backup (checksum, chain, each chunk's tag),
// then restores each site's newest point into a scratch directory and compares its digests with
// the ones the site showed then. The first missing or corrupt object is named (BackupError).
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { readCatalog, type Timeline } from './catalog.js';
import { BackupError } from './errors.js';
import type { Keyring } from './keyring.js';
import { decodeBytes, decodeFile } from './object-format.js';
import type { Progress } from './restore.js';
import { restoreSite, type RestoredStore, type RestoreSummary } from './restore-site.js';
import type { BackupTarget } from './targets/target.js';

export interface VerifyOptions {
  target: BackupTarget;
  keyring: Keyring | undefined;
  cluster: string;
  site?: string;
  scratchDir: string;
  open(storePath: string, site: string): Promise<RestoredStore>;
  nowMs: () => number;
  progress?: Progress;
}

export interface VerifySummary {
  objects: number;
  bytes: number;
  restored: Pick<RestoreSummary, 'site' | 'pointAt' | 'vector' | 'digests' | 'verified' | 'entriesReplayed'>[];
}

async function checkTimeline(o: VerifyOptions, t: Timeline, count: (bytes: number) => void): Promise<void> {
  for (const snap of t.snaps) {
    const staged = join(o.scratchDir, 'check-snapshot.obj');
    await o.target.getToFile(snap.name, staged);
    decodeFile(snap.name, staged, `${staged}.plain`, o.keyring);
    rmSync(staged, { force: true });
    rmSync(`${staged}.plain`, { force: true });
    count(snap.size);
  }
  let prev: { n: number; sha256: string; name: string } | undefined;
  for (const seg of t.segs) {
    if (prev !== undefined && seg.n !== prev.n + 1) {
      const name = `${seg.name.slice(0, -20)}${String(prev.n + 1).padStart(20, '0')}`;
      throw new BackupError('missing-object', `${name}: missing (the segments of ${t.site}/${t.incarnation} jump from ${prev.n} to ${seg.n})`, name);
    }
    const { header, sha256 } = decodeBytes(seg.name, await o.target.get(seg.name), o.keyring);
    if (prev !== undefined && header.prevSha256 !== prev.sha256)
      throw new BackupError('corrupt-object', `${prev.name}: its SHA-256 is not the one ${seg.name} chains to (replaced or corrupt)`, prev.name);
    prev = { n: seg.n, sha256, name: seg.name };
    count(seg.size);
  }
}

export async function verifyBackup(o: VerifyOptions): Promise<VerifySummary> {
  mkdirSync(o.scratchDir, { recursive: true });
  try {
    const timelines = await readCatalog(o.target, o.cluster);
    const mine = timelines.filter((t) => o.site === undefined || t.site === o.site);
    if (mine.length === 0) throw new BackupError('no-restore-point', `no backup${o.site ? ` of site ${o.site}` : ''} under ${o.cluster}/ at ${o.target.url}`);
    const summary: VerifySummary = { objects: 0, bytes: 0, restored: [] };
    const total = mine.reduce((n, t) => n + t.snaps.length + t.segs.length, 0);
    for (const t of mine)
      await checkTimeline(o, t, (bytes) => {
        summary.objects++;
        summary.bytes += bytes;
        o.progress?.('check objects', summary.objects, total);
      });
    for (const site of [...new Set(mine.map((t) => t.site))]) {
      const dataDir = join(o.scratchDir, `restore-${site}`);
      rmSync(dataDir, { recursive: true, force: true });
      const r = await restoreSite({ target: o.target, keyring: o.keyring, cluster: o.cluster, site, toTimeMs: 8.64e15, dataDir, open: (p) => o.open(p, site), nowMs: o.nowMs, ...(o.progress ? { progress: o.progress } : {}) });
      summary.restored.push({ site, pointAt: r.pointAt, vector: r.vector, digests: r.digests, verified: r.verified, entriesReplayed: r.entriesReplayed });
      rmSync(dataDir, { recursive: true, force: true });
    }
    return summary;
  } finally {
    rmSync(o.scratchDir, { recursive: true, force: true });
  }
}
