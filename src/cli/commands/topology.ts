// The operator commands that move ownership (CONTRACT.md, "Commands" and "Topology"):
// `tandem failover`, `tandem switchover`, `tandem evacuate`, `tandem failback`, and
// `tandem witness` (a voting member with no data). They reach the cluster through `--config FILE`
// (the sites' URLs) or `--url URL` of any site, send `Authorization: Bearer $TANDEM_ADMIN_TOKEN`,
// answer in words or `--json`, and exit 1 when the action was refused, naming every reason.
import type { Command } from 'commander';
import { request } from 'undici';
import { loadConfigFile } from '../../config/load.js';
import { startWitness } from '../../site/run-witness.js';
import { UsageError } from '../usage.js';

interface ActionAnswer {
  ok: boolean;
  dryRun?: boolean;
  epoch: number;
  plan?: { unit: string; from: string | null; to: string }[];
  checks?: { name: string; ok: boolean; detail: string }[];
  refused?: string[];
  detail?: string;
  /** failover --force: what the forced epoch does and risks */
  forced?: boolean;
  forcedEpoch?: number;
  down?: string[];
  votersAfter?: string[];
  cut?: { origin: string; seq: number }[];
  dropped?: { origin: string; site: string; cutSeq: number; heardSeq?: number }[];
  risk?: string;
}

interface Target {
  config?: string;
  url?: string;
  json?: boolean;
  why?: string;
}

function siteUrls(opts: Target): string[] {
  if (opts.url !== undefined) return [opts.url.replace(/\/$/, '')];
  if (opts.config !== undefined) return loadConfigFile(opts.config).sites.map((s) => s.url);
  throw new UsageError('give --config FILE (the sites\' URLs) or --url URL of any site');
}

/** POSTs the action to the first site that answers; the site runs it (and the readiness checks). */
async function postAction(opts: Target, path: string, body: Record<string, unknown>, method: 'POST' | 'DELETE' = 'POST'): Promise<ActionAnswer> {
  const token = process.env['TANDEM_ADMIN_TOKEN'];
  const errors: string[] = [];
  for (const url of siteUrls(opts)) {
    try {
      const res = await request(`${url}${path}`, {
        method,
        headers: { 'content-type': 'application/json', 'tandem-operator': process.env['USER'] ?? 'operator', ...(token ? { authorization: `Bearer ${token}` } : {}) },
        body: JSON.stringify({ ...body, ...(opts.why ? { why: opts.why } : {}) }),
        headersTimeout: 60_000,
        bodyTimeout: 60_000,
      });
      const text = await res.body.text();
      if (res.statusCode === 401 || res.statusCode === 400 || res.statusCode === 404) {
        const problem = JSON.parse(text) as { detail?: string };
        return { ok: false, epoch: -1, refused: [problem.detail ?? `answered ${res.statusCode}`] };
      }
      if (res.statusCode !== 200 && res.statusCode !== 409) {
        errors.push(`${url}: answered ${res.statusCode}`);
        continue;
      }
      return JSON.parse(text) as ActionAnswer;
    } catch (e) {
      errors.push(`${url}: ${(e as Error).message}`);
    }
  }
  return { ok: false, epoch: -1, refused: [`no site answered (${errors.join('; ')})`] };
}

function report(action: string, answer: ActionAnswer, json: boolean | undefined): void {
  if (json) process.stdout.write(`${JSON.stringify(answer, null, 2)}\n`);
  else {
    const lines: string[] = [];
    for (const m of answer.plan ?? []) lines.push(`  ${m.unit}: ${m.from ?? '(no owner)'} -> ${m.to}`);
    for (const c of answer.checks ?? []) lines.push(`  [${c.ok ? 'ok' : 'FAIL'}] ${c.name}: ${c.detail}`);
    if (answer.forced) lines.push(...forcedLines(answer));
    if (answer.detail) lines.push(`  ${answer.detail}`);
    const head = !answer.ok
      ? `${action} refused:\n${(answer.refused ?? []).map((r) => `  - ${r}`).join('\n')}`
      : answer.dryRun
        ? `${action} (dry run): would be allowed; nothing changed`
        : `${action} done: topology epoch ${answer.epoch}`;
    process.stdout.write(`${head}\n${lines.join('\n')}\n`);
  }
  if (!answer.ok) process.exitCode = 1;
}

