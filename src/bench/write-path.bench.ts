// Write-path benchmark: what a durable write costs a site's main thread below HTTP. A SiteNode on
// a SQLite store on disk (an fdatasync per group commit, as a real site), in this process, written
// by concurrent closed-loop writers through SiteNode.write (32 by default: the write bench's group
// commits hold about 32 writes), in three phases on one store: new keys,
// overwrites of them in the order they were written, and overwrites in a random order (the old
// state read from, and its page rewritten, wherever it lies). Reports per phase the main thread's
// busy time per write (event-loop utilization, which leaves out the fdatasync on the thread pool),
// writes/s and the mean group commit. Without the HTTP stack and a second process it varies far
// less from run to run than the write bench, so it is the one for comparing changes to the write
// path; the write bench stays the end-to-end figure.
// `npm run bench -- write-path [--keys N] [--writers N] [--out FILE] [--data-dir DIR] [--keep]`
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { demoConfig } from '../config/demo.js';
import { silentLogger, type Env } from '../platform/env.js';
import { realClock, realNextTurn, realRandom, realTimers, realTransport } from '../platform/real/real-env.js';
import { SiteMetrics } from '../site/metrics.js';
import { SiteNode } from '../site/site-node.js';
import { SqliteStore } from '../store/sqlite/sqlite-store.js';
import { dataParent, parseBenchFlags, fsTypeOf, round } from './machine.js';
import { benchItem } from './write.bench.js';

interface WritePathArgs {
  keys: number;
  writers: number;
  out: string;
  dataDir: string | undefined;
  keep: boolean;
}

interface PhaseReport {
  phase: 'new keys' | 'overwrites in order' | 'overwrites at random';
  writes: number;
  seconds: number;
  writesPerSecond: number;
  /** main-thread busy µs per write */
  mainUsPerWrite: number;
  meanGroupCommit: number;
}

const usage = 'write-path bench: --keys 1000..2000000, --writers 1..1024, --out FILE, --data-dir DIR, --keep';

function parseArgs(args: string[]): WritePathArgs {
  const out: WritePathArgs = { keys: 200_000, writers: 32, out: 'bench-results/write-path.json', dataDir: undefined, keep: false };
  parseBenchFlags(args, usage, () => (out.keep = true), (flag, value, num) => {
    if (flag === '--keys' && Number.isInteger(num) && num >= 1_000 && num <= 2_000_000) out.keys = num;
    else if (flag === '--writers' && Number.isInteger(num) && num >= 1 && num <= 1_024) out.writers = num;
    else if (flag === '--out' && value !== undefined) out.out = value;
    else if (flag === '--data-dir' && value !== undefined) out.dataDir = value;
    else return false;
    return true;
  });
  return out;
}

/** A permutation of 0..n-1 from a seeded generator: the same order on every run. */
function shuffled(n: number, seed: number): Uint32Array {
  const order = new Uint32Array(n);
  for (let i = 0; i < n; i++) order[i] = i;
  let s = seed >>> 0;
  for (let i = n - 1; i > 0; i--) {
    s = (Math.imul(s, 1_664_525) + 1_013_904_223) >>> 0;
    const j = s % (i + 1);
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  return order;
}

export async function runWritePathBench(argv: string[]): Promise<void> {
  const args = parseArgs(argv);
  const work = mkdtempSync(join(dataParent(args.dataDir), 'tandem-write-path-bench-'));
  const fsType = fsTypeOf(work) ?? 'unknown';
  process.stderr.write(`write-path bench: data in ${work} (${fsType}); ${args.keys} keys, ${args.writers} writers\n`);
  const config = demoConfig({ sites: 1, basePort: 7_900 });
  const siteId = config.sites[0]!.id;
  const transport = realTransport();
  const env: Env = { clock: realClock, timers: realTimers, random: realRandom, transport, log: silentLogger };
  const store = new SqliteStore({ path: join(work, 'store.db'), siteId, wallMs: () => realClock.wallMs(), conflictEntriesMax: 1_000 });
  const metrics = new SiteMetrics();
  const node = new SiteNode({ env, config, siteId, store, nextTurn: realNextTurn, metrics });
  const phases: PhaseReport[] = [];
  try {
    await node.start();
    const table = node.table('profiles');
    const commits = async () => (await metrics.registry.getSingleMetricAsString('tandem_group_commit_size')).match(/_count (\d+)/)?.[1];
    const runPhase = async (phase: PhaseReport['phase'], keyAt: (i: number) => number, pass: number) => {
      let next = 0;
      const commitsBefore = Number((await commits()) ?? 0);
      const elu0 = performance.eventLoopUtilization();
      const t0 = realClock.monotonicMs();
      await Promise.all(
        Array.from({ length: args.writers }, async () => {
          for (let i = next++; i < args.keys; i = next++) {
            const k = keyAt(i);
            await node.write(table, `bench-${k}`, { op: 'put', value: benchItem(String(k), pass) });
          }
        }),
      );
      const seconds = (realClock.monotonicMs() - t0) / 1_000;
      const elu = performance.eventLoopUtilization(elu0);
      const groups = Number((await commits()) ?? 0) - commitsBefore;
      phases.push({
        phase,
        writes: args.keys,
        seconds: round(seconds, 2),
        writesPerSecond: Math.round(args.keys / seconds),
        mainUsPerWrite: round((elu.active * 1_000) / args.keys, 1),
        meanGroupCommit: groups === 0 ? 0 : round(args.keys / groups, 1),
      });
    };
    await runPhase('new keys', (i) => i, 1);
    await runPhase('overwrites in order', (i) => i, 2);
    const order = shuffled(args.keys, 20_261_129);
    await runPhase('overwrites at random', (i) => order[i]!, 3);
  } finally {
    await node.stop();
    await transport.close();
    if (!args.keep) rmSync(work, { recursive: true, force: true });
  }
  const report = { bench: 'write-path', at: new Date(realClock.wallMs()).toISOString(), node: process.version, fsType, keys: args.keys, writers: args.writers, phases };
  const lines = [
    'phase                  writes/s   main µs/write   group commit',
    ...phases.map((p) => `${p.phase.padEnd(22)} ${String(p.writesPerSecond).padStart(8)}   ${p.mainUsPerWrite.toFixed(1).padStart(13)}   ${p.meanGroupCommit.toFixed(1).padStart(12)}`),
    'main µs/write: the main thread busy per write (the fdatasync runs on the thread pool, outside it)',
  ];
  mkdirSync(dirname(resolve(args.out)), { recursive: true });
  writeFileSync(args.out, `${JSON.stringify(report, null, 2)}\n`);
  process.stdout.write(`${lines.join('\n')}\n${JSON.stringify(report)}\n`);
  process.stderr.write(`write-path bench: report written to ${args.out}\n`);
}
