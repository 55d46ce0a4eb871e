// Failover on the simulated cluster: owner crash, isolation (both ways and one way), a pause longer
// than the lease, switchovers (one with a partition in the middle), voter restarts and clock drift,
// each checked from the history of every admitted write (cluster/failover-workload.ts). More seeds:
// `node dist/cluster/simulate-failover.js --seeds 1000`. The cases: failover-sim-cases.ts.
import { failoverFaults } from '../cluster/failover-workload.js';
import { failoverSimCases } from './failover-sim-cases.js';

// the first half of the faults here, the rest in failover-b.sim.test.ts (two files: two workers)
failoverSimCases(failoverFaults.slice(0, Math.ceil(failoverFaults.length / 2)));
