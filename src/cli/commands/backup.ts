// `tandem backup now|list|verify [--site ID]` (CONTRACT.md, "Backups"):
//   now     asks each site (or one) for a snapshot and a segment now, through its HTTP API;
//   list    the timelines in the target: snapshots, segments, the span of restore points;
//   verify  reads every object (checksum, chain, tags), restores each site's newest point into a
//           scratch directory and compares digests; exit 1 naming the first missing or corrupt object.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Command } from 'commander';
import { request } from 'undici';
import { readCatalog } from '../../backup/catalog.js';
import { verifyBackup } from '../../backup/verify.js';
import { hlcFromHex, hlcMs } from '../../core/hlc.js';
import { openRestoredStore } from '../../site/restored-store.js';
import { realClock } from '../../platform/real/real-env.js';
import { backupContext, failed, terminalProgress } from '../backup-common.js';
import { UsageError } from '../usage.js';

interface CommonOpts {
  config: string;
  site?: string;
  target?: string;
  keyFile?: string;
  json?: boolean;
}

function withCommon(cmd: Command): Command {
  return cmd
    .requiredOption('--config <file>', 'cluster config file (sites, tables, backup)')
    .option('--site <id>', 'only this site')
    .option('--target <url>', 'backup target (default: the config\'s backup.target)')
    .option('--key-file <file>', 'encryption key file (default: the config\'s backup.encryptionKeyFile)')
    .option('--json', 'print a JSON summary');
}

function checkSite(ctx: ReturnType<typeof backupContext>, site: string | undefined, configPath: string): void {
  if (site !== undefined && !ctx.config.sites.some((s) => s.id === site))
    throw new UsageError(`--site: ${site} is not a site of ${configPath} (sites: ${ctx.config.sites.map((s) => s.id).join(', ')})`);
}

export function registerBackupCommands(program: Command): void {
  const backup = program.command('backup').description('Continuous backups: take one now, list them, verify them.');

  withCommon(backup.command('now').description('A snapshot and a log segment now, at every site (or one); waits until both are stored.')).action(async (opts: CommonOpts) => {
    const ctx = backupContext(opts);
    checkSite(ctx, opts.site, opts.config);
    const sites = ctx.config.sites.filter((s) => opts.site === undefined || s.id === opts.site);
    const results: Record<string, unknown> = {};
    let ok = true;
    for (const s of sites) {
      try {
        const res = await request(`${s.url}/v1/backup/now`, { method: 'POST', headersTimeout: 600_000, bodyTimeout: 600_000 });
        const body = (await res.body.json()) as Record<string, unknown>;
        results[s.id] = res.statusCode === 200 ? body : { error: body['detail'] ?? `HTTP ${res.statusCode}` };
        if (res.statusCode !== 200) ok = false;
      } catch (e) {
        results[s.id] = { error: `unreachable: ${(e as Error).message}` };
        ok = false;
      }
    }
    if (opts.json) process.stdout.write(`${JSON.stringify({ ok, sites: results })}\n`);
    else for (const [id, r] of Object.entries(results)) process.stdout.write(`${id}: ${JSON.stringify(r)}\n`);
    if (!ok) process.exit(1);
  });

  withCommon(backup.command('list').description('The backup timelines in the target: snapshots, segments, restore points.')).action(async (opts: CommonOpts) => {
    const ctx = backupContext(opts);
    checkSite(ctx, opts.site, opts.config);
    let timelines;
    try {
      timelines = await readCatalog(ctx.target, ctx.config.cluster, opts.site);
    } catch (e) {
      failed(e, opts.json ?? false);
    }
    const rows = timelines.map((t) => {
      const points = t.segs.filter((s) => s.header.boundary !== undefined);
      const at = (i: number) => (points[i] ? new Date(hlcMs(hlcFromHex(points[i].header.boundary!.maxHlc))).toISOString() : null);
      return {
        site: t.site,
        incarnation: t.incarnation,
        origin: t.origin,
        snapshots: t.snaps.length,
        segments: t.segs.length,
        bytes: [...t.snaps, ...t.segs].reduce((n, o) => n + o.size, 0),
        oldestPoint: at(0),
        newestPoint: at(points.length - 1),
        gaps: t.segs.filter((s) => s.header.gap !== undefined).map((s) => ({ segment: s.name, ...s.header.gap })),
      };
    });
    if (opts.json) process.stdout.write(`${JSON.stringify({ target: ctx.target.url, timelines: rows })}\n`);
    else {
      if (rows.length === 0) process.stdout.write(`no backups under ${ctx.config.cluster}/ at ${ctx.target.url}\n`);
      for (const r of rows)
        process.stdout.write(`${r.site}/${r.incarnation}  snapshots ${r.snapshots}  segments ${r.segments}  ${(r.bytes / 1e6).toFixed(1)} MB  points ${r.oldestPoint ?? '-'} .. ${r.newestPoint ?? '-'}${r.gaps.length ? `  GAPS ${r.gaps.length}` : ''}\n`);
    }
  });

  withCommon(backup.command('verify').description('Check every object and restore the newest point into a scratch directory; exit 1 naming the first bad object.'))
    .option('--scratch-dir <dir>', 'where the test restore goes (default: a temporary directory)')
    .action(async (opts: CommonOpts & { scratchDir?: string }) => {
      const ctx = backupContext(opts);
      checkSite(ctx, opts.site, opts.config);
      const progress = terminalProgress(opts.json ?? false);
      try {
        const summary = await verifyBackup({
          target: ctx.target,
          keyring: ctx.keyring,
          cluster: ctx.config.cluster,
          ...(opts.site !== undefined ? { site: opts.site } : {}),
          scratchDir: opts.scratchDir ?? mkdtempSync(join(tmpdir(), 'tandem-verify-')),
          open: (path, site) => openRestoredStore(ctx.config, site, path),
          nowMs: () => realClock.wallMs(),
          ...(progress ? { progress } : {}),
        });
        if (opts.json) process.stdout.write(`${JSON.stringify({ ok: true, ...summary })}\n`);
        else {
          process.stdout.write(`verified ${summary.objects} objects (${(summary.bytes / 1e6).toFixed(1)} MB)\n`);
          for (const r of summary.restored) process.stdout.write(`${r.site}: newest point ${r.pointAt} restored, digests match (${r.entriesReplayed} entries replayed)\n`);
        }
      } catch (e) {
        failed(e, opts.json ?? false);
      }
    });
}
