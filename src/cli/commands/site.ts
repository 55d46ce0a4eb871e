// `tandem site --config FILE --site ID [--data-dir DIR]`: one site node.
import type { Command } from 'commander';
import { loadConfigFile } from '../../config/load.js';
import { faultsFromEnv, startSite, type RunningSite } from '../../site/run-site.js';
import { UsageError } from '../usage.js';
import { siteExtension } from '../../site/extension.js';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { detachedMarker } from '../../backup/restore-site.js';

export function registerSiteCommand(program: Command): void {
  program
    .command('site')
    .description('Run one site node (production: one per site or machine).')
    .requiredOption('--config <file>', 'cluster config file (YAML or JSON)')
    .requiredOption('--site <id>', 'which site of the config this node is')
    .option('--data-dir <dir>', 'where the site keeps its data', '.tandem')
    .action(async (opts: { config: string; site: string; dataDir: string }) => {
      const config = loadConfigFile(opts.config);
      if (!config.sites.some((s) => s.id === opts.site))
        throw new UsageError(`--site: ${opts.site} is not a site of ${opts.config} (sites: ${config.sites.map((s) => s.id).join(', ')})`);
      let faults: ReturnType<typeof faultsFromEnv>;
      try {
        faults = faultsFromEnv(process.env);
      } catch (e) {
        throw new UsageError((e as Error).message);
      }
      const site: { running?: RunningSite } = {};
      // a restored store stays detached (read-only, no peering) until `tandem restore --rejoin`
      const detached = existsSync(join(opts.dataDir, opts.site, detachedMarker));
      const running = await startSite({
        config,
        siteId: opts.site,
        dataDir: opts.dataDir,
        configPath: opts.config,
        ...(detached ? {} : { extend: siteExtension }),
        faults,
        // Fail-stop: the store acknowledges nothing more. Stopping answers what is in flight (503),
        // then the exit code tells the supervisor; a restart recovers from what is on disk.
        onFatal: (error) => {
          process.stderr.write(`tandem site: ${error.message}\n`);
          void (site.running?.stop() ?? Promise.resolve()).finally(() => process.exit(1));
        },
      });
      site.running = running;
      process.stdout.write(`site ${opts.site} ${running.url}${detached ? ' (detached restore: read-only, no peering)' : ''}\n`);
      const shutdown = () => {
        void running.stop().then(
          () => process.exit(0),
          (e) => {
            process.stderr.write(`tandem site: shutdown failed: ${String(e)}\n`);
            process.exit(1);
          },
        );
      };
      process.once('SIGTERM', shutdown);
      process.once('SIGINT', shutdown);
    });
}
