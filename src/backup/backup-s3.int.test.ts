// Continuous backup against a real S3-compatible server on loopback (s3rver), through the AWS SDK:
// back up under writes, restore to several instants and compare with the boundaries read then;
// a flipped bit and a dropped object at the server are named; target failures are retried.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import S3rver from 's3rver';
import { hlcFromHex, hlcMs } from '../core/hlc.js';
import { realTimers } from '../platform/real/real-env.js';
import { openRestoredStore } from '../site/restored-store.js';
import type { StoreBoundary } from '../store/types.js';
import { readCatalog } from './catalog.js';
import { restoreSite } from './restore-site.js';
import { FaultyTarget } from './testing/faulty-target.js';
import { config, restoreAt, startBackedUpSite, tempDir, until, writeRound } from './testing/backed-up-site.js';
import { S3Target } from './targets/s3-target.js';

let server: S3rver;
let endpoint: string;
const cleanups: (() => Promise<void>)[] = [];

beforeAll(async () => {
  process.env['AWS_ACCESS_KEY_ID'] = 'S3RVER';
  process.env['AWS_SECRET_ACCESS_KEY'] = 'S3RVER';
  server = new S3rver({ address: '127.0.0.1', port: 0, silent: true, directory: tempDir('s3rver'), configureBuckets: [{ name: 'backups' }] });
  const addr = await server.run();
  endpoint = `http://127.0.0.1:${addr.port}`;
});
afterAll(async () => {
  await server.close();
});
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

describe('continuous backup to an S3-compatible server', () => {
  it('restores to several instants with the boundaries read then; names a flipped bit and a dropped object', async () => {
    const target = new S3Target(`s3://backups/tandem/run-${Date.now()}?endpoint=${encodeURIComponent(endpoint)}`);
    cleanups.push(() => target.close());
    const faulty = new FaultyTarget(target, realTimers);
    // the first uploads fail: the backup retries with backoff and nothing is lost
    faulty.faults = { fail: { put: 2 } };
    const site = await startBackedUpSite(cleanups, faulty, undefined, { settings: { snapshotFraction: 1e9 } });
    const boundaries: StoreBoundary[] = [];
    for (let round = 1; round <= 3; round++) boundaries.push(await writeRound(site, round));
    const shipped = site.backup.status().segments;
    await until('heartbeat segments', () => site.backup.status().segments >= shipped + 3);
    await site.stop();
    expect(site.backup.status().errors).toBeGreaterThanOrEqual(1);
    for (const b of boundaries) {
      const summary = await restoreAt(target, b);
      expect(summary.vector).toEqual(b.vector);
      expect(summary.digests).toEqual(b.digests);
    }
    const [timeline] = await readCatalog(target, 'demo');
    const withEntries = timeline!.segs.filter((s) => (s.header.end![timeline!.origin] ?? 0) > (s.header.start![timeline!.origin] ?? 0));
    const victim = withEntries[withEntries.length - 1]!;
    faulty.faults = { bitFlip: new RegExp(victim.name) };
    await expect(restoreAt(faulty, boundaries[2]!)).rejects.toThrow(new RegExp(`${victim.name}: checksum mismatch`));
    faulty.faults = {};
    await target.delete(victim.name);
    await expect(
      restoreSite({ target, keyring: undefined, cluster: 'demo', site: 'us-east', toTimeMs: hlcMs(hlcFromHex(boundaries[2]!.maxHlc)), dataDir: tempDir('restored'), open: (p) => openRestoredStore(config, 'us-east', p), nowMs: () => Date.now() }),
    ).rejects.toThrow(new RegExp(`${victim.name}: missing`));
  });
});
