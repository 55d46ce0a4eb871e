// A site's continuous backup (config `backup`), wired to its node, store, metrics and log
// compaction. Started once the site may number writes (its origin is confirmed), so a rolled-back
// disk never writes into the archive of the origin it left.
import { isAbsolute, join, resolve, dirname } from 'node:path';
import { Gauge, Counter } from 'prom-client';
import { ContinuousBackup, defaultBackupSettings } from '../backup/continuous-backup.js';
import { loadKeyring } from '../backup/keyring.js';
import { ObjectEncoder } from '../backup/object-format.js';
import { openTarget } from '../backup/targets/target.js';
import type { Env } from '../platform/env.js';
import type { SiteMetrics } from './metrics.js';
import type { SiteNode } from './site-node.js';

export interface SiteBackup {
  backup: ContinuousBackup;
  start(): void;
  stop(): Promise<void>;
}

/** Backup interval knobs from the environment, for tests and benchmarks (TANDEM_BACKUP_SEGMENT_MS). */
function settingsFromEnv(): Partial<typeof defaultBackupSettings> {
  const seg = process.env['TANDEM_BACKUP_SEGMENT_MS'];
  return seg !== undefined && /^\d+$/.test(seg) ? { segmentIntervalMs: Math.max(10, Number(seg)) } : {};
}

export function siteBackup(node: SiteNode, env: Env, metrics: SiteMetrics, context: { siteDir: string; configPath?: string }): SiteBackup | undefined {
  const config = node.config.backup;
  if (config === undefined) return undefined;
  const keyPath = config.encryptionKeyFile;
  const base = context.configPath !== undefined ? dirname(resolve(context.configPath)) : process.cwd();
  const keyring = keyPath === undefined ? undefined : loadKeyring(isAbsolute(keyPath) ? keyPath : join(base, keyPath));
  let newestAtMs = 0;
  new Gauge({
    name: 'tandem_backup_newest_restorable_age_seconds',
    help: 'Age of the newest restore point shipped to the backup target, s (-1: none yet)',
    registers: [metrics.registry],
    collect() {
      this.set(newestAtMs === 0 ? -1 : (env.clock.wallMs() - newestAtMs) / 1000);
    },
  });
  const errors = new Counter({ name: 'tandem_backup_errors_total', help: 'Backup uploads that failed (retried)', labelNames: ['kind'] as const, registers: [metrics.registry] });
  const held = new Gauge({ name: 'tandem_backup_held_bytes', help: 'Own log bytes held back from compaction until archived', registers: [metrics.registry] });
  const encoder = new ObjectEncoder();
  const backup = new ContinuousBackup({
    env,
    store: node.store,
    origin: () => node.origin,
    ready: () => node.originConfirmed,
    target: openTarget(config.target),
    cluster: node.config.cluster,
    siteId: node.siteId,
    stagingDir: join(context.siteDir, 'backup-staging'),
    ...(keyring ? { keyring } : {}),
    settings: {
      ...defaultBackupSettings,
      snapshotEveryMs: config.snapshotEvery,
      retentionMs: config.retention.days * 86_400_000,
      maxHoldBytes: config.maxHoldBytes,
      maxHoldMs: config.maxHoldMs,
      ...settingsFromEnv(),
    },
    encode: (req) => encoder.encode(req),
    metrics: {
      restorable: (atMs) => (newestAtMs = atMs),
      error: (kind) => errors.inc({ kind }),
      heldBytes: (bytes) => held.set(bytes),
    },
  });
  const unsubscribe = node.onChangeOutsideLog((why) => backup.requestSnapshot(why));
  return {
    backup,
    start: () => backup.run(),
    async stop() {
      unsubscribe();
      await backup.stop();
      await encoder.close();
    },
  };
}
