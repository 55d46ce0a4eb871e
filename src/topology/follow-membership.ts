// Peers pick up membership changes without a restart: on every decided topology epoch (and once at
// start), the store's membership follows the record (joining/active/draining/evacuated/down →
// current, removed → removed: housekeeping, GC and compaction wait only for current members), and
// the replicator gains a puller, a peer URL and peer authentication for each member added online,
// or drops them for a removed one.
import type { Replicator } from '../replication/replicator.js';
import type { Store } from '../store/types.js';
import type { Logger } from '../platform/env.js';
import { storeMembership } from './members.js';
import type { Topology } from './record.js';
import type { TopologyService } from './topology-service.js';

export function followMembership(topology: TopologyService, store: Store, replicator: Replicator, log: Logger): () => void {
  let chain: Promise<void> = Promise.resolve();
  const follow = (rec: Topology) => {
    chain = chain
      .then(async () => {
        // only a newer epoch replaces the stored membership (setMembership refuses an older one)
        if (rec.epoch > store.membership().epoch) await store.setMembership(storeMembership(rec));
        for (const m of rec.members) {
          if (m.kind !== 'site' || m.id === topology.siteId) continue;
          if (m.state === 'removed') await replicator.removePeer(m.id);
          else if (m.url !== undefined) replicator.addPeer(m.id, m.url);
        }
      })
      .catch((e: unknown) => log.warn({ err: (e as Error).message, epoch: rec.epoch }, 'could not follow the topology\'s membership; the next epoch retries'));
  };
  follow(topology.record());
  return topology.onChange(follow);
}
