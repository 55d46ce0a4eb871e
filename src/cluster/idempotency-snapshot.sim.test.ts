// A site rebuilt from a peer's snapshot knows the Idempotency-Keys of the writes the snapshot holds:
// the snapshot carries them, so a repeat at the rebuilt site answers the first answer and writes
// nothing, although that site never had the first write's log entry.
import { describe, expect, it } from 'vitest';
import { withSeed } from '../platform/sim/index.js';
import { SimCluster } from './sim-cluster.js';

describe('Idempotency-Keys through a snapshot bootstrap (simulation)', () => {
  it('a wiped site that bootstraps from a snapshot answers a repeat of a keyed increment with its first answer', async () => {
    await withSeed(11, async (seed) => {
      const cluster = await SimCluster.create({ seed, sites: 3 });
      try {
        const { world } = cluster;
        await world.runFor(500);
        const increment = { op: 'patch' as const, patch: { increment: { n: 5 } } };
        const first = cluster.write('us-east', 'counters', 'c', increment, { idempotencyKey: 'pay-17' });
        await world.runFor(50);
        const answer = await first;
        expect('replayed' in answer).toBe(false);
        // enough later writes that every log is compacted past the keyed entry
        for (let i = 0; i < 30; i++) {
          const w = cluster.write(['us-east', 'eu-west'][i % 2]!, 'profiles', `later-${i}`, { op: 'put', value: { i } });
          await world.runFor(20);
          await w;
        }
        await world.runUntil(() => cluster.converged(), { timeoutMs: 30_000 });
        await world.runFor(3_000);

        await cluster.wipe('ap-south');
        await cluster.start('ap-south');
        await world.runUntil(() => cluster.converged(), { timeoutMs: 60_000 });
        const south = cluster.site('ap-south')!.node;
        // it came back through a snapshot: its log starts after the keyed entry
        const dot = answer.dot.split(':');
        expect(south.store.logFloor()[dot[0]!]).toBeGreaterThanOrEqual(Number(dot[1]));
        const vector = south.vector();
        const repeat = cluster.write('ap-south', 'counters', 'c', increment, { idempotencyKey: 'pay-17' });
        await world.runFor(50);
        expect(await repeat).toMatchObject({ replayed: true, dot: answer.dot });
        expect(south.vector()).toEqual(vector);
        expect((await south.get(south.table('counters'), 'c'))?.value).toMatchObject({ n: 5 });
      } finally {
        await cluster.stop();
      }
    });
  });
});
