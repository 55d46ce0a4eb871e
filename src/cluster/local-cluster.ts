// A whole cluster on this machine, as real child processes: one per site node, plus the router.
// Used by `tandem up`, by integration tests and by drills. Each child's log goes to a file; the
// cluster waits until every endpoint answers before it reports itself started.
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ClusterConfig } from '../config/schema.js';
import { realTimers } from '../platform/real/real-env.js';

/** The built CLI (dist/), whether this module runs from src/ under vitest or from dist/. */
export const cliEntry = resolve(dirname(fileURLToPath(import.meta.url)), '../../dist/cli/main.js');

export interface ManagedProcess {
  id: string;
  child: ChildProcess;
  exited: Promise<number | null>;
  logPath: string;
}

export interface LocalClusterOptions {
  config: ClusterConfig;
  dataDir: string;
  withRouter: boolean;
  /** extra environment for the children */
  env?: Record<string, string>;
  /** extra environment per site (e.g. TANDEM_PEER_URLS through link proxies) */
  siteEnv?: (siteId: string) => Record<string, string>;
  onExit?: (id: string, code: number | null, signal: NodeJS.Signals | null) => void;
}

/**
 * Node flags for the site and router processes Tandem starts: TANDEM_CHILD_NODE_ARGS, e.g.
 * "--cpu-prof --cpu-prof-dir=/tmp/prof" (node 20 refuses --cpu-prof in NODE_OPTIONS).
 */
export function childNodeArgs(): string[] {
  return (process.env['TANDEM_CHILD_NODE_ARGS'] ?? '').split(' ').filter((a) => a !== '');
}

export class LocalCluster {
  readonly configPath: string;
  private readonly procs = new Map<string, ManagedProcess>();
  private stopping = false;

  constructor(private readonly options: LocalClusterOptions) {
    mkdirSync(join(options.dataDir, 'logs'), { recursive: true });
    this.configPath = join(options.dataDir, 'cluster.json');
    writeFileSync(this.configPath, JSON.stringify(options.config, null, 2));
  }

  get config(): ClusterConfig {
    return this.options.config;
  }

  process(id: string): ManagedProcess | undefined {
    return this.procs.get(id);
  }

  /** Starts every site (and the router) and waits until all are healthy. */
  async start(timeoutMs = 30_000): Promise<void> {
    for (const w of this.options.config.witnesses) this.startWitness(w.id);
    for (const site of this.options.config.sites) this.startSite(site.id);
    if (this.options.withRouter) this.startRouter();
    await this.waitHealthy(timeoutMs);
  }

  startSite(id: string): ManagedProcess {
    return this.spawnChild(id, ['site', '--config', this.configPath, '--site', id, '--data-dir', this.options.dataDir], this.options.siteEnv?.(id));
  }

  /**
   * Starts a site added online (`tandem members add`): its config is the cluster's with the site
   * listed too (the other sites' config files do not name it; they learn it from the topology).
   */
  joinSite(id: string, url: string, region?: string): ManagedProcess {
    const path = join(this.options.dataDir, `cluster-${id}.json`);
    const config = { ...this.options.config, sites: [...this.options.config.sites, { id, url, ...(region !== undefined ? { region } : {}) }] };
    writeFileSync(path, JSON.stringify(config, null, 2));
    return this.spawnChild(id, ['site', '--config', path, '--site', id, '--data-dir', this.options.dataDir], this.options.siteEnv?.(id));
  }

  startWitness(id: string): ManagedProcess {
    return this.spawnChild(id, ['witness', '--config', this.configPath, '--id', id, '--data-dir', this.options.dataDir]);
  }

  startRouter(): ManagedProcess {
    return this.spawnChild('router', ['router', '--config', this.configPath]);
  }

  private spawnChild(id: string, args: string[], extraEnv: Record<string, string> = {}): ManagedProcess {
    const existing = this.procs.get(id);
    if (existing && existing.child.exitCode === null && existing.child.signalCode === null)
      throw new Error(`${id} is already running`);
    const logPath = join(this.options.dataDir, 'logs', `${id}.log`);
    const log = createWriteStream(logPath, { flags: 'a' });
    const child = spawn(process.execPath, [...childNodeArgs(), cliEntry, ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, ...this.options.env, ...extraEnv },
    });
    child.stdout!.pipe(log, { end: false });
    child.stderr!.pipe(log, { end: false });
    const exited = new Promise<number | null>((resolveExit) => {
      child.once('exit', (code, signal) => {
        if (!this.stopping) this.options.onExit?.(id, code, signal);
        resolveExit(code);
      });
    });
    const proc = { id, child, exited, logPath };
    this.procs.set(id, proc);
    return proc;
  }

  /** Polls each endpoint until it answers: sites on /ready, the router on its status API. */
  async waitHealthy(timeoutMs: number): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    const urls = [
      ...this.options.config.witnesses.map((w) => ({ id: w.id, url: `${w.url}/health` })),
      ...this.options.config.sites.map((s) => ({ id: s.id, url: `${s.url}/ready` })),
    ];
    if (this.options.withRouter) urls.push({ id: 'router', url: `http://${this.options.config.router.listen}/_tandem/router/ready` });
    for (const { id, url } of urls) {
      for (let delay = 25; ; delay = Math.min(delay * 2, 250)) {
        const proc = this.procs.get(id);
        if (proc && proc.child.exitCode !== null)
          throw new Error(`${id} exited with code ${proc.child.exitCode} during start; see ${proc.logPath}`);
        try {
          const res = await fetch(url, { signal: AbortSignal.timeout(1000) });
          await res.arrayBuffer();
          if (res.ok) break;
        } catch {
          // not listening yet
        }
        if (performance.now() > deadline) throw new Error(`${id} did not become healthy within ${timeoutMs} ms (${url})`);
        await realTimers.sleep(delay);
      }
    }
  }

  /** SIGKILL: the process dies at once, its disk is kept. */
  kill(id: string, signal: NodeJS.Signals = 'SIGKILL'): Promise<number | null> {
    const proc = this.procs.get(id);
    if (!proc) throw new Error(`no process ${id}`);
    proc.child.kill(signal);
    return proc.exited;
  }

  /** Stops everything with SIGTERM, then SIGKILL whatever has not exited after `graceMs`. */
  async stop(graceMs = 10_000): Promise<void> {
    this.stopping = true;
    const running = [...this.procs.values()].filter((p) => p.child.exitCode === null && p.child.signalCode === null);
    for (const p of running) p.child.kill('SIGTERM');
    const timer = realTimers.after(graceMs, () => {
      for (const p of running) if (p.child.exitCode === null) p.child.kill('SIGKILL');
    });
    await Promise.all(running.map((p) => p.exited));
    timer.cancel();
  }
}
