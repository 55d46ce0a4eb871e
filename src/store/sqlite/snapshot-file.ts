// A snapshot of a SQLite store as a file of its own (Store.snapshotToFile): copied on a worker
// thread, over a connection of its own, inside one read transaction, so the main thread keeps
// serving and committing while the copy runs, and the copy is one instant of the store
// (invariant 4). The copy holds items (tombstones included), the vector, origins, members and the
// identity; not the log (its floor becomes the vector) and not the conflict feed. Rows go over in
// steps of `itemsPerStep` with a pause between, so the copy's disk reads and writes leave room for
// the commits' fdatasyncs.
//
// The worker runs from source text (eval) rather than from a module file, so the same code runs
// under the test runner (which loads .ts) and from dist/.
import { createRequire } from 'node:module';
import { rmSync, statSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import type { VersionVector } from '../../core/vector.js';
import type { SnapshotFileInfo } from '../types.js';

export interface SnapshotCopyRequest {
  dbPath: string;
  outPath: string;
  schemaSql: string;
  itemsPerStep: number;
  pauseMs: number;
}

/** The worker's body: plain JavaScript, no imports from this module (it is run from its source). */
function snapshotWorkerMain(): void {
  /* eslint-disable @typescript-eslint/no-require-imports */
  const { workerData, parentPort } = require('node:worker_threads') as typeof import('node:worker_threads');
  const req = workerData as SnapshotCopyRequest & { sqliteModule: string };
  const Database = require(req.sqliteModule) as typeof import('better-sqlite3');
  /* eslint-enable @typescript-eslint/no-require-imports */
  const pause = new Int32Array(new SharedArrayBuffer(4));
  const out = new Database(req.outPath);
  out.pragma('journal_mode = OFF');
  out.pragma('synchronous = OFF');
  out.exec('CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL) WITHOUT ROWID');
  out.exec(req.schemaSql);
  // the key indexes are built once at the end: much cheaper than row by row at random keys
  out.exec('DROP INDEX IF EXISTS items_key; DROP INDEX IF EXISTS items_tombstones');
  out.close();
  const src = new Database(req.dbPath, { fileMustExist: true });
  src.pragma('busy_timeout = 10000');
  src.prepare('ATTACH DATABASE ? AS snap').run(req.outPath);
  src.exec('BEGIN');
  const vectorRows = src.prepare('SELECT origin, seq FROM main.vector').all() as { origin: string; seq: number }[];
  const vector: Record<string, number> = {};
  for (const r of vectorRows) vector[r.origin] = r.seq;
  src.exec('INSERT INTO snap.meta SELECT * FROM main.meta; INSERT INTO snap.origins SELECT * FROM main.origins;');
  src.exec('INSERT INTO snap.vector SELECT * FROM main.vector; INSERT INTO snap.members SELECT * FROM main.members;');
  // the void items this image's vector covers and nobody compensated yet go with it
  src.exec('INSERT INTO snap.void_backlog SELECT * FROM main.void_backlog;');
  const meta = new Map((src.prepare('SELECT k, v FROM main.meta').all() as { k: string; v: string }[]).map((r) => [r.k, r.v]));
  // the copy has no log: a peer that needs anything below its vector needs a snapshot
  const sortedVector: Record<string, number> = {};
  for (const o of Object.keys(vector).sort()) sortedVector[o] = vector[o]!;
  src.prepare("INSERT INTO snap.meta (k, v) VALUES ('compacted', ?) ON CONFLICT (k) DO UPDATE SET v = excluded.v").run(JSON.stringify(sortedVector));
  const step = src.prepare('INSERT INTO snap.items SELECT * FROM main.items WHERE id > ? ORDER BY id LIMIT ?');
  const lastId = src.prepare('SELECT max(id) AS id FROM snap.items');
  let after: number | bigint = -1;
  let items = 0;
  for (;;) {
    const copied = step.run(after, req.itemsPerStep).changes;
    if (copied === 0) break;
    items += copied;
    after = (lastId.get() as { id: number | bigint }).id;
    if (req.pauseMs > 0) Atomics.wait(pause, 0, 0, req.pauseMs);
  }
  src.exec('COMMIT');
  src.exec('DETACH DATABASE snap');
  src.close();
  const done = new Database(req.outPath);
  done.exec(req.schemaSql);
  done.pragma('journal_mode = DELETE');
  done.close();
  parentPort!.postMessage({ vector, gcFloor: JSON.parse(meta.get('floor') ?? '{}') as Record<string, number>, maxHlc: meta.get('hlc') ?? '0'.repeat(16), items });
}

const workerSource = `(${snapshotWorkerMain.toString()})()`;

/** Copies the store at `dbPath` into a new file `outPath` (replaced if it exists); resolves with what it holds. */
export async function copySnapshotFile(request: SnapshotCopyRequest): Promise<SnapshotFileInfo> {
  rmSync(request.outPath, { force: true });
  const sqliteModule = createRequire(import.meta.url).resolve('better-sqlite3');
  const worker = new Worker(workerSource, { eval: true, workerData: { ...request, sqliteModule } });
  try {
    const result = await new Promise<{ vector: VersionVector; gcFloor: VersionVector; maxHlc: string; items: number }>((resolve, reject) => {
      worker.once('message', resolve);
      worker.once('error', reject);
      worker.once('exit', (code) => reject(new Error(`snapshot worker exited with code ${code} before it finished`)));
    });
    return { ...result, bytes: statSync(request.outPath).size };
  } catch (error) {
    rmSync(request.outPath, { force: true });
    throw error;
  } finally {
    await worker.terminate();
  }
}
