#!/usr/bin/env node
// Runs many failover simulation seeds (beyond the test suite's):
//   node dist/cluster/simulate-failover.js --seeds 1000 [--from 1] [--lease-ms 1000] [--witnesses 0] [--fault members]
// Each seed draws its fault from failoverFaults (failover-workload.ts); --help lists them; a bad
// flag exits 2 naming it. Prints one line per failing seed with its replay command, and a summary.
import { failoverFaults, runFailoverScenario, type FailoverFault } from './failover-workload.js';

const args = process.argv.slice(2);
const usage = 'usage: node dist/cluster/simulate-failover.js --seeds N [--from S] [--lease-ms MS] [--witnesses W] [--fault NAME]';
const numeric = new Set(['--seeds', '--from', '--lease-ms', '--witnesses']);
for (let i = 0; i < args.length; i += 2) {
  const name = args[i]!;
  if (name === '--help' || name === '-h') {
    process.stdout.write(`${usage}\nfaults: ${[...failoverFaults, 'members'].join(', ')} (default: drawn per seed)\n`);
    process.exit(0);
  }
  const value = args[i + 1];
  const bad =
    !(numeric.has(name) || name === '--fault') ? `unknown flag ${name}` :
    value === undefined ? `${name} needs a value` :
    numeric.has(name) && !(Number.isInteger(Number(value)) && Number(value) >= 0) ? `${name} must be a whole number, got ${value}` :
    name === '--fault' && ![...failoverFaults, 'members'].includes(value) ? `--fault must be one of ${[...failoverFaults, 'members'].join(', ')}, got ${value}` :
    undefined;
  if (bad !== undefined) {
    process.stderr.write(`simulate-failover: ${bad}\n${usage}\n`);
    process.exit(2);
  }
}
const flag = (name: string, fallback: number) => {
  const i = args.indexOf(name);
  return i >= 0 ? Number(args[i + 1]) : fallback;
};
const count = flag('--seeds', 1000);
const from = flag('--from', 1);
const leaseMs = flag('--lease-ms', 1000);
const witnesses = flag('--witnesses', 0);
// one fault for every seed (e.g. `members`: a site added and another removed mid-run); default: drawn per seed
const faultAt = args.indexOf('--fault');
const fault = faultAt >= 0 ? (args[faultAt + 1] as FailoverFault) : undefined;
let failed = 0;
let acked = 0;
let ackedQuorum = 0;
const byFault = new Map<string, { runs: number; promoted: number[] }>();
const kinds = new Map<string, number>();
const started = performance.now();
for (let seed = from; seed < from + count; seed++) {
  try {
    const r = await runFailoverScenario(seed, { leaseMs, witnesses, ...(fault !== undefined ? { fault } : {}) });
    acked += r.acked;
    ackedQuorum += r.ackedQuorum;
    const f = byFault.get(r.fault) ?? { runs: 0, promoted: [] };
    f.runs++;
    if (r.promotedAfterMs !== undefined) f.promoted.push(r.promotedAfterMs);
    byFault.set(r.fault, f);
    if (r.anomalies.length > 0) {
      failed++;
      for (const k of new Set(r.anomalies.map((a) => a.kind))) kinds.set(k, (kinds.get(k) ?? 0) + 1);
      process.stdout.write(`FAIL seed ${seed} (${r.fault}): ${r.anomalies.slice(0, 3).map((a) => `[${a.kind}] ${a.detail}`).join('; ')}\n  replay: node dist/cluster/simulate-failover.js --seeds 1 --from ${seed} --lease-ms ${leaseMs} --witnesses ${witnesses}\n`);
    }
  } catch (e) {
    failed++;
    process.stdout.write(`FAIL seed ${seed}: ${(e as Error).message.split('\n')[0]}\n`);
  }
}
const median = (xs: number[]) => (xs.length === 0 ? NaN : [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!);
for (const [fault, f] of byFault)
  process.stdout.write(`${fault}: ${f.runs} runs${f.promoted.length > 0 ? `, promoted after median ${median(f.promoted)} ms, max ${Math.max(...f.promoted)} ms (sim time)` : ''}\n`);
if (kinds.size > 0) process.stdout.write(`failing seeds by anomaly: ${[...kinds].map(([k, n]) => `${k} ${n}`).join(', ')}\n`);
process.stdout.write(`${count - failed} passed, ${failed} failed (seeds ${from}..${from + count - 1}; ${acked} acknowledged writes, ${ackedQuorum} quorum; ${Math.round((performance.now() - started) / 1000)} s)\n`);
process.exit(failed > 0 ? 1 : 0);
