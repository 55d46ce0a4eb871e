// Tombstone GC waits until this site holds everything each member held when it acknowledged:
// every origin, not only the member's current one.
import { describe, expect, it } from 'vitest';
import type { VersionVector } from '../core/vector.js';
import { silentLogger, type Env } from '../platform/env.js';
import { limits } from '../limits.js';
import { Housekeeping } from './housekeeping.js';
import type { AckMessage } from './protocol.js';
import type { ReplicaNode } from './replica-node.js';

const wallMs = 1_800_000_000_000;

function harness(mine: VersionVector, ack: AckMessage) {
  const purges: VersionVector[] = [];
  const idempotencyTrims: [number, number][] = [];
  const store = {
    trimConflicts: async () => 0,
    trimIdempotencyKeys: async (olderThanMs: number, limit: number) => {
      idempotencyTrims.push([olderThanMs, limit]);
      return 0;
    },
    sync: async () => ({ ...mine }),
    logFloor: () => ({}),
    compactLog: async () => 0,
    purgeTombstones: async (floor: VersionVector) => {
      purges.push(floor);
      return 0;
    },
  };
  const env = { log: silentLogger, clock: { wallMs: () => wallMs, monotonicMs: () => 0 }, timers: { after: () => ({ cancel() {} }), sleep: async () => {} } } as unknown as Env;
  const housekeeping = new Housekeeping({
    env,
    node: { store } as unknown as ReplicaNode,
    members: () => ['eu-west'],
    acks: () => new Map([['eu-west', ack]]),
    intervalMs: 1000,
    logRetainEntries: 0,
  });
  return { housekeeping, purges, mine, idempotencyTrims };
}

describe('tombstone GC', () => {
  it('does not purge while a member held entries of an earlier incarnation that this site lacks', async () => {
    // eu-west was reborn (origin eu-west.2); it still holds writes of its earlier origin eu-west.1
    // that this site has not received: one of them may be concurrent with a delete
    const ack: AckMessage = { v: 1, site: 'eu-west', vector: { 'us-east.1': 5, 'eu-west.2': 3, 'eu-west.1': 7 }, origin: 'eu-west.2', ownSeq: 3 };
    const h = harness({ 'us-east.1': 5, 'eu-west.2': 3, 'eu-west.1': 6 }, ack);
    await h.housekeeping.runOnce();
    await h.housekeeping.runOnce();
    expect(h.purges).toEqual([]);
    // once it has them, the checkpoint's floor is purged
    h.mine['eu-west.1'] = 7;
    await h.housekeeping.runOnce();
    expect(h.purges).toEqual([{ 'us-east.1': 5, 'eu-west.2': 3, 'eu-west.1': 6 }]);
  });
});

describe('Idempotency-Key retention', () => {
  it('each pass drops a bounded number of keys indexed more than idempotencyKeyRetentionMs (24 h) ago, whatever the acks', async () => {
    const h = harness({}, { v: 1, site: 'eu-west', vector: {}, origin: 'eu-west.1', ownSeq: 0 });
    await h.housekeeping.runOnce();
    expect(h.idempotencyTrims).toEqual([[wallMs - 24 * 3600 * 1000, limits.idempotencyKeysTrimMax]]);
  });
});
