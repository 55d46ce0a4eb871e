// Continuous backup and restore of one site, against a real directory target: back up under
// writes (puts, patches, deletes, counters), restore to several instants and compare with the
// boundaries read then; corrupt, cut and drop objects and see each named; encryption with a key
// rotation; a snapshot while fsync is held or failing holds nothing unsynced.
import { randomBytes } from 'node:crypto';
import { fdatasync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { hlcFromHex, hlcMs } from '../core/hlc.js';
import { silentLogger, type Env } from '../platform/env.js';
import { realClock, realNextTurn, realRandom, realTimers } from '../platform/real/real-env.js';
import { SiteNode } from '../site/site-node.js';
import { openRestoredStore } from '../site/restored-store.js';
import { SqliteStore } from '../store/sqlite/sqlite-store.js';
import type { StoreBoundary } from '../store/types.js';
import { readCatalog } from './catalog.js';
import { config, restoreAt, startBackedUpSite, tempDir, until, writeRound } from './testing/backed-up-site.js';
import { loadKeyring, type Keyring } from './keyring.js';
import { restoreSite } from './restore-site.js';
import { FaultyTarget } from './testing/faulty-target.js';
import { FileTarget } from './targets/file-target.js';
import type { BackupTarget } from './targets/target.js';
import { verifyBackup } from './verify.js';

const env: Env = { clock: realClock, timers: realTimers, random: realRandom, transport: { request: () => Promise.reject(new Error('no network')) }, log: silentLogger };
const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});
const backedUpSite = (target: BackupTarget, keyring?: Keyring, options: Parameters<typeof startBackedUpSite>[3] = {}) => startBackedUpSite(cleanups, target, keyring, options);

function keyFile(keys: Record<string, Buffer>, current: string): string {
  const path = join(tempDir('keys'), 'backup.key');
  writeFileSync(path, JSON.stringify({ current, keys: Object.fromEntries(Object.entries(keys).map(([k, v]) => [k, v.toString('base64')])) }));
  return path;
}

