// `tandem rewind --table T [--prefix P] --to-time T [--overwrite] [--dry-run] [--json]`,
// `tandem rewind --resume ID`, `tandem rewind --undo ID`: a table or key range back to a closed
// second, in place, cluster-wide, by new writes (backup/rewind.ts). Prints what it changed and
// what it skipped (with both values); exit 1 if a key failed or a site does not cover the writes.
import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Command } from 'commander';
import { BackupError } from '../../backup/errors.js';
import { planRewind, readJournal, runRewind, undoRewind, type RewindDeps, type RewindSummary } from '../../backup/rewind.js';
import { parseTime } from '../../backup/time.js';
import { realEnv, realLogger } from '../../platform/real/real-env.js';
import { openRestoredStore } from '../../site/restored-store.js';
import { backupContext, failed, terminalProgress } from '../backup-common.js';
import { UsageError } from '../usage.js';

interface RewindOpts {
  config: string;
  table?: string;
  prefix?: string;
  toTime?: string;
  overwrite?: boolean;
  dryRun?: boolean;
  resume?: string;
  undo?: string;
  site?: string;
  journalDir: string;
  target?: string;
  keyFile?: string;
  json?: boolean;
}

function print(summary: RewindSummary, json: boolean): void {
  if (json) {
    process.stdout.write(`${JSON.stringify({ ok: summary.errors.length === 0 && (summary.dryRun || summary.done), ...summary })}\n`);
    return;
  }
  const lines = [
    `rewind ${summary.id}: ${summary.table}${summary.prefix ? ` prefix "${summary.prefix}"` : ''} to ${summary.toTime} (cut ${JSON.stringify(summary.cut)}) at ${summary.executingSite}${summary.dryRun ? ' — dry run, nothing written' : ''}`,
    `  ${Object.entries(summary.counts).map(([c, n]) => `${c} ${n}`).join(', ')}; ${summary.dryRun ? 'would write' : 'written'} ${summary.dryRun ? summary.skipped.filter((s) => s.class === 'deleted-after').length : summary.written}`,
  ];
  const shown = summary.skipped.slice(0, 50);
  if (shown.length > 0) lines.push(`  ${summary.dryRun ? 'would change or skip' : 'skipped (changed or created after T; --overwrite reverts them)'}:`);
  for (const s of shown) lines.push(`    ${s.key} [${s.class}] now ${JSON.stringify(s.now)} at T ${JSON.stringify(s.atT)}`);
  if (summary.skipped.length > shown.length) lines.push(`    … and ${summary.skipped.length - shown.length} more (--json lists all)`);
  for (const e of summary.errors.slice(0, 20)) lines.push(`  FAILED ${e.key}: ${e.error}`);
  if (!summary.dryRun) lines.push(summary.done ? `  done: every site (${summary.coveredBy.join(', ')}) covers the rewind's writes` : `  not done: ${summary.notCoveredBy.join(', ') || 'some keys failed'}; continue with --resume ${summary.id}`);
  process.stdout.write(`${lines.join('\n')}\n`);
}

export function registerRewindCommand(program: Command): void {
  program
    .command('rewind')
    .description('Rewind a table (or a key prefix) to a closed second, in place, cluster-wide, by new writes.')
    .requiredOption('--config <file>', 'cluster config file (sites, tables, backup)')
    .option('--table <table>', 'the table to rewind')
    .option('--prefix <prefix>', 'only keys starting with this prefix', '')
    .option('--to-time <time>', 'ISO 8601 (2026-12-02T12:00:05Z) or relative (-10m)')
    .option('--overwrite', 'also revert keys changed or created after T (default: skipped and listed)')
    .option('--dry-run', 'print what it would change; write nothing')
    .option('--resume <id>', 'continue an interrupted rewind')
    .option('--undo <id>', 'revert the keys whose latest write is still that rewind\'s')
    .option('--site <id>', 'the executing site (default: the first site that answers)')
    .option('--journal-dir <dir>', 'where rewind journals are kept', '.tandem/rewind')
    .option('--target <url>', 'backup target (default: the config\'s backup.target)')
    .option('--key-file <file>', 'encryption key file (default: the config\'s backup.encryptionKeyFile)')
    .option('--json', 'print a JSON summary')
    .action(async (opts: RewindOpts) => {
      const ctx = backupContext(opts);
      const modes = [opts.table !== undefined, opts.resume !== undefined, opts.undo !== undefined].filter(Boolean).length;
      if (modes !== 1) throw new UsageError('give one of --table (with --to-time), --resume ID or --undo ID');
      if (opts.table !== undefined && ctx.config.tables[opts.table] === undefined)
        throw new UsageError(`--table: ${opts.table} is not a table of ${opts.config} (tables: ${Object.keys(ctx.config.tables).join(', ')})`);
      if (opts.table !== undefined && opts.toTime === undefined) throw new UsageError('--to-time: required with --table');
      if (opts.site !== undefined && !ctx.config.sites.some((s) => s.id === opts.site)) throw new UsageError(`--site: ${opts.site} is not a site of ${opts.config}`);
      const env = realEnv(realLogger({}, 'silent'));
      const json = opts.json ?? false;
      const progress = terminalProgress(json);
      const deps: RewindDeps = {
        env,
        target: ctx.target,
        keyring: ctx.keyring,
        cluster: ctx.config.cluster,
        sites: ctx.config.sites.map((s) => ({ id: s.id, url: s.url })),
        journalDir: opts.journalDir,
        scratchDir: mkdtempSync(join(tmpdir(), 'tandem-rewind-')),
        open: (path, site) => openRestoredStore(ctx.config, site, path),
        ...(progress ? { progress } : {}),
      };
      try {
        let summary: RewindSummary;
        if (opts.resume !== undefined) summary = await runRewind(deps, readJournal(opts.journalDir, opts.resume));
        else if (opts.undo !== undefined) summary = await undoRewind(deps, readJournal(opts.journalDir, opts.undo));
        else {
          let toTimeMs: number;
          try {
            toTimeMs = parseTime('--to-time', opts.toTime!, env.clock.wallMs());
          } catch (e) {
            throw new UsageError((e as BackupError).message);
          }
          const id = `rw-${new Date(env.clock.wallMs()).toISOString().replace(/[-:]/g, '').slice(0, 15)}-${randomBytes(3).toString('hex')}`;
          const journal = await planRewind(deps, { id, table: opts.table!, prefix: opts.prefix ?? '', toTimeMs, overwrite: opts.overwrite ?? false, dryRun: opts.dryRun ?? false, ...(opts.site ? { executingSite: opts.site } : {}) });
          summary = await runRewind(deps, journal);
        }
        print(summary, json);
        if (summary.errors.length > 0 || (!summary.dryRun && !summary.done)) process.exit(1);
      } catch (e) {
        failed(e, json);
      } finally {
        await env.close();
      }
    });
}
