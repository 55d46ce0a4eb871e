// Builds an in-process site (fastify app + node over a temp SQLite store) for tests.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { demoConfig } from '../config/demo.js';
import type { ClusterConfig } from '../config/schema.js';
import { realClock, realNextTurn, realRandom, realTimers, realTransport } from '../platform/real/real-env.js';
import { silentLogger, type Env } from '../platform/env.js';
import { SqliteStore, type SqliteStoreOptions } from '../store/sqlite/sqlite-store.js';
import { buildSiteServer } from './http-server.js';
import { SiteMetrics } from './metrics.js';
import { SiteNode } from './site-node.js';

export async function inProcessSite(
  options: { config?: ClusterConfig; siteId?: string; dataDir?: string; store?: Pick<SqliteStoreOptions, 'fdatasync' | 'onFatal'> } = {},
): Promise<{
  app: FastifyInstance;
  node: SiteNode;
  dataDir: string;
  close(): Promise<void>;
}> {
  const config = options.config ?? demoConfig({ sites: 3, basePort: 7100 });
  const siteId = options.siteId ?? config.sites[0]!.id;
  const dataDir = options.dataDir ?? mkdtempSync(join(tmpdir(), 'tandem-site-'));
  const transport = realTransport();
  const env: Env = { clock: realClock, timers: realTimers, random: realRandom, transport, log: silentLogger };
  const store = new SqliteStore({ path: join(dataDir, 'store.db'), siteId, wallMs: () => env.clock.wallMs(), conflictEntriesMax: 1000, ...options.store });
  const metrics = new SiteMetrics();
  const node = new SiteNode({ env, config, siteId, store, nextTurn: realNextTurn, metrics });
  await node.start();
  const app = buildSiteServer({ env, node, metrics, sessionWaitMs: 50 });
  await app.ready();
  return {
    app,
    node,
    dataDir,
    async close() {
      await app.close();
      await node.stop();
      await transport.close();
    },
  };
}
