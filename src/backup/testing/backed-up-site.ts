// A single site with its continuous backup, in process over real files, for backup tests: write
// rounds of mixed operations and wait until the archive covers them; restore to a boundary's time.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { demoConfig } from '../../config/demo.js';
import { hlcFromHex, hlcMs } from '../../core/hlc.js';
import { silentLogger, type Env } from '../../platform/env.js';
import { realClock, realNextTurn, realRandom, realTimers } from '../../platform/real/real-env.js';
import { SiteNode } from '../../site/site-node.js';
import { openRestoredStore } from '../../site/restored-store.js';
import { SqliteStore } from '../../store/sqlite/sqlite-store.js';
import type { StoreBoundary } from '../../store/types.js';
import { ContinuousBackup, defaultBackupSettings } from '../continuous-backup.js';
import type { Keyring } from '../keyring.js';
import { restoreSite } from '../restore-site.js';
import type { BackupTarget } from '../targets/target.js';

export const config = demoConfig({ sites: 1, basePort: 17100 });
const env: Env = { clock: realClock, timers: realTimers, random: realRandom, transport: { request: () => Promise.reject(new Error('no network')) }, log: silentLogger };

export function tempDir(name: string): string {
  return mkdtempSync(join(tmpdir(), `tandem-${name}-`));
}

export async function startBackedUpSite(cleanups: (() => Promise<void>)[], target: BackupTarget, keyring?: Keyring, options: { dir?: string; settings?: Partial<typeof defaultBackupSettings> } = {}) {
  const dir = options.dir ?? tempDir('site');
  const store = new SqliteStore({ path: join(dir, 'store.db'), siteId: 'us-east', wallMs: () => env.clock.wallMs(), conflictEntriesMax: 1000 });
  const node = new SiteNode({ env, config, siteId: 'us-east', store, nextTurn: realNextTurn });
  await node.start();
  const backup = new ContinuousBackup({
    env,
    store,
    origin: () => node.origin,
    target,
    cluster: 'demo',
    siteId: 'us-east',
    stagingDir: join(dir, 'staging'),
    ...(keyring ? { keyring } : {}),
    settings: { ...defaultBackupSettings, segmentIntervalMs: 20, snapshotPauseMs: 0, snapshotItemsPerStep: 50, ...options.settings },
  });
  backup.run();
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    await backup.stop();
    await node.stop();
  };
  cleanups.push(stop);
  return { node, store, backup, stop, dir };
}

export async function until(what: string, cond: () => boolean | Promise<boolean>): Promise<void> {
  for (let i = 0; i < 1000; i++) {
    if (await cond()) return;
    await realTimers.sleep(10);
  }
  throw new Error(`timed out waiting for ${what}`);
}

export type Site = Awaited<ReturnType<typeof startBackedUpSite>>;

/** Writes a round of puts, patches, increments and deletes; returns the boundary once it is archived. */
export async function writeRound(site: Site, round: number): Promise<StoreBoundary> {
  const { node, store, backup } = site;
  const profiles = node.table('profiles');
  const counters = node.table('counters');
  const writes: Promise<unknown>[] = [];
  for (let i = 0; i < 40; i++) writes.push(node.write(profiles, `p${(i * 7 + round * 13) % 60}`, { op: 'put', value: { round, i, pad: 'x'.repeat(i) } }));
  for (let i = 0; i < 10; i++) writes.push(node.write(counters, `c${i}`, { op: 'patch', patch: { increment: { n: round + i }, add: { tags: [`r${round}`] } } }));
  await Promise.all(writes);
  for (let i = 0; i < 5; i++) await node.write(profiles, `p${(round * 11 + i) % 60}`, { op: 'delete' }).catch(() => undefined);
  const b = await store.boundary();
  await until('the archive to cover the round', () => backup.status().archivedSeq >= (b.vector[node.origin] ?? 0) && backup.status().newestRestorableAtMs > 0);
  // the next round's writes get a later clock than this boundary's
  await realTimers.sleep(5);
  return b;
}

export async function restoreAt(target: BackupTarget, b: StoreBoundary, keyring?: Keyring) {
  const dataDir = tempDir('restored');
  return restoreSite({
    target,
    keyring,
    cluster: 'demo',
    site: 'us-east',
    toTimeMs: hlcMs(hlcFromHex(b.maxHlc)),
    dataDir,
    open: (path) => openRestoredStore(config, 'us-east', path),
    nowMs: () => env.clock.wallMs(),
  });
}

