#!/usr/bin/env node
// Runs many replication simulation seeds (beyond the test suite's 200):
//   node dist/cluster/simulate.js --seeds 5000 [--from 1] 
// Prints one line per failing seed with its replay command, and a summary.
import { runReplicationScenario } from './replication-workload.js';

const args = process.argv.slice(2);
const flag = (name: string, fallback: number) => {
  const i = args.indexOf(name);
  return i >= 0 ? Number(args[i + 1]) : fallback;
};
const count = flag('--seeds', 1000);
const from = flag('--from', 1);
let failed = 0;
let acked = 0;
let conflicts = 0;
const started = performance.now();
for (let seed = from; seed < from + count; seed++) {
  try {
    const r = await runReplicationScenario(seed);
    acked += r.acked;
    conflicts += r.conflicts;
    if (!r.digestsEqual || r.anomalies.length > 0) {
      failed++;
      process.stdout.write(`FAIL seed ${seed}: ${r.digestsEqual ? '' : 'digests differ; '}${r.anomalies.map((a) => a.detail).join('; ')}\n  replay: SEED=${seed} npx vitest run src/cluster/replication.sim\n`);
    }
  } catch (e) {
    failed++;
    process.stdout.write(`FAIL seed ${seed}: ${(e as Error).message.split('\n')[0]}\n  replay: SEED=${seed} npx vitest run src/cluster/replication.sim\n`);
  }
}
process.stdout.write(`${count - failed} passed, ${failed} failed (seeds ${from}..${from + count - 1}; ${acked} acknowledged writes, ${conflicts} conflicts; ${Math.round((performance.now() - started) / 1000)} s)\n`);
process.exit(failed > 0 ? 1 : 0);