describe('continuous backup to a directory', () => {
  it.each([
    ['plain', false],
    ['encrypted, with a key rotation midway', true],
  ])('restores to several instants with the boundaries read then (%s)', async (_name, encrypted) => {
    const target = new FileTarget(`file://${tempDir('target')}`);
    const k1 = randomBytes(32);
    const k2 = randomBytes(32);
    const ring1 = encrypted ? loadKeyring(keyFile({ k1 }, 'k1')) : undefined;
    const site = await backedUpSite(target, ring1);
    const boundaries: StoreBoundary[] = [];
    boundaries.push(await writeRound(site, 1));
    boundaries.push(await writeRound(site, 2));
    await site.backup.backupNow();
    boundaries.push(await writeRound(site, 3));
    await site.stop();
    // rotation: a new current key; the old one stays to read what it wrapped
    const ring2 = encrypted ? loadKeyring(keyFile({ k1, k2 }, 'k2')) : undefined;
    const again = await backedUpSite(target, ring2, { dir: site.dir });
    const segmentsBefore = (await readCatalog(target, 'demo'))[0]!.segs.length;
    await until('the restarted site to resume its timeline', () => again.backup.status().segments > segmentsBefore);
    const catalog = await readCatalog(target, 'demo');
    expect(catalog).toHaveLength(1);
    expect(catalog[0]!.snaps.length).toBeGreaterThanOrEqual(2);
    for (const b of boundaries) {
      const summary = await restoreAt(target, b, ring2);
      expect(summary.vector).toEqual(b.vector);
      expect(summary.digests).toEqual(b.digests);
      expect(summary.verified).toBe(true);
    }
    if (encrypted) {
      const keyIds = new Set(catalog[0]!.segs.map((s) => s.header.encryption?.keyId));
      expect(keyIds).toEqual(new Set(['k1', 'k2']));
      await expect(restoreAt(target, boundaries[0]!, loadKeyring(keyFile({ k2 }, 'k2')))).rejects.toThrow(/key k1/);
    }
  });

  it('takes a snapshot by the fraction rule only once snapshotFractionMinMs has passed since the last', async () => {
    for (const minMs of [3_600_000, 0]) {
      const site = await backedUpSite(new FileTarget(`file://${tempDir('target')}`), undefined, { settings: { snapshotFraction: 0.01, snapshotFractionMinMs: minMs } });
      await writeRound(site, 1);
      // a snapshot with items in it: the fraction rule measures against it
      await site.backup.backupNow();
      const before = site.backup.status().snapshots;
      await writeRound(site, 2);
      const shipped = site.backup.status().segments;
      await until('a few more segments', () => site.backup.status().segments >= shipped + 3);
      if (minMs === 0) await until('the fraction rule to snapshot', () => site.backup.status().snapshots > before);
      else expect(site.backup.status().snapshots, 'no snapshot within snapshotFractionMinMs').toBe(before);
      await site.stop();
    }
  });

  it('names a corrupt, a cut and a missing object, and leaves no store behind', async () => {
    const dir = tempDir('target');
    const inner = new FileTarget(`file://${dir}`);
    // one snapshot only, so that the restore needs every segment
    const site = await backedUpSite(inner, undefined, { settings: { snapshotFraction: 1e9 } });
    await writeRound(site, 1);
    const b = await writeRound(site, 2);
    // heartbeats after the last entries: a dropped segment is then a hole in the chain, not the newest point
    const shipped = site.backup.status().segments;
    await until('heartbeat segments', () => site.backup.status().segments >= shipped + 3);
    await site.stop();
    const catalog = await readCatalog(inner, 'demo');
    const origin = catalog[0]!.origin;
    const segs = catalog[0]!.segs.filter((s) => (s.header.end![origin] ?? 0) > (s.header.start![origin] ?? 0));
    const victim = segs[segs.length - 1]!;
    const faulty = new FaultyTarget(inner, realTimers);

    faulty.faults = { bitFlip: new RegExp(victim.name) };
    await expect(restoreAt(faulty, b)).rejects.toThrow(new RegExp(`${victim.name}: checksum mismatch`));
    await expect(verifyBackup({ target: faulty, keyring: undefined, cluster: 'demo', scratchDir: tempDir('scratch'), open: (p) => openRestoredStore(config, 'us-east', p), nowMs: () => Date.now() })).rejects.toThrow(new RegExp(victim.name));

    const snap = catalog[0]!.snaps[0]!;
    faulty.faults = { truncate: new RegExp(snap.name) };
    const dataDir = tempDir('restored');
    await expect(
      restoreSite({ target: faulty, keyring: undefined, cluster: 'demo', site: 'us-east', toTimeMs: hlcMs(hlcFromHex(b.maxHlc)), dataDir, open: (p) => openRestoredStore(config, 'us-east', p), nowMs: () => Date.now() }),
    ).rejects.toThrow(new RegExp(`${snap.name}: checksum mismatch`));
    expect(readdirSync(dataDir).filter((f) => f !== 'us-east')).toEqual([]);

    faulty.faults = {};
    await inner.delete(victim.name);
    await expect(restoreAt(faulty, b)).rejects.toThrow(new RegExp(`${victim.name}: missing`));
    await expect(verifyBackup({ target: faulty, keyring: undefined, cluster: 'demo', scratchDir: tempDir('scratch'), open: (p) => openRestoredStore(config, 'us-east', p), nowMs: () => Date.now() })).rejects.toThrow(new RegExp(`${victim.name}: missing`));
  });

  it('keeps shipping after target failures (retries with backoff) and the restore is complete', async () => {
    const inner = new FileTarget(`file://${tempDir('target')}`);
    const faulty = new FaultyTarget(inner, realTimers);
    faulty.faults = { fail: { put: 3 } };
    const site = await backedUpSite(faulty);
    const b = await writeRound(site, 1);
    expect(site.backup.status().errors).toBeGreaterThanOrEqual(1);
    const summary = await restoreAt(inner, b);
    expect(summary.digests).toEqual(b.digests);
  });
});

