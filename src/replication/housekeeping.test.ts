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

function harness(mine: VersionVector, ack: AckMessage, archivedUpTo?: (origin: string) => number | undefined) {
  const purges: VersionVector[] = [];
  const compactions: VersionVector[] = [];
  const idempotencyTrims: [number, number][] = [];
  const store = {
    trimConflicts: async () => 0,
    trimIdempotencyKeys: async (olderThanMs: number, limit: number) => {
      idempotencyTrims.push([olderThanMs, limit]);
      return 0;
    },
    sync: async () => ({ ...mine }),
    logFloor: () => ({}),
    compactLog: async (upTo: VersionVector) => {
      compactions.push(upTo);
      return 0;
    },
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
    ...(archivedUpTo ? { archivedUpTo } : {}),
  });
  return { housekeeping, purges, compactions, mine, idempotencyTrims };
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

describe('log compaction and the backup archive', () => {
  it('compacts own entries no further than the archive has them; other origins by acks alone', async () => {
    const ack: AckMessage = { v: 1, site: 'eu-west', vector: { 'us-east.1': 50, 'eu-west.1': 40 }, origin: 'eu-west.1', ownSeq: 40 };
    let archived: number | undefined = 20;
    const h = harness({ 'us-east.1': 50, 'eu-west.1': 40 }, ack, (origin) => (origin === 'us-east.1' ? archived : undefined));
    await h.housekeeping.runOnce();
    expect(h.compactions).toEqual([{ 'us-east.1': 20, 'eu-west.1': 40 }]);
    // past its hold bound the archive lets go: acks alone decide
    archived = undefined;
    await h.housekeeping.runOnce();
    expect(h.compactions[1]).toEqual({ 'us-east.1': 50, 'eu-west.1': 40 });
  });
});
