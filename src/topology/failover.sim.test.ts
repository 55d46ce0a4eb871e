// Failover on the simulated cluster: owner crash, isolation (both ways and one way), a pause longer
// than the lease, switchovers (one with a partition in the middle), voter restarts and clock drift,
// each checked from the history of every admitted write (cluster/failover-workload.ts). More seeds:
// `node dist/cluster/simulate-failover.js --seeds 1000`.
import { describe, expect, it } from 'vitest';
import { failoverFaults, runFailoverScenario } from '../cluster/failover-workload.js';
import { seedsToRun } from '../platform/sim/index.js';

describe('failover (simulation)', () => {
  for (const fault of failoverFaults)
    it(`${fault}: one owner at a time, no acknowledged quorum write lost, no local write voided`, async () => {
      for (const seed of seedsToRun([0, 1, 2, 3].map((i) => 100 + failoverFaults.indexOf(fault) * 10 + i))) {
        const r = await runFailoverScenario(seed, { fault });
        expect(r.anomalies, `replay: SEED=${seed} npx vitest run src/topology/failover.sim -t ${fault}`).toEqual([]);
        expect(r.ackedQuorum).toBeGreaterThan(0);
      }
    });
});
