// `tandem router` and `tandem dial`: owned by the router (issue 4).
import type { Command } from 'commander';

export function registerRouterCommands(_program: Command): void {}
