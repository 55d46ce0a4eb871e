// Membership online on the simulated cluster, under the failover workload's load and checks
// (cluster/failover-workload.ts, fault `members`): a fourth site is added mid-run (it joins empty,
// bootstraps from its peers and proposes itself active once caught up), then an original site is
// drained, evacuated and removed with a final cut. Checked: no acknowledged quorum write lost, no
// local write voided, one owner at a time, every site (the new one included) with equal digests,
// and the new site takes writes of its own partition (it owns the home units it brings).
import { describe, expect, it } from 'vitest';
import { runFailoverScenario } from '../cluster/failover-workload.js';
import { seedsToRun } from '../platform/sim/index.js';

describe('membership online (simulation)', () => {
  it('a site added and another removed mid-run: nothing acknowledged lost, digests equal at the end', async () => {
    for (const seed of seedsToRun([300, 301])) {
      const r = await runFailoverScenario(seed, { fault: 'members' });
      expect(r.anomalies, `replay: SEED=${seed} npx vitest run src/topology/members.sim`).toEqual([]);
      expect(r.ackedQuorum).toBeGreaterThan(0);
      expect(r.epochs).toBeGreaterThanOrEqual(6);
    }
  });
});
