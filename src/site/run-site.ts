// Runs one site node as a process: real Env, SQLite store on disk, HTTP server on the site's URL.
// Shuts down cleanly on SIGTERM/SIGINT: stop accepting, finish in-flight requests, commit queued
// writes, close the database.
import { fdatasync } from 'node:fs';
import { join } from 'node:path';
import type { ClusterConfig } from '../config/schema.js';
import { limits } from '../limits.js';
import { realEnv, realLogger, realNextTurn } from '../platform/real/real-env.js';
import { SqliteStore } from '../store/sqlite/sqlite-store.js';
import { buildSiteServer, type SiteServerHooks } from './http-server.js';
import { SiteMetrics } from './metrics.js';
import { SiteNode } from './site-node.js';

export interface RunningSite {
  url: string;
  node: SiteNode;
  stop(): Promise<void>;
}

export interface StartSiteOptions {
  config: ClusterConfig;
  siteId: string;
  dataDir: string;
  configPath?: string;
  /** wires replication etc. onto the node; returns the server hooks and a stop function */
  extend?: (
    node: SiteNode,
    env: ReturnType<typeof realEnv>,
    metrics: SiteMetrics,
    context: { siteDir: string; configPath?: string },
  ) => { hooks: SiteServerHooks; start(): void; stop(): Promise<void> };
  /**
   * The store failed for good (its write-ahead log could not be synced): the site acknowledges no
   * more writes, and the caller should end the process so that a restart recovers from the disk.
   */
  onFatal?: (error: Error) => void;
  /**
   * Faults injected on purpose (drills, tests): `fsyncDelayMs` holds every WAL fdatasync this long,
   * so that crashes land between a commit and its sync.
   */
  faults?: { fsyncDelayMs?: number };
}

/** The faults a site process is started with, from its environment (TANDEM_FAULT_FSYNC_DELAY_MS). */
export function faultsFromEnv(env: NodeJS.ProcessEnv): NonNullable<StartSiteOptions['faults']> {
  const raw = env['TANDEM_FAULT_FSYNC_DELAY_MS'];
  if (raw === undefined || raw === '') return {};
  const ms = Number(raw);
  if (!Number.isInteger(ms) || ms < 0 || ms > 600_000) throw new Error(`TANDEM_FAULT_FSYNC_DELAY_MS: expected an integer 0..600000 (ms), got "${raw}"`);
  return { fsyncDelayMs: ms };
}

function delayedFdatasync(env: ReturnType<typeof realEnv>, delayMs: number): (fd: number, done: (error: NodeJS.ErrnoException | null) => void) => void {
  env.log.warn({ fsyncDelayMs: delayMs }, 'fault injected: every WAL fdatasync is held back');
  return (fd, done) => {
    env.timers.after(delayMs, () => fdatasync(fd, done));
  };
}

export async function startSite(options: StartSiteOptions): Promise<RunningSite> {
  const { config, siteId } = options;
  const site = config.sites.find((s) => s.id === siteId);
  if (!site) throw new Error(`site ${siteId} is not in the config (sites: ${config.sites.map((s) => s.id).join(', ')})`);
  const env = realEnv(realLogger({ site: siteId }));
  const metrics = new SiteMetrics({ defaultMetrics: true });
  const store = new SqliteStore({
    path: join(options.dataDir, siteId, 'store.db'),
    siteId,
    wallMs: () => env.clock.wallMs(),
    conflictEntriesMax: limits.conflictFeedEntriesMax,
    ...(options.faults?.fsyncDelayMs ? { fdatasync: delayedFdatasync(env, options.faults.fsyncDelayMs) } : {}),
    onFatal: (error) => {
      env.log.error({ err: error }, 'store failed: no more writes are acknowledged; restart the site');
      options.onFatal?.(error);
    },
  });
  const node = new SiteNode({ env, config, siteId, store, nextTurn: realNextTurn, metrics, ...(options.configPath ? { configPath: options.configPath } : {}) });
  await node.start();
  const extension = options.extend?.(node, env, metrics, { siteDir: join(options.dataDir, siteId), ...(options.configPath ? { configPath: options.configPath } : {}) });
  const app = buildSiteServer({ env, node, metrics, ...(extension ? { hooks: extension.hooks } : {}) });
  const url = new URL(site.url);
  await app.listen({ host: url.hostname, port: Number(url.port || 80) });
  extension?.start();
  let stopping: Promise<void> | undefined;
  return {
    url: site.url,
    node,
    stop() {
      stopping ??= (async () => {
        await extension?.stop();
        const closed = app.close();
        const bounded = env.timers.sleep(limits.shutdownDrainMsMax);
        await Promise.race([closed, bounded]);
        await node.stop();
        await env.close();
      })();
      return stopping;
    },
  };
}
