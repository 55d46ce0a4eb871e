#!/usr/bin/env node
// The `tandem` command. Each subcommand lives in cli/commands/<name>.ts and registers itself here.
// Usage errors and bad config exit 2 with a message naming the flag or config path.
import { Command, CommanderError } from 'commander';
import { ConfigError } from '../config/load.js';
import { UsageError } from './usage.js';
import { registerSiteCommand } from './commands/site.js';
import { registerUpCommand } from './commands/up.js';
import { registerRouterCommands } from './commands/router.js';
import { registerStatusCommand } from './commands/status.js';
import { registerTopologyCommands } from './commands/topology.js';
import { registerDrillCommand } from './commands/drill.js';
import { registerBackupCommands } from './commands/backup.js';
import { registerRestoreCommand } from './commands/restore.js';
import { registerRewindCommand } from './commands/rewind.js';

const program = new Command();
program
  .name('tandem')
  .description('Run a service active-active in several sites at once.')
  .showHelpAfterError()
  .exitOverride();

registerUpCommand(program);
registerSiteCommand(program);
registerRouterCommands(program);
registerStatusCommand(program);
registerTopologyCommands(program);
registerDrillCommand(program);
registerBackupCommands(program);
registerRestoreCommand(program);
registerRewindCommand(program);

try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) {
    process.exit(err.exitCode === 0 ? 0 : 2);
  }
  if (err instanceof ConfigError || err instanceof UsageError) {
    process.stderr.write(`tandem: ${err.message}\n`);
    process.exit(2);
  }
  process.stderr.write(`tandem: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
}