describe('log compaction and the archive', () => {
  it('holds own entries until archived, within maxHoldBytes; past it compaction goes on and the archive records a gap and takes a new snapshot', async () => {
    const inner = new FileTarget(`file://${tempDir('target')}`);
    const faulty = new FaultyTarget(inner, realTimers);
    // a small buffer: the entries held in memory are dropped and read back from the log, which loses them to compaction
    const site = await backedUpSite(faulty, undefined, { settings: { maxHoldBytes: 20_000, bufferBytesMax: 10_000, snapshotFraction: 1e9 } });
    await writeRound(site, 1);
    const origin = site.node.origin;
    expect(site.backup.compactableUpTo(origin)).toBe(site.backup.status().archivedSeq);
    expect(site.backup.compactableUpTo('some-peer.1')).toBeUndefined();
    // the target goes down: the archive falls behind; within the bound, compaction is held back
    faulty.faults = { fail: { put: Infinity } };
    const held = site.backup.status().archivedSeq;
    await site.node.write(site.node.table('profiles'), 'one', { op: 'put', value: { v: 1 } });
    expect(site.backup.compactableUpTo(origin)).toBe(held);
    // past the bound it lets go; housekeeping compacts past the archive
    for (let i = 0; i < 200; i++) await site.node.write(site.node.table('profiles'), `big${i}`, { op: 'put', value: { pad: 'x'.repeat(200) } });
    expect(site.backup.compactableUpTo(origin)).toBeUndefined();
    await site.store.compactLog({ [origin]: site.store.vector()[origin]! });
    faulty.faults = {};
    const b = await site.store.boundary();
    await until('the archive to catch up', () => site.backup.status().archivedSeq >= b.vector[origin]! && site.backup.status().snapshots >= 2);
    const [timeline] = await readCatalog(inner, 'demo');
    const gap = timeline!.segs.find((s) => s.header.gap !== undefined);
    expect(gap?.header.gap).toMatchObject({ from: held + 1 });
    await until('a restore point after the new snapshot', async () => {
      const t = (await readCatalog(inner, 'demo'))[0]!;
      const snap = t.snaps[t.snaps.length - 1]!.header.snapshot!;
      return t.segs.some((s) => s.header.boundary !== undefined && (s.header.boundary.vector[origin] ?? 0) >= (snap.vector[origin] ?? 0) && s.header.boundary.atMs > snap.atMs);
    });
    const latest = await site.store.boundary();
    await until('the latest boundary archived', () => site.backup.status().archivedSeq >= latest.vector[origin]!);
    await realTimers.sleep(60);
    const summary = await restoreAt(inner, latest);
    expect(summary.digests).toEqual(latest.digests);
  });
});

describe('snapshots and fsync', () => {
  it('a snapshot taken while the WAL sync is held is released only once what it holds is durable', async () => {
    const held: (() => void)[] = [];
    let hold = false;
    const fsync = (fd: number, done: (e: NodeJS.ErrnoException | null) => void) => {
      if (hold) held.push(() => fdatasync(fd, done));
      else fdatasync(fd, done);
    };
    const dir = tempDir('snap');
    const store = new SqliteStore({ path: join(dir, 'store.db'), siteId: 'us-east', wallMs: () => Date.now(), conflictEntriesMax: 10, fdatasync: fsync });
    const node = new SiteNode({ env, config, siteId: 'us-east', store, nextTurn: realNextTurn });
    await node.start();
    cleanups.push(() => node.stop());
    await node.write(node.table('profiles'), 'a', { op: 'put', value: { v: 1 } });
    hold = true;
    const pending = node.write(node.table('profiles'), 'b', { op: 'put', value: { v: 2 } });
    await until('the write to wait for its sync', () => held.length > 0);
    let released = false;
    const snap = store.snapshotToFile(join(dir, 'copy.db'), { itemsPerStep: 10, pauseMs: 0 }).then((info) => {
      released = true;
      return info;
    });
    await until('the snapshot to wait for the held sync too', () => held.length > 1);
    expect(released).toBe(false);
    hold = false;
    for (const release of held.splice(0)) release();
    const info = await snap;
    await pending;
    expect(info.vector[node.origin]).toBe(2);
    expect(store.durableVector()[node.origin]).toBeGreaterThanOrEqual(info.vector[node.origin]!);
  });

  it('a snapshot whose sync fails is never handed out', async () => {
    let fail = false;
    const fsync = (fd: number, done: (e: NodeJS.ErrnoException | null) => void) => (fail ? done(Object.assign(new Error('EIO: injected'), { code: 'EIO' })) : fdatasync(fd, done));
    const dir = tempDir('snap');
    const store = new SqliteStore({ path: join(dir, 'store.db'), siteId: 'us-east', wallMs: () => Date.now(), conflictEntriesMax: 10, fdatasync: fsync, onFatal: () => undefined });
    const node = new SiteNode({ env, config, siteId: 'us-east', store, nextTurn: realNextTurn });
    await node.start();
    cleanups.push(() => node.stop().catch(() => undefined));
    await node.write(node.table('profiles'), 'a', { op: 'put', value: { v: 1 } });
    fail = true;
    await expect(node.write(node.table('profiles'), 'b', { op: 'put', value: { v: 2 } })).rejects.toThrow(/durable/);
    await expect(store.snapshotToFile(join(dir, 'copy.db'), { itemsPerStep: 10, pauseMs: 0 })).rejects.toThrow(/durable/);
    rmSync(join(dir, 'copy.db'), { force: true });
  });
});
