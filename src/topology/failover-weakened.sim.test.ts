// The failover checks catch what they are for: with a rule weakened, the same scenarios fail.
//   - acknowledging under the lease checked at admission only (not again when the write became
//     acknowledgeable): a paused owner acknowledges after a new owner took over, writes that are void;
//   - installing a new owner without waiting for the old lease to expire at a majority: two owners.
import { describe, expect, it } from 'vitest';
import { runFailoverScenario, type FailoverAnomaly, type FailoverFault } from '../cluster/failover-workload.js';

/** The anomaly kinds over the seeds, stopping at the first seed that shows `wanted`. */
async function kindsOver(seeds: number[], fault: FailoverFault, weaken: { ackWithoutLeaseCheck?: boolean; noExpiryWait?: boolean }, wanted: FailoverAnomaly['kind']): Promise<Set<FailoverAnomaly['kind']>> {
  const kinds = new Set<FailoverAnomaly['kind']>();
  for (const seed of seeds) {
    for (const a of (await runFailoverScenario(seed, { fault, weaken })).anomalies) kinds.add(a.kind);
    if (kinds.has(wanted)) break;
  }
  return kinds;
}

describe('failover checks (simulation, weakened rules)', () => {
  it('a lease checked at admission only lets a paused owner acknowledge void writes after the cut', async () => {
    expect(await kindsOver([1, 2, 3, 4, 5, 6, 7, 8], 'pause', { ackWithoutLeaseCheck: true }, 'acked-after-cut')).toContain('acked-after-cut');
  });
  it('a new owner installed without waiting out the old lease admits while the old owner still does', async () => {
    expect(await kindsOver([1, 2, 3, 4], 'isolate-failover', { noExpiryWait: true }, 'two-owners')).toContain('two-owners');
  });
});
