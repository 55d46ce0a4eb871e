// `tandem drill SCENARIO | list | check DIR`: DR drills on a fresh local cluster (CONTRACT.md,
// "Drills"). Exit 0 when the SLO holds, 1 when it does not (or the run is inconclusive), 2 on bad
// usage or config, or when the scenario needs something this build does not have yet.
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { limits } from '../../limits.js';
import { realRandom } from '../../platform/real/real-env.js';
import { readRecording, runDrill, ScenarioUnavailable } from '../../drill/run-drill.js';
import { checkDrill, summarize } from '../../drill/report.js';
import { scenarioNames, scenarios, type ScenarioName } from '../../drill/scenarios.js';
import { intFlag, UsageError } from '../usage.js';

interface DrillFlags {
  config?: string;
  sites: number;
  basePort?: number;
  duration: number;
  rate: number;
  seed?: number;
  site?: string;
  report?: string;
  json?: boolean;
  powerLoss?: boolean;
}

function listScenarios(): string {
  const lines = ['scenario         SLO (RTO, lost quorum writes, success rate over window)  what it does'];
  for (const name of scenarioNames) {
    const s = scenarios[name];
    const slo = `${s.slo.rtoMs} ms, ${s.slo.lostQuorumWrites}, ≥${s.slo.successRateMin} over ${s.slo.windowMs} ms`;
    const needs = s.needs.length > 0 ? ` [needs ${s.needs.join(', ')}]` : '';
    const rewind = s.slo.rewind ? `; SLO: every deleted item restored at every site, ${s.slo.rewind.untouchedChangedMax} untouched keys changed` : '';
    lines.push(`${name.padEnd(16)} ${slo.padEnd(56)} ${s.summary}${needs}${rewind}`);
  }
  return lines.join('\n');
}

export function registerDrillCommand(program: Command): void {
  program
    .command('drill')
    .description(`Run a DR drill on a fresh local cluster and check RTO, RPO and convergence.\n  tandem drill list          the scenarios and their SLOs\n  tandem drill check DIR     re-run the checkers on a recorded drill\n  scenarios: ${scenarioNames.join(', ')}`)
    .argument('<scenario>', 'a scenario, or `list`, or `check`')
    .argument('[dir]', 'with `check`: the report directory of a recorded drill')
    .option('--config <file>', 'drill a cluster of your own tables and policies (started locally)')
    .option('--sites <n>', 'demo: number of sites', intFlag('--sites', 2, limits.sitesMax), 3)
    .option('--base-port <p>', 'router port; site i on P+i (default: a free range)', intFlag('--base-port', 1024, 65_000))
    .option('--duration <seconds>', 'seconds of load (the fault at 25%, the heal at 60%)', intFlag('--duration', 3, 3600), 20)
    .option('--rate <ops>', 'open-loop operations per second', intFlag('--rate', 10, 20_000), 200)
    .option('--seed <n>', 'seed of the fault plan and the workload (default: random, printed)', intFlag('--seed', 0, 2 ** 32 - 1))
    .option('--site <id>', 'the victim (default: chosen from the seed)')
    .option('--report <dir>', 'where to write report.json, report.html, the history and the logs (default .tandem/drills/SCENARIO-seedN)')
    .option('--power-loss', 'site-crash: the crash is a power loss (the WAL loses what its last fdatasync did not cover)')
    .option('--json', 'print the report as JSON on stdout')
    .action(async (what: string, dir: string | undefined, opts: DrillFlags) => {
      if (what === 'list') {
        process.stdout.write(`${listScenarios()}\n`);
        return;
      }
      if (what === 'check') {
        if (dir === undefined) throw new UsageError('drill check: expected a report directory (tandem drill check DIR)');
        let report;
        try {
          report = checkDrill(readRecording(resolve(dir)));
        } catch (e) {
          throw new UsageError(`drill check ${dir}: ${(e as Error).message}`);
        }
        process.stdout.write(opts.json ? `${JSON.stringify(report, null, 2)}\n` : `${summarize(report)}\n`);
        process.exitCode = report.passed ? 0 : 1;
        return;
      }
      if (!(scenarioNames as readonly string[]).includes(what)) throw new UsageError(`unknown scenario ${what}; expected one of ${scenarioNames.join(', ')}, list, check`);
      if (dir !== undefined) throw new UsageError(`unexpected argument ${dir}`);
      const scenario = what as ScenarioName;
      if (opts.powerLoss && scenario !== 'site-crash') throw new UsageError('--power-loss: only with site-crash');
      const seed = opts.seed ?? realRandom.int(2 ** 31);
      const reportDir = opts.report ?? `.tandem/drills/${scenario}-seed${seed}`;
      const replay = [
        'tandem drill',
        scenario,
        ...(opts.config ? ['--config', opts.config] : ['--sites', String(opts.sites)]),
        '--duration',
        String(opts.duration),
        '--rate',
        String(opts.rate),
        '--seed',
        String(seed),
        ...(opts.site ? ['--site', opts.site] : []),
        ...(opts.powerLoss ? ['--power-loss'] : []),
      ].join(' ');
      const tty = process.stderr.isTTY === true;
      // Ctrl-C or SIGTERM: stop the cluster, the proxies and the generator, then exit
      let cleanup: (() => Promise<void>) | undefined;
      const interrupted = (signal: NodeJS.Signals) => {
        process.stderr.write(`\ntandem drill: ${signal}: stopping the drill's cluster\n`);
        void (cleanup?.() ?? Promise.resolve()).finally(() => process.exit(130));
      };
      process.once('SIGINT', interrupted);
      process.once('SIGTERM', interrupted);
      const started = performance.now();
      let outcome;
      try {
        outcome = await runDrill({
          scenario,
          ...(opts.config ? { configFile: opts.config } : {}),
          sites: opts.sites,
          ...(opts.basePort !== undefined ? { basePort: opts.basePort } : {}),
          durationS: opts.duration,
          ratePerS: opts.rate,
          seed,
          ...(opts.site ? { site: opts.site } : {}),
          reportDir,
          ...(opts.powerLoss ? { powerLoss: true } : {}),
          commands: new Set(program.commands.map((c) => c.name())),
          replayCommand: replay,
          registerCleanup: (c) => {
            cleanup = c;
          },
          onProgress: (line) => {
            if (tty) process.stderr.write(`\r\x1b[K[${((performance.now() - started) / 1000).toFixed(0).padStart(4)} s] ${line}`);
          },
        });
      } catch (e) {
        if (tty) process.stderr.write('\r\x1b[K');
        if (e instanceof ScenarioUnavailable) throw new UsageError(e.message);
        throw e;
      }
      if (tty) process.stderr.write('\r\x1b[K');
      process.off('SIGINT', interrupted);
      process.off('SIGTERM', interrupted);
      const { report } = outcome;
      process.stdout.write(opts.json ? `${JSON.stringify(report, null, 2)}\n` : `${summarize(report)}\n  report: ${outcome.reportDir}/report.html\n`);
      process.exitCode = report.passed ? 0 : 1;
    });
}
