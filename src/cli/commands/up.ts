// `tandem up`: a whole cluster on this machine (the demo config, or --config), until SIGINT/SIGTERM.
import { dirname, resolve } from 'node:path';
import type { Command } from 'commander';
import { loadConfigFile } from '../../config/load.js';
import { demoConfig } from '../../config/demo.js';
import { limits } from '../../limits.js';
import { LocalCluster } from '../../cluster/local-cluster.js';
import { intFlag } from '../usage.js';

export function registerUpCommand(program: Command): void {
  program
    .command('up')
    .description('Run a whole cluster on this machine: every site node and the router (HTTP and DNS).')
    .option('--config <file>', 'cluster config file (default: the built-in demo)')
    .option('--sites <n>', 'demo: number of sites', intFlag('--sites', 1, limits.sitesMax), 3)
    .option('--base-port <p>', 'demo: router port; site i listens on P+i, DNS on P+53', intFlag('--base-port', 1024, 65_000), 7100)
    .option('--data-dir <dir>', 'where the sites keep their data', '.tandem')
    .action(async (opts: { config?: string; sites: number; basePort: number; dataDir: string }) => {
      const config = opts.config ? loadConfigFile(opts.config) : demoConfig({ sites: opts.sites, basePort: opts.basePort });
      // the cluster's copy of the config lives in the data dir: make module paths absolute first
      for (const t of Object.values(config.tables)) if (t.merge !== undefined) t.merge = resolve(dirname(resolve(opts.config!)), t.merge);
      const cluster = new LocalCluster({
        config,
        dataDir: opts.dataDir,
        withRouter: true,
        onExit: (id, code, signal) => process.stderr.write(`tandem up: ${id} exited (${signal ?? code}); see ${opts.dataDir}/logs/${id}.log\n`),
      });
      let stopping = false;
      const shutdown = () => {
        if (stopping) return;
        stopping = true;
        process.stdout.write('stopping…\n');
        void cluster.stop().then(() => process.exit(0));
      };
      process.once('SIGINT', shutdown);
      process.once('SIGTERM', shutdown);
      try {
        await cluster.start();
      } catch (e) {
        process.stderr.write(`tandem up: ${(e as Error).message}\n`);
        await cluster.stop(2_000);
        process.exit(1);
      }
      for (const s of config.sites) process.stdout.write(`site ${s.id.padEnd(12)} ${s.url}\n`);
      process.stdout.write(`router       http://${config.router.listen}\n`);
      if (config.router.dns) process.stdout.write(`dns          ${config.router.dns.listen} (udp+tcp) ${config.router.dns.name}.${config.router.dns.zone}\n`);
      process.stdout.write(`data         ${opts.dataDir}  (logs in ${opts.dataDir}/logs)\n`);
    });
}
