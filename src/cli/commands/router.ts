// `tandem router --config FILE [--id ID]` runs one router; `tandem dial SITE PERCENT` turns a
// router's traffic dial for a site (0 drains it: in-flight requests finish, new ones go elsewhere).
import type { Command } from 'commander';
import pino from 'pino';
import { request } from 'undici';
import { loadConfigFile } from '../../config/load.js';
import { siteIdPattern } from '../../config/schema.js';
import type { Logger } from '../../platform/env.js';
import { realClock, realRandom, realTimers, realTransport } from '../../platform/real/real-env.js';
import { startRouter } from '../../router/index.js';
import { UsageError } from '../usage.js';

/** Logs go to stderr: stdout carries only the endpoint lines that `tandem up` reads. */
function stderrLogger(): Logger {
  return pino({ level: process.env.TANDEM_LOG_LEVEL ?? 'info', base: { component: 'router' } }, pino.destination(2)) as unknown as Logger;
}

export function registerRouterCommands(program: Command): void {
  program
    .command('router')
    .description('Run one router instance: HTTP proxy and (if configured) authoritative DNS.')
    .requiredOption('--config <file>', 'cluster config file (YAML or JSON)')
    .option('--id <id>', 'this router instance’s id, in status and metrics', 'router')
    .action(async (opts: { config: string; id: string }) => {
      if (!siteIdPattern.test(opts.id)) throw new UsageError(`--id: expected [a-z0-9-]{1,32}, got "${opts.id}"`);
      const config = loadConfigFile(opts.config);
      const transport = realTransport();
      const env = { clock: realClock, timers: realTimers, random: realRandom, transport, log: stderrLogger() };
      const running = await startRouter(config, { env, id: opts.id });
      process.stdout.write(`router ${running.url}\n`);
      if (running.dnsAddress !== undefined)
        process.stdout.write(`dns udp+tcp ${running.dnsAddress.host}:${running.dnsAddress.port} zone ${running.dnsZone}\n`);
      const shutdown = () => {
        void running
          .stop()
          .then(() => transport.close())
          .then(
            () => process.exit(0),
            (e: unknown) => {
              process.stderr.write(`tandem router: shutdown failed: ${String(e)}\n`);
              process.exit(1);
            },
          );
      };
      process.once('SIGTERM', shutdown);
      process.once('SIGINT', shutdown);
    });

  program
    .command('dial')
    .description('Set a router’s traffic dial for a site: 0 drains it, 100 gives it its full share.')
    .argument('<site>', 'site id')
    .argument('<percent>', 'share of its traffic the site keeps, 0..100')
    .option('--url <url>', 'router URL', 'http://127.0.0.1:7100')
    .option('--token <token>', 'router admin token (default: $TANDEM_ROUTER_TOKEN)')
    .action(async (site: string, percentText: string, opts: { url: string; token?: string }) => {
      if (!siteIdPattern.test(site)) throw new UsageError(`SITE: expected a site id [a-z0-9-]{1,32}, got "${site}"`);
      const percent = Number(percentText);
      if (percentText.trim() === '' || !Number.isFinite(percent) || percent < 0 || percent > 100)
        throw new UsageError(`PERCENT: expected a number from 0 to 100, got "${percentText}"`);
      let base: URL;
      try {
        base = new URL(opts.url);
      } catch {
        throw new UsageError(`--url: expected a URL, got "${opts.url}"`);
      }
      const token = opts.token ?? process.env.TANDEM_ROUTER_TOKEN;
      let res: Awaited<ReturnType<typeof request>>;
      try {
        res = await request(new URL(`/_tandem/router/dials/${encodeURIComponent(site)}`, base), {
          method: 'PUT',
          headers: { 'content-type': 'application/json', ...(token === undefined ? {} : { authorization: `Bearer ${token}` }) },
          body: JSON.stringify({ percent }),
        });
      } catch (err) {
        process.stderr.write(`tandem dial: cannot reach the router at ${opts.url}: ${(err as Error).message}\n`);
        process.exitCode = 1;
        return;
      }
      const text = await res.body.text();
      if (res.statusCode !== 200) {
        let detail = text;
        try {
          detail = (JSON.parse(text) as { detail?: string }).detail ?? text;
        } catch {
          // not JSON: print as is
        }
        process.stderr.write(`tandem dial: ${res.statusCode} ${detail}\n`);
        process.exitCode = 1;
        return;
      }
      process.stdout.write(`${site} dial ${percent}%\n`);
    });
}
