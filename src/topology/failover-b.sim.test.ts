// Failover on the simulated cluster, second half of the faults (failover.sim.test.ts has the first).
import { failoverFaults } from '../cluster/failover-workload.js';
import { failoverSimCases } from './failover-sim-cases.js';

failoverSimCases(failoverFaults.slice(Math.ceil(failoverFaults.length / 2)));
