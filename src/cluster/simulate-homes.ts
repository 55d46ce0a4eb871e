#!/usr/bin/env node
// Runs many first-writer homes simulation seeds (beyond the suite's, homes-failover.sim.test.ts):
//   node dist/cluster/simulate-homes.js --seeds 500 [--from 1] [--sites 3] [--fault minority]
// Each seed draws its fault from homesFaults (homes-workload.ts) unless --fault names one;
// `minority` (two sites cut off from the rest) is drawn only with 5 sites or more. The sweep: sweep.ts.
import { homesFaults, runHomesScenario, type HomesFault } from './homes-workload.js';
import { sweep } from './sweep.js';

process.exitCode = await sweep(
  {
    command: 'simulate-homes',
    faults: homesFaults,
    flags: { '--sites': 3 },
    run: (seed, fault, flags) => {
      const sites = flags['--sites']!;
      const drawn = homesFaults.filter((f) => f !== 'minority' || sites >= 5);
      return runHomesScenario(seed, { sites, fault: (fault as HomesFault | undefined) ?? drawn[seed % drawn.length]! });
    },
  },
  process.argv.slice(2),
);
