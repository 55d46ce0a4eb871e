#!/usr/bin/env node
// Runs many seeds of the HTTP failover simulation (http-workload.ts), beyond the test suite's:
//   node dist/cluster/simulate-http.js --seeds 200 [--from 1] [--fault pause] [--drop 0.001] [--lease-ms 1000]
// Each seed draws its fault from httpFaults unless --fault names one. Prints one line per failing
// seed with its replay command, the answers by status over all seeds, and a summary.
import { httpFaults, runHttpScenario, type HttpFault } from './http-workload.js';

const args = process.argv.slice(2);
const usage = 'usage: node dist/cluster/simulate-http.js --seeds N [--from S] [--fault NAME] [--drop P (each message lost with probability P)] [--lease-ms MS]';
for (let i = 0; i < args.length; i += 2) {
  const name = args[i]!;
  if (name === '--help' || name === '-h') {
    process.stdout.write(`${usage}\nfaults: ${httpFaults.join(', ')} (default: drawn per seed)\n`);
    process.exit(0);
  }
  const value = args[i + 1];
  const bad =
    !['--seeds', '--from', '--fault', '--drop', '--lease-ms'].includes(name) ? `unknown flag ${name}` :
    value === undefined ? `${name} needs a value` :
    name === '--drop' && !(Number(value) >= 0 && Number(value) <= 1) ? `--drop must be a probability (0..1), got ${value}` :
    name !== '--fault' && name !== '--drop' && !(Number.isInteger(Number(value)) && Number(value) >= 0) ? `${name} must be a whole number, got ${value}` :
    name === '--fault' && !(httpFaults as readonly string[]).includes(value) ? `--fault must be one of ${httpFaults.join(', ')}, got ${value}` :
    undefined;
  if (bad !== undefined) {
    process.stderr.write(`simulate-http: ${bad}\n${usage}\n`);
    process.exit(2);
  }
}
const flag = (name: string) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
const count = Number(flag('--seeds') ?? 100);
const from = Number(flag('--from') ?? 1);
const fault = flag('--fault') as HttpFault | undefined;
const drop = Number(flag('--drop') ?? 0);
const leaseMs = Number(flag('--lease-ms') ?? 1_000);
let failed = 0;
const statuses: Record<string, number> = {};
const unavailable: Record<string, number> = {};
const totals = { acked: 0, forwarded: 0, sessionReads: 0, sessionsLost: 0, outcomeUnknown: 0 };
const started = performance.now();
for (let seed = from; seed < from + count; seed++) {
  try {
    const r = await runHttpScenario(seed, { leaseMs, ...(fault !== undefined ? { fault } : {}), ...(drop > 0 ? { network: { dropProbability: drop } } : {}) });
    for (const [k, n] of Object.entries(r.statuses)) statuses[k] = (statuses[k] ?? 0) + n;
    for (const [k, n] of Object.entries(r.unavailable)) unavailable[k] = (unavailable[k] ?? 0) + n;
    for (const k of Object.keys(totals) as (keyof typeof totals)[]) totals[k] += r[k];
    if (r.anomalies.length > 0) {
      failed++;
      process.stdout.write(`FAIL seed ${seed} (${r.fault}): ${r.anomalies.slice(0, 3).map((a) => `[${a.kind}] ${a.detail}`).join('; ')}\n  replay: node dist/cluster/simulate-http.js --seeds 1 --from ${seed} --fault ${r.fault}${drop > 0 ? ` --drop ${drop}` : ''} --lease-ms ${leaseMs}\n`);
    }
  } catch (e) {
    failed++;
    process.stdout.write(`FAIL seed ${seed}: ${(e as Error).message.split('\n')[0]}\n`);
  }
}
process.stdout.write(`answers by status: ${JSON.stringify(statuses)}; 503 by type: ${JSON.stringify(unavailable)}; ${JSON.stringify(totals)}\n`);
process.stdout.write(`${count - failed} passed, ${failed} failed (seeds ${from}..${from + count - 1}; ${Math.round((performance.now() - started) / 1000)} s)\n`);
process.exit(failed > 0 ? 1 : 0);
