// Read-your-writes across sites: a session token from a write at one site makes a read at another
// wait until that site has the write; during a partition the bounded wait ends unserved.
import { describe, expect, it } from 'vitest';
import { SimCluster } from '../cluster/sim-cluster.js';
import { dominates } from '../core/vector.js';
import { decodeSession, encodeSession } from './session.js';

describe('session consistency across sites (simulation)', () => {
  it('a read at another site waits for the session, and gives up during a partition', async () => {
    const cluster = await SimCluster.create({ seed: 11, sites: 3, network: { oneWayDelayMsMean: 40 } });
    try {
      const { world } = cluster;
      await world.runFor(500);
      const east = cluster.site('us-east')!.node;
      const west = cluster.site('eu-west')!.node;
      const written = cluster.write('us-east', 'profiles', 'me', { op: 'put', value: { v: 1 } });
      await world.runUntil(() => east.vector()[east.origin] === 1, { timeoutMs: 1_000 });
      const outcome = await written;
      const token = decodeSession(encodeSession({ v: outcome.record.state.c, w: [] })).v;

      // right after the write eu-west has not got it yet; the session read waits until it has
      expect(dominates(west.vector(), token)).toBe(false);
      let served: boolean | undefined;
      void west.waitForSession(token, 2_000).then((ok) => (served = ok));
      await world.runUntil(() => served !== undefined, { timeoutMs: 3_000 });
      expect(served).toBe(true);
      expect((await west.get(west.table('profiles'), 'me'))?.value).toEqual({ v: 1 });

      // cut off from the writer, a later session write cannot reach eu-west: the wait is bounded
      world.network.partition({ kind: 'isolate-site', site: 'eu-west' });
      const second = await (async () => {
        const p = cluster.write('us-east', 'profiles', 'me', { op: 'put', value: { v: 2 } });
        await world.runFor(50);
        return p;
      })();
      let servedDuringPartition: boolean | undefined;
      void west.waitForSession(second.record.state.c, 500).then((ok) => (servedDuringPartition = ok));
      await world.runUntil(() => servedDuringPartition !== undefined, { timeoutMs: 2_000 });
      expect(servedDuringPartition).toBe(false);
      world.network.heal();
      await world.runUntil(() => cluster.converged(), { timeoutMs: 10_000 });
      expect(await west.waitForSession(second.record.state.c, 0)).toBe(true);
    } finally {
      await cluster.stop();
    }
  });
});
