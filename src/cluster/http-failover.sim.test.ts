// Failover through the real HTTP layer on the simulated cluster (cluster/http-workload.ts): owner
// crash, isolation, a pause longer than the lease and a planned switchover under load, with clients
// that forward, retry keyed increments at other sites and read their own writes back in sessions.
// Checked: no session read goes back in time unless answered 410 session-lost, no acknowledged
// quorum write lost, no keyed increment counted twice or lost, never a 500. More seeds:
// `SEED=<n> npx vitest run src/cluster/http-failover.sim.test.ts -t <fault>` replays one.
import { describe, expect, it } from 'vitest';
import { httpFaults, runHttpScenario, type HttpFault } from './http-workload.js';
import { seedsToRun } from '../platform/sim/index.js';

const seedsPerFault = 1;
// the faults of the file (a few seconds of CPU): the others (one-way, switchover-partition) run in sweeps
const faults: HttpFault[] = ['crash', 'isolate', 'pause', 'switchover'];

describe('failover through the HTTP layer (simulation)', () => {
  for (const fault of faults)
    it(`${fault}: sessions never go back unreported, acknowledged writes stay, keyed increments count once, no 500`, async () => {
      for (const seed of seedsToRun(Array.from({ length: seedsPerFault }, (_, i) => 2_000 + httpFaults.indexOf(fault) * 100 + i))) {
        const r = await runHttpScenario(seed, { fault, sessionClients: 3, loadIntervalMs: 50 });
        const replay = `replay: SEED=${seed} npx vitest run src/cluster/http-failover.sim.test.ts -t ${fault}`;
        expect(r.anomalies, replay).toEqual([]);
        // the scenario did what it is for: writes acknowledged through forwards, session reads
        // served, keyed increments acknowledged, and the ledger written at its new owner after the fault
        expect(r.ackedQuorum, replay).toBeGreaterThan(20);
        expect(r.forwarded, replay).toBeGreaterThan(0);
        expect(r.sessionReadsServed, replay).toBeGreaterThan(10);
        expect(r.increments.acked, replay).toBeGreaterThan(0);
        expect(r.ackedAfterFault, replay).toBeGreaterThan(0);
      }
    }, 60_000);
});
