// Runs one site node as a process: real Env, SQLite store on disk, HTTP server on the site's URL.
// Shuts down cleanly on SIGTERM/SIGINT: stop accepting, finish in-flight requests, commit queued
// writes, close the database.
import { closeSync, existsSync, fdatasync, fstatSync, openSync, statSync, writeSync } from 'node:fs';
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
   * so that crashes land between a commit and its sync. `clockSkewMs` shifts the site's wall clock.
   * `syncedWalFile`: the WAL is neither preallocated nor checkpointed (it only grows), and after
   * every fdatasync the WAL size it covered is written to this file, so that a drill can emulate a
   * power loss by truncating the WAL to it after a SIGKILL (which alone keeps the page cache).
   * `ackBeforeSync` is a deliberately broken build for drill tests: every fdatasync reports success
   * at once and syncs in the background, so writes are acknowledged before they are durable.
   */
  faults?: { fsyncDelayMs?: number; clockSkewMs?: number; syncedWalFile?: string; ackBeforeSync?: boolean };
}

/**
 * The faults a site process is started with, from its environment: TANDEM_FAULT_FSYNC_DELAY_MS,
 * TANDEM_CLOCK_SKEW_MS, TANDEM_FAULT_SYNCED_WAL_FILE.
 */
export function faultsFromEnv(env: NodeJS.ProcessEnv): NonNullable<StartSiteOptions['faults']> {
  const faults: NonNullable<StartSiteOptions['faults']> = {};
  const raw = env['TANDEM_FAULT_FSYNC_DELAY_MS'];
  if (raw !== undefined && raw !== '') {
    const ms = Number(raw);
    if (!Number.isInteger(ms) || ms < 0 || ms > 600_000) throw new Error(`TANDEM_FAULT_FSYNC_DELAY_MS: expected an integer 0..600000 (ms), got "${raw}"`);
    faults.fsyncDelayMs = ms;
  }
  const skew = env['TANDEM_CLOCK_SKEW_MS'];
  if (skew !== undefined && skew !== '') {
    const ms = Number(skew);
    if (!Number.isInteger(ms) || Math.abs(ms) > 86_400_000) throw new Error(`TANDEM_CLOCK_SKEW_MS: expected an integer -86400000..86400000 (ms), got "${skew}"`);
    faults.clockSkewMs = ms;
  }
  const walFile = env['TANDEM_FAULT_SYNCED_WAL_FILE'];
  if (walFile !== undefined && walFile !== '') faults.syncedWalFile = walFile;
  if (env['TANDEM_FAULT_ACK_BEFORE_SYNC'] === '1') faults.ackBeforeSync = true;
  return faults;
}

/**
 * Wraps the WAL fdatasync so that, once it succeeds, the WAL size it covered (taken before it
 * started, as the store does) is written to `path`: one small write per group commit, only under
 * this fault knob. The file starts with the WAL's size at open (what is on disk after a restart).
 */
function publishingSyncedWal(
  dbPath: string,
  path: string,
  inner: (fd: number, done: (error: NodeJS.ErrnoException | null) => void) => void,
): (fd: number, done: (error: NodeJS.ErrnoException | null) => void) => void {
  const out = openSync(path, 'w');
  let published = -1;
  const publish = (bytes: number) => {
    if (bytes <= published) return;
    published = bytes;
    const text = Buffer.from(String(bytes).padEnd(20, ' '));
    writeSync(out, text, 0, text.byteLength, 0);
  };
  publish(existsSync(`${dbPath}-wal`) ? statSync(`${dbPath}-wal`).size : 0);
  process.once('exit', () => closeSync(out));
  return (fd, done) => {
    const bytes = fstatSync(fd).size;
    inner(fd, (error) => {
      if (error === null) publish(bytes);
      done(error);
    });
  };
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
  const env = realEnv(realLogger({ site: siteId }), options.faults?.clockSkewMs ? { wallClockSkewMs: options.faults.clockSkewMs } : {});
  if (options.faults?.clockSkewMs) env.log.warn({ clockSkewMs: options.faults.clockSkewMs }, 'fault injected: the wall clock is skewed');
  const metrics = new SiteMetrics({ defaultMetrics: true });
  const dbPath = join(options.dataDir, siteId, 'store.db');
  const walFile = options.faults?.syncedWalFile;
  if (walFile !== undefined) env.log.warn({ syncedWalFile: walFile }, 'fault knob: WAL not preallocated nor checkpointed; synced WAL size published');
  let sync = options.faults?.fsyncDelayMs ? delayedFdatasync(env, options.faults.fsyncDelayMs) : undefined;
  if (walFile !== undefined) sync = publishingSyncedWal(dbPath, walFile, sync ?? fdatasync);
  if (options.faults?.ackBeforeSync) {
    env.log.warn({}, 'fault injected (a broken build): writes are acknowledged before their fdatasync');
    const real = sync ?? fdatasync;
    sync = (fd, done) => {
      real(fd, () => {});
      done(null);
    };
  }
  const store = new SqliteStore({
    path: dbPath,
    siteId,
    wallMs: () => env.clock.wallMs(),
    conflictEntriesMax: limits.conflictFeedEntriesMax,
    ...(walFile !== undefined ? { walAutoCheckpointPages: 0, preallocateWal: false } : {}),
    ...(sync !== undefined ? { fdatasync: sync } : {}),
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
