// A store being rebuilt by a restore or read by a rewind: a site node over a SQLite file, with no
// HTTP and no peers, so that replayed entries are joined by each table's policy exactly as the
// site joined them.
import type { RestoredStore } from '../backup/restore-site.js';
import type { ClusterConfig } from '../config/schema.js';
import { limits } from '../limits.js';
import { silentLogger, type Env, type Logger } from '../platform/env.js';
import { realClock, realNextTurn, realRandom, realTimers } from '../platform/real/real-env.js';
import { SqliteStore } from '../store/sqlite/sqlite-store.js';
import { SiteNode } from './site-node.js';

const noNetwork: Env['transport'] = {
  request: () => Promise.reject(new Error('a restored store is detached: no network')),
};

export interface OpenedRestoredStore extends RestoredStore {
  node: SiteNode;
  store: SqliteStore;
}

export async function openRestoredStore(config: ClusterConfig, siteId: string, storePath: string, log: Logger = silentLogger): Promise<OpenedRestoredStore> {
  const env: Env = { clock: realClock, timers: realTimers, random: realRandom, transport: noNetwork, log };
  // a large page cache: replaying a log touches items all over a possibly large store
  const store = new SqliteStore({ path: storePath, siteId, wallMs: () => env.clock.wallMs(), conflictEntriesMax: limits.conflictFeedEntriesMax, cacheSizeKiB: 512 * 1024 });
  const node = new SiteNode({ env, config, siteId, store, nextTurn: realNextTurn });
  await node.start();
  return {
    node,
    store,
    applyRemote: (entries, raw) => node.applyRemote(entries, raw),
    vector: () => store.vector(),
    digests: async () => {
      await store.sync();
      return store.digests();
    },
    close: () => node.stop(),
  };
}
