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
const faults = { wipes: 0, powerLosses: 0, rollbacks: 0, quorumAcks: 0, reads: 0, idempotentRepeats: 0 };
const anomalyKinds = new Map<string, number>();
const started = performance.now();
for (let seed = from; seed < from + count; seed++) {
  try {
    const r = await runReplicationScenario(seed);
    acked += r.acked;
    conflicts += r.conflicts;
    for (const k of Object.keys(faults) as (keyof typeof faults)[]) faults[k] += r[k];
    if (!r.digestsEqual || r.anomalies.length > 0) {
      failed++;
      for (const kind of new Set([...r.anomalies.map((a) => a.kind), ...(r.digestsEqual ? [] : ['digests-differ'])])) anomalyKinds.set(kind, (anomalyKinds.get(kind) ?? 0) + 1);
      process.stdout.write(`FAIL seed ${seed}: ${r.digestsEqual ? '' : 'digests differ; '}${r.anomalies.map((a) => `[${a.kind}] ${a.detail}`).join('; ')}\n  replay: SEED=${seed} npx vitest run src/cluster/replication.sim\n`);
    }
  } catch (e) {
    failed++;
    process.stdout.write(`FAIL seed ${seed}: ${(e as Error).message.split('\n')[0]}\n  replay: SEED=${seed} npx vitest run src/cluster/replication.sim\n`);
  }
}
if (anomalyKinds.size > 0) process.stdout.write(`failing seeds by anomaly: ${[...anomalyKinds].map(([k, n]) => `${k} ${n}`).join(', ')}\n`);
process.stdout.write(`faults and checks: ${Object.entries(faults).map(([k, n]) => `${k} ${n}`).join(', ')}\n`);
process.stdout.write(`${count - failed} passed, ${failed} failed (seeds ${from}..${from + count - 1}; ${acked} acknowledged writes, ${conflicts} conflicts; ${Math.round((performance.now() - started) / 1000)} s)\n`);
process.exit(failed > 0 ? 1 : 0);
