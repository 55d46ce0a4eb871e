#!/usr/bin/env node
// Runs many seeds of the HTTP failover simulation (http-workload.ts), beyond the test suite's:
//   node dist/cluster/simulate-http.js --seeds 200 [--from 1] [--fault pause] [--drop 0.001] [--lease-ms 1000]
// Each seed draws its fault from httpFaults unless --fault names one; --drop loses each message
// with that probability. Prints the failing seeds with their replay commands, the answers by status
// and 503s by type over all seeds, and a summary (the sweep itself: sweep.ts).
import { httpFaults, runHttpScenario, type HttpFault } from './http-workload.js';
import { sweep } from './sweep.js';

process.exitCode = await sweep(
  {
    command: 'simulate-http',
    faults: httpFaults,
    flags: { '--lease-ms': 1000, '--drop': 0 },
    fractions: ['--drop'],
    run: (seed, fault, flags) =>
      runHttpScenario(seed, {
        leaseMs: flags['--lease-ms']!,
        ...(fault !== undefined ? { fault: fault as HttpFault } : {}),
        ...(flags['--drop']! > 0 ? { network: { dropProbability: flags['--drop']! } } : {}),
      }),
    tally: (r) => ({
      forwarded: r.forwarded,
      'session reads': r.sessionReads,
      'sessions lost (410)': r.sessionsLost,
      '502 outcome unknown': r.outcomeUnknown,
      ...Object.fromEntries(Object.entries(r.statuses).map(([k, n]) => [`status ${k}`, n])),
      ...Object.fromEntries(Object.entries(r.unavailable).map(([k, n]) => [`503 ${k}`, n])),
    }),
  },
  process.argv.slice(2),
);
