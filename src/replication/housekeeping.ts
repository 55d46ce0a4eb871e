// Housekeeping of a site's replicated state, on a schedule:
// - log compaction: entries every current member has acknowledged are dropped (a member behind
//   the compacted log later bootstraps from a snapshot);
// - tombstone GC by causal stability (ARCHITECTURE.md, "Tombstones"): a checkpoint records, per
//   member Y, the vector Y acknowledged. Once this site has everything each Y had then (every
//   origin, Y's own and any other), no write concurrent with a delete that all members had
//   seen by the checkpoint can still arrive, so tombstones covered by every checkpoint vector are
//   purged, and the GC floor (their common context) becomes the context of writes to missing keys.
//   The naive rule "every vector covers the tombstone" is not used: it resurrects data.
// - the conflict feed's age bound, and the Idempotency-Keys' retention.
// Members that have not acknowledged anything since this site started hold everything back.
import { dominates, type VersionVector } from '../core/vector.js';
import type { Env } from '../platform/env.js';
import { Periodic } from '../platform/periodic.js';
import { limits } from '../limits.js';
import type { AckMessage } from './protocol.js';
import type { ReplicaNode } from './replica-node.js';

interface Checkpoint {
  acks: Map<string, AckMessage>;
  mine: VersionVector;
}

export interface HousekeepingOptions {
  env: Env;
  node: ReplicaNode;
  /** the other data sites that are current members */
  members: () => string[];
  acks: () => ReadonlyMap<string, AckMessage>;
  intervalMs: number;
  /** keep this many entries per origin beyond what all members have (for late readers, backups) */
  logRetainEntries: number;
  /**
   * The backup archive: how far compaction may go for an origin (this site's own entries are kept
   * until archived, within the backup's hold bound); undefined when it does not hold that origin.
   */
  archivedUpTo?: (origin: string) => number | undefined;
}

export class Housekeeping {
  readonly id = 'housekeeping';
  private checkpoint: Checkpoint | undefined;
  private readonly schedule: Periodic;

  constructor(private readonly options: HousekeepingOptions) {
    this.schedule = new Periodic(options.env.timers, options.env.log, this.id, options.intervalMs, () => this.runOnce());
  }

  run(): void {
    this.schedule.start();
  }

  stop(): Promise<void> {
    return this.schedule.stop();
  }

  async runOnce(): Promise<{ compacted: number; purged: number }> {
    const store = this.options.node.store;
    await store.trimConflicts(this.options.env.clock.wallMs() - limits.conflictFeedAgeMsMax);
    await store.trimIdempotencyKeys(this.options.env.clock.wallMs() - limits.idempotencyKeyRetentionMs, limits.idempotencyKeysTrimMax);
    const acks = this.options.acks();
    const members = this.options.members();
    if (!members.every((m) => acks.has(m))) return { compacted: 0, purged: 0 };
    // what this site holds durably (peers' entries may be applied and not yet synced)
    const mine = await store.sync();

    // Log compaction: what every member (and this site) has, less a retained tail.
    const upTo: VersionVector = {};
    for (const [origin, seq] of Object.entries(mine)) {
      let min = seq;
      for (const m of members) min = Math.min(min, acks.get(m)!.vector[origin] ?? 0);
      const archived = this.options.archivedUpTo?.(origin);
      if (archived !== undefined) min = Math.min(min, archived);
      const keep = min - this.options.logRetainEntries;
      if (keep > (store.logFloor()[origin] ?? 0)) upTo[origin] = keep;
    }
    const compacted = Object.keys(upTo).length > 0 ? await store.compactLog(upTo) : 0;

    // Tombstone GC, checkpoint by checkpoint.
    let purged = 0;
    const cp = this.checkpoint;
    // Every member's whole acknowledged vector, not only its current origin's seq: a write
    // concurrent with a delete may come from any origin a member held then (a reborn site's
    // earlier incarnation, a removed member), and must be here before the delete's tombstone goes.
    if (cp && members.every((m) => cp.acks.has(m) && dominates(mine, cp.acks.get(m)!.vector))) {
      const floor: VersionVector = {};
      for (const [origin, seq] of Object.entries(cp.mine)) {
        let min = seq;
        for (const m of members) min = Math.min(min, cp.acks.get(m)!.vector[origin] ?? 0);
        if (min > 0) floor[origin] = min;
      }
      purged = await store.purgeTombstones(floor, 10_000);
      this.checkpoint = undefined;
    }
    if (!this.checkpoint) this.checkpoint = { acks: new Map(acks), mine };
    return { compacted, purged };
  }
}
