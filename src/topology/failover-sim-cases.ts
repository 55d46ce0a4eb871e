// The failover simulation cases, shared by failover.sim.test.ts and failover-b.sim.test.ts: each
// fault runs 15 seeds (1000 + 100 × its index + 0..14): 165 in all; SEED=<n> replays one.
import { describe, expect, it } from 'vitest';
import { failoverFaults, runFailoverScenario, type FailoverFault } from '../cluster/failover-workload.js';
import { seedsToRun } from '../platform/sim/index.js';

const seedsPerFault = 15;

export function failoverSimCases(faults: readonly FailoverFault[]): void {
  describe('failover (simulation)', () => {
    for (const fault of faults)
      it(`${fault}: one owner at a time, no acknowledged quorum write lost, no local write voided`, async () => {
        for (const seed of seedsToRun(Array.from({ length: seedsPerFault }, (_, i) => 1_000 + failoverFaults.indexOf(fault) * 100 + i))) {
          const r = await runFailoverScenario(seed, { fault });
          expect(r.anomalies, `replay: SEED=${seed} npx vitest run src/topology/failover -t ${fault}`).toEqual([]);
          expect(r.ackedQuorum).toBeGreaterThan(0);
        }
      });
  });
}
