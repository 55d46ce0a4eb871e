// The vitest body shared by the replication simulation files.
import { describe, expect, it } from 'vitest';
import { seedsToRun, withSeed } from '../platform/sim/index.js';
import { runReplicationScenario } from './replication-workload.js';

export function replicationSeedsSuite(firstSeed: number, count: number): void {
  const seeds = seedsToRun(Array.from({ length: Number(process.env.SIM_SEEDS ?? count) }, (_, i) => firstSeed + i));
  describe('replication under faults (simulation)', () => {
    it(`converges with no lost acknowledged write over ${seeds.length} seeds from ${seeds[0]}`, async () => {
      let acked = 0;
      for (const seed of seeds) {
        const result = await withSeed(seed, async () => {
          const r = await runReplicationScenario(seed);
          expect(r.digestsEqual, `digests differ after convergence; replay: SEED=${seed}`).toBe(true);
          expect(r.anomalies, `replay: SEED=${seed}`).toEqual([]);
          return r;
        });
        acked += result.acked;
      }
      expect(acked).toBeGreaterThan(seeds.length * 10);
    }, 600_000);
  });
}
