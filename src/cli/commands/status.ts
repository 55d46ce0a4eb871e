// `tandem status`: the cluster at a glance, from the router's view (health, RTT, dial, share of
// requests) joined with each site node's own status (epoch, lag per link, vector size, digests).
import type { Command } from 'commander';
import { request } from 'undici';
import { loadConfigFile } from '../../config/load.js';
import { realTimers } from '../../platform/real/real-env.js';

interface RouterSiteView {
  healthy: boolean;
  state: string;
  rttMs: number | null;
  dial: number;
  share: number;
  target: string;
}

interface SiteStatus {
  site: string;
  epoch: number;
  vector: Record<string, number>;
  peers: Record<string, { connected: boolean; lagEntries: number; lagMs: number }>;
  digests: Record<string, string>;
}

async function getJson<T>(url: string): Promise<T | undefined> {
  try {
    const res = await request(url, { headersTimeout: 2_000, bodyTimeout: 2_000 });
    if (res.statusCode !== 200) {
      await res.body.dump();
      return undefined;
    }
    return (await res.body.json()) as T;
  } catch {
    return undefined;
  }
}

interface TopologyView {
  epoch: number;
  members: { id: string; kind: string; state: string }[];
  owners: Record<string, string | null>;
  homes: Record<string, Record<string, string | null>>;
  leases: Record<string, { validForMs: number }>;
  history: { epoch: number; action: string; by: string; why: string; atMs: number; detail?: string }[];
}

async function collect(routerUrl: string, siteUrls: Record<string, string> | undefined, history: boolean) {
  const router = await getJson<{ sites: Record<string, RouterSiteView> }>(`${routerUrl}/_tandem/router/status`);
  const urls = siteUrls ?? Object.fromEntries(Object.entries(router?.sites ?? {}).map(([id, s]) => [id, s.target]));
  const sites: Record<string, SiteStatus | undefined> = {};
  const topologies: Record<string, TopologyView | undefined> = {};
  await Promise.all(
    Object.entries(urls).map(async ([id, url]) => {
      sites[id] = await getJson<SiteStatus>(`${url}/v1/status`);
      topologies[id] = await getJson<TopologyView>(`${url}/v1/topology${history ? '?history' : ''}`);
    }),
  );
  // the newest epoch any site knows; leases as each holder reports its own
  const known = Object.values(topologies).filter((t): t is TopologyView => t !== undefined);
  const newest = known.sort((a, b) => b.epoch - a.epoch)[0];
  const leases: Record<string, { validForMs: number }> = {};
  for (const t of known) Object.assign(leases, t.leases);
  const topology = newest ? { ...newest, leases } : null;
  return { router: router ?? null, sites, topology };
}

function render(data: Awaited<ReturnType<typeof collect>>, showHistory: boolean): string {
  const ids = [...new Set([...Object.keys(data.router?.sites ?? {}), ...Object.keys(data.sites)])];
  const rows = [['site', 'router', 'rtt ms', 'dial', 'share', 'node', 'epoch', 'entries', 'max lag', 'links']];
  for (const id of ids) {
    const r = data.router?.sites[id];
    const s = data.sites[id];
    const links = s ? Object.entries(s.peers).map(([p, l]) => `${p}:${l.connected ? 'up' : 'DOWN'}/${l.lagEntries}`).join(' ') : '';
    const maxLag = s ? Math.max(0, ...Object.values(s.peers).map((l) => l.lagMs)) : 0;
    rows.push([
      id,
      r ? r.state : '-',
      r?.rttMs == null ? '-' : r.rttMs.toFixed(1),
      r ? `${r.dial}%` : '-',
      r ? `${Math.round(r.share * 100)}%` : '-',
      s ? 'up' : 'DOWN',
      s ? String(s.epoch) : '-',
      s ? String(Object.values(s.vector).reduce((a, b) => a + b, 0)) : '-',
      s ? `${maxLag} ms` : '-',
      links,
    ]);
  }
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  const lines = rows.map((r) => r.map((cell, c) => cell.padEnd(widths[c]!)).join('  ').trimEnd());
  const digestSets = new Set(Object.values(data.sites).filter(Boolean).map((s) => JSON.stringify(s!.digests)));
  lines.push('');
  if (!data.router) lines.push('router: unreachable');
  lines.push(digestSets.size <= 1 ? 'digests: equal on every reachable site' : 'digests: DIFFER (replication in progress or diverged)');
  const t = data.topology;
  if (t) {
    lines.push(`topology: epoch ${t.epoch}; members ${t.members.map((m) => `${m.id}${m.kind === 'witness' ? ' (witness)' : ''}: ${m.state}`).join(', ')}`);
    for (const [table, owner] of Object.entries(t.owners)) lines.push(`  ${table}: owner ${owner ?? '(moving)'}`);
    for (const [table, homes] of Object.entries(t.homes))
      lines.push(`  ${table}: ${Object.entries(homes).map(([p, o]) => `${p}→${o ?? '(moving)'}`).join(', ')}`);
    lines.push(`  leases: ${Object.entries(t.leases).map(([s, l]) => `${s} ${l.validForMs} ms`).join(', ') || 'none held'}`);
    if (showHistory) for (const h of t.history) lines.push(`  epoch ${h.epoch}: ${h.action}${h.detail ? ` (${h.detail})` : ''} by ${h.by}: ${h.why} at ${new Date(h.atMs).toISOString()}`);
  } else lines.push('topology: no site answered');
  return lines.join('\n');
}

export function registerStatusCommand(program: Command): void {
  program
    .command('status')
    .description('Sites, health, lag per link, topology epoch, owners.')
    .option('--url <url>', 'the router', 'http://127.0.0.1:7100')
    .option('--config <file>', 'cluster config: reach site nodes at their configured URLs (default: the router targets)')
    .option('--json', 'print JSON')
    .option('--watch', 'refresh every second until interrupted')
    .option('--history', 'every topology change: who, why, when')
    .action(async (opts: { url: string; config?: string; json?: boolean; watch?: boolean; history?: boolean }) => {
      const siteUrls = opts.config ? Object.fromEntries(loadConfigFile(opts.config).sites.map((s) => [s.id, s.url])) : undefined;
      for (;;) {
        const data = await collect(opts.url.replace(/\/$/, ''), siteUrls, opts.history === true);
        const text = opts.json ? JSON.stringify(data, null, 2) : render(data, opts.history === true);
        process.stdout.write(opts.watch ? `\x1b[2J\x1b[H${text}\n` : `${text}\n`);
        if (!opts.watch) {
          if (!data.router && Object.values(data.sites).every((s) => s === undefined)) process.exitCode = 1;
          return;
        }
        await realTimers.sleep(1_000);
      }
    });
}
