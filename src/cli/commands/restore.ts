// `tandem restore --site ID --to-time T --data-dir DIR [--rejoin] [--json]`: rebuilds one site's
// store as of a second into a new data directory, detached (read-only, no peering: `tandem site`
// on it serves reads only). `--rejoin` (then, or later on the same directory) lets it rejoin the
// cluster when the old site is down or removed and every peer still has the log the restored store
// needs (each peer's logFloor ≤ its vector): it takes a new incarnation and catches up by log.
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { Command } from 'commander';
import { request } from 'undici';
import { BackupError } from '../../backup/errors.js';
import { detachedMarker, restoreSite, storePathOf } from '../../backup/restore-site.js';
import { parseTime } from '../../backup/time.js';
import type { ClusterConfig } from '../../config/schema.js';
import { dominates, type VersionVector } from '../../core/vector.js';
import { limits } from '../../limits.js';
import { realClock } from '../../platform/real/real-env.js';
import { openRestoredStore } from '../../site/restored-store.js';
import { SqliteStore } from '../../store/sqlite/sqlite-store.js';
import { backupContext, failed, terminalProgress } from '../backup-common.js';
import { UsageError } from '../usage.js';

async function statusOf(url: string): Promise<{ logFloor?: VersionVector; vector: VersionVector } | undefined> {
  try {
    const res = await request(`${url}/v1/status`, { headersTimeout: 2_000, bodyTimeout: 2_000 });
    if (res.statusCode !== 200) {
      await res.body.dump();
      return undefined;
    }
    return (await res.body.json()) as { logFloor?: VersionVector; vector: VersionVector };
  } catch {
    return undefined;
  }
}

/** Rejoin: the design's conditions, then a new incarnation; returns the new origin. */
async function rejoin(config: ClusterConfig, site: string, dataDir: string): Promise<{ origin: string; reasons: string[] }> {
  const markerPath = join(dataDir, site, detachedMarker);
  if (!existsSync(markerPath)) throw new BackupError('refused', `${dataDir} holds no detached restore of site ${site} (${markerPath} is missing)`);
  const reasons: string[] = [];
  const self = config.sites.find((s) => s.id === site)!;
  if ((await statusOf(self.url)) !== undefined) reasons.push(`the old ${site} still answers at ${self.url}: it must be down or removed first`);
  const store = new SqliteStore({ path: storePathOf(dataDir, site), siteId: site, wallMs: () => realClock.wallMs(), conflictEntriesMax: limits.conflictFeedEntriesMax });
  await store.open();
  try {
    const vector = store.vector();
    for (const peer of config.sites.filter((s) => s.id !== site)) {
      const st = await statusOf(peer.url);
      if (st === undefined) reasons.push(`peer ${peer.id} does not answer at ${peer.url}: cannot tell whether it still has the log this store needs`);
      else if (st.logFloor !== undefined && !dominates(vector, st.logFloor)) reasons.push(`peer ${peer.id} compacted its log past the restored vector (logFloor ${JSON.stringify(st.logFloor)}): this store cannot catch up by log; bootstrap it from a peer instead`);
    }
    if (reasons.length > 0) return { origin: '', reasons };
    const id = await store.takeNewIncarnation();
    rmSync(markerPath);
    return { origin: id.origin, reasons };
  } finally {
    await store.close();
  }
}

export function registerRestoreCommand(program: Command): void {
  program
    .command('restore')
    .description('Rebuild one site\'s store as of a second into a new data directory (detached until --rejoin).')
    .requiredOption('--config <file>', 'cluster config file (sites, tables, backup)')
    .requiredOption('--site <id>', 'the site to restore')
    .option('--to-time <time>', 'ISO 8601 (2026-12-02T12:00:05Z) or relative (-10m); default: the newest point')
    .requiredOption('--data-dir <dir>', 'a new data directory for the restored store')
    .option('--rejoin', 'let the restored site rejoin the cluster (old site down or removed, peers still hold the log it needs)')
    .option('--target <url>', 'backup target (default: the config\'s backup.target)')
    .option('--key-file <file>', 'encryption key file (default: the config\'s backup.encryptionKeyFile)')
    .option('--json', 'print a JSON summary (vector and digests of the restored store)')
    .action(async (opts: { config: string; site: string; toTime?: string; dataDir: string; rejoin?: boolean; target?: string; keyFile?: string; json?: boolean }) => {
      const ctx = backupContext(opts);
      if (!ctx.config.sites.some((s) => s.id === opts.site))
        throw new UsageError(`--site: ${opts.site} is not a site of ${opts.config} (sites: ${ctx.config.sites.map((s) => s.id).join(', ')})`);
      let toTimeMs: number;
      try {
        toTimeMs = opts.toTime === undefined ? 8.64e15 : parseTime('--to-time', opts.toTime, realClock.wallMs());
      } catch (e) {
        throw new UsageError((e as Error).message);
      }
      const json = opts.json ?? false;
      try {
        const alreadyRestored = existsSync(join(opts.dataDir, opts.site, detachedMarker)) && opts.rejoin;
        let summary: Record<string, unknown> = {};
        if (!alreadyRestored) {
          const progress = terminalProgress(json);
          summary = {
            ...(await restoreSite({
              target: ctx.target,
              keyring: ctx.keyring,
              cluster: ctx.config.cluster,
              site: opts.site,
              toTimeMs,
              dataDir: opts.dataDir,
              open: (path) => openRestoredStore(ctx.config, opts.site, path),
              nowMs: () => realClock.wallMs(),
              ...(progress ? { progress } : {}),
            })),
          };
        } else {
          summary = { site: opts.site, dataDir: opts.dataDir, ...JSON.parse(readFileSync(join(opts.dataDir, opts.site, detachedMarker), 'utf8')) };
        }
        if (opts.rejoin) {
          const r = await rejoin(ctx.config, opts.site, opts.dataDir);
          if (r.reasons.length > 0) {
            const out = { ok: false, ...summary, detached: true, rejoin: { refused: r.reasons } };
            if (json) process.stdout.write(`${JSON.stringify(out)}\n`);
            else process.stderr.write(`tandem restore: restored, but --rejoin was refused:\n  ${r.reasons.join('\n  ')}\n`);
            process.exit(1);
          }
          summary = { ...summary, detached: false, rejoin: { origin: r.origin } };
        }
        if (json) process.stdout.write(`${JSON.stringify({ ok: true, ...summary })}\n`);
        else {
          const s = summary as { site: string; pointAt?: string; entriesReplayed?: number; ms?: number; detached: boolean; skipped?: string[] };
          process.stdout.write(
            `restored ${s.site} as of ${s.pointAt ?? '(earlier restore)'} into ${opts.dataDir}` +
              (s.entriesReplayed !== undefined ? ` (${s.entriesReplayed} log entries replayed, ${s.ms} ms); digests match the restore point` : '') +
              '\n' +
              (s.skipped && s.skipped.length > 0 ? `newer points were incomplete and skipped:\n  ${s.skipped.join('\n  ')}\n` : '') +
              (s.detached
                ? `detached: \`tandem site --site ${s.site} --data-dir ${opts.dataDir}\` serves it read-only with no peering; --rejoin to let it rejoin\n`
                : `rejoined with a new incarnation; start \`tandem site --site ${s.site} --data-dir ${opts.dataDir}\` to catch up\n`),
          );
        }
      } catch (e) {
        failed(e, json);
      }
    });
}
