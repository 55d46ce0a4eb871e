#!/usr/bin/env node
// Runs many failover simulation seeds (beyond the test suite's):
//   node dist/cluster/simulate-failover.js --seeds 1000 [--from 1] [--lease-ms 1000] [--witnesses 0] [--fault members]
// Each seed draws its fault from failoverFaults (failover-workload.ts) unless --fault names one;
// --help lists them. The sweep itself: sweep.ts.
import { failoverFaults, runFailoverScenario, type FailoverFault } from './failover-workload.js';
import { sweep } from './sweep.js';

process.exitCode = await sweep(
  {
    command: 'simulate-failover',
    faults: [...failoverFaults, 'members'],
    flags: { '--lease-ms': 1000, '--witnesses': 0 },
    run: (seed, fault, flags) =>
      runFailoverScenario(seed, { leaseMs: flags['--lease-ms']!, witnesses: flags['--witnesses']!, ...(fault !== undefined ? { fault: fault as FailoverFault } : {}) }),
    figure: { name: 'promoted after (sim time)', of: (r) => r.promotedAfterMs },
  },
  process.argv.slice(2),
);