/** The forced epoch in words: who goes down, who votes after, the cut it lowers, what may be dropped, the risk. */
function forcedLines(a: ActionAnswer): string[] {
  const lines: string[] = [];
  if (a.forcedEpoch !== undefined) lines.push(`  forced epoch ${a.forcedEpoch}: marks down ${a.down?.join(', ') || '(none)'}; voters after: ${a.votersAfter?.join(', ') || '(none)'}`);
  if (a.cut !== undefined) lines.push(`  cut (pointwise max of the durable vectors of the data sites that answered): ${a.cut.map((c) => `${c.origin}:${c.seq}`).join(' ') || '(empty)'}`);
  for (const d of a.dropped ?? [])
    lines.push(
      d.heardSeq !== undefined
        ? `  MAY DROP ${d.origin} (${d.site}): seqs ${d.cutSeq + 1}..${d.heardSeq} were heard of but are held by no site that answered, and anything later; owned writes beyond ${d.cutSeq} become void`
        : `  ${d.origin} (${d.site}): owned writes beyond ${d.cutSeq} become void (none heard of by the sites that answered)`,
    );
  if (a.risk) lines.push(`  ${a.risk}`);
  return lines;
}

export function registerTopologyCommands(program: Command): void {
  const withTarget = (cmd: Command) =>
    cmd
      .option('--config <file>', 'cluster config: reach the sites at their configured URLs')
      .option('--url <url>', 'any site node of the cluster')
      .option('--why <text>', 'the reason, kept in the topology history')
      .option('--json', 'print JSON');

  withTarget(
    program
      .command('failover')
      .description('Move the ownership of a table, or of everything a failed site owns, now (unplanned path: the old lease must expire first).')
      .option('--table <name>', 'a global or partitioned table')
      .option('--site <id>', 'every unit this site owns')
      .option('--to <id>', 'the new owner (default: the table\'s failoverOrder)')
      .option('--force', 'without a majority of voters: marks the members that do not answer down and moves ownership anyway (split-brain risk; lowers the cut). Needs --confirm')
      .option('--confirm <cluster>', 'with --force: the cluster\'s name, typed, to confirm the risk printed by --force --dry-run')
      .option('--dry-run', 'print the readiness checks and the plan (with --force: the cut, what may be dropped, the risk); change nothing'),
  ).action(async (opts: Target & { table?: string; site?: string; to?: string; force?: boolean; confirm?: string; dryRun?: boolean }) => {
    if ((opts.table === undefined) === (opts.site === undefined)) throw new UsageError('give exactly one of --table or --site');
    if (opts.confirm !== undefined && !opts.force) throw new UsageError('--confirm: only with --force');
    if (opts.force && !opts.dryRun && opts.confirm === undefined)
      throw new UsageError(
        '--force needs --confirm <cluster name>: a forced epoch risks two owners (split brain) if the members that do not answer are alive elsewhere, and drops the owned writes its cut cannot see. Run it with --dry-run first to see both.',
      );
    const answer = await postAction(opts, '/v1/admin/failover', {
      ...(opts.table ? { table: opts.table } : {}),
      ...(opts.site ? { site: opts.site } : {}),
      ...(opts.to ? { to: opts.to } : {}),
      dryRun: opts.dryRun === true,
      ...(opts.force ? { force: true, ...(opts.confirm !== undefined ? { confirm: opts.confirm } : {}) } : {}),
    });
    report(opts.force ? 'failover --force' : 'failover', answer, opts.json);
  });

  withTarget(
    program
      .command('switchover')
      .description('Planned handover of a table with RPO 0 while writes continue (writes wait, then go to the new owner).')
      .requiredOption('--table <name>', 'a global or partitioned table')
      .requiredOption('--to <id>', 'the new owner')
      .option('--dry-run', 'print the readiness checks and the plan; change nothing'),
  ).action(async (opts: Target & { table: string; to: string; dryRun?: boolean }) => {
    report('switchover', await postAction(opts, '/v1/admin/switchover', { table: opts.table, to: opts.to, dryRun: opts.dryRun === true }), opts.json);
  });

  withTarget(
    program
      .command('evacuate <site>')
      .description('Drain a site: its ownerships move away by switchover, its /ready fails so routers stop sending it traffic; it keeps replicating.')
      .option('--dry-run', 'print the readiness checks and the plan; change nothing'),
  ).action(async (site: string, opts: Target & { dryRun?: boolean }) => {
    report('evacuate', await postAction(opts, '/v1/admin/evacuate', { site, dryRun: opts.dryRun === true }), opts.json);
  });

  withTarget(
    program
      .command('failback <site>')
      .description('Give back what a site owned in the config once it is caught up (and serve traffic again).')
      .option('--dry-run', 'print the readiness checks and the plan; change nothing'),
  ).action(async (site: string, opts: Target & { dryRun?: boolean }) => {
    report('failback', await postAction(opts, '/v1/admin/failback', { site, dryRun: opts.dryRun === true }), opts.json);
  });

  const members = program.command('members').description('Grow or shrink the cluster online (a new site joins, then becomes active once caught up; a removed site gets a final cut).');
  members
    .command('add <id>')
    .description('Add a data site: it is registered as joining (no vote, no quorum ack) until it has caught up; then start it with a config that lists it.')
    .requiredOption('--url <url>', 'where the new site node listens and peers reach it')
    .option('--region <region>', 'region label of the new site')
    .option('--config <file>', 'cluster config: reach the sites at their configured URLs')
    .option('--site-url <url>', 'any site node of the cluster (--url names the new site here); also TANDEM_URL')
    .option('--why <text>', 'the reason, kept in the topology history')
    .option('--json', 'print JSON')
    .option('--dry-run', 'print the checks; change nothing')
    .action(async (id: string, opts: { url: string; region?: string; config?: string; siteUrl?: string; why?: string; json?: boolean; dryRun?: boolean }) => {
      const via = opts.siteUrl ?? process.env['TANDEM_URL'];
      if (via === undefined && opts.config === undefined) throw new UsageError('members add: give --config FILE (the sites\' URLs) or --site-url URL of any site to reach the cluster');
      const target: Target = { ...(via !== undefined ? { url: via } : { config: opts.config! }), ...(opts.json ? { json: true } : {}), ...(opts.why ? { why: opts.why } : {}) };
      const answer = await postAction(target, '/v1/admin/members', { id, url: opts.url, ...(opts.region ? { region: opts.region } : {}), dryRun: opts.dryRun === true });
      report(`members add ${id}`, answer, opts.json);
    });
  withTarget(
    members
      .command('remove <id>')
      .description('Remove a site (it must own nothing: evacuate it first): its origins get a final cut, it stops gating GC and compaction.')
      .option('--dry-run', 'print the checks; change nothing'),
  ).action(async (id: string, opts: Target & { dryRun?: boolean }) => {
    report(`members remove ${id}`, await postAction(opts, `/v1/admin/members/${encodeURIComponent(id)}`, { dryRun: opts.dryRun === true }, 'DELETE'), opts.json);
  });

  program
    .command('witness')
    .description('A voting member with no data: two data sites and a witness keep a majority when one site fails.')
    .requiredOption('--config <file>', 'cluster config file (YAML or JSON)')
    .requiredOption('--id <id>', 'which witness of the config this is')
    .option('--data-dir <dir>', 'where the witness keeps its state', '.tandem')
    .action(async (opts: { config: string; id: string; dataDir: string }) => {
      const config = loadConfigFile(opts.config);
      if (!config.witnesses.some((w) => w.id === opts.id))
        throw new UsageError(`--id: ${opts.id} is not a witness of ${opts.config} (witnesses: ${config.witnesses.map((w) => w.id).join(', ') || 'none'})`);
      const running = await startWitness({ config, id: opts.id, dataDir: opts.dataDir });
      process.stdout.write(`witness ${opts.id} ${running.url}\n`);
      const shutdown = () => void running.stop().then(() => process.exit(0), () => process.exit(1));
      process.once('SIGTERM', shutdown);
      process.once('SIGINT', shutdown);
    });
}
