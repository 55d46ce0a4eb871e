// Active health checks: one loop per site probes the site node's readiness path every `intervalMs`
// (and the app, when it is a separate process: calculated health needs both; and, when
// `lagMsMax` is set, the replication lag the node reports). Results and the RTT of the probe feed
// the site table's state machine. Timing comes from the Env, so a simulation can drive it.
import type { HealthCheckConfig } from '../config/router-schema.js';
import type { Env } from '../platform/env.js';
import { readBody } from '../platform/env.js';
import type { SiteRuntime, SiteTable } from './site-table.js';

/** Bound on the bytes read from a probe's body (for `bodyMatch` and the lag status). */
const probeBodyBytesMax = 256 * 1024;

interface SiteLoop {
  stop: AbortController;
  /** Resolves once the loop has finished its first check. */
  firstCheck: Promise<void>;
  done: Promise<void>;
}

export class HealthChecker {
  private readonly loops = new Map<string, SiteLoop>();
  private stopped = false;

  constructor(
    private readonly env: Env,
    private readonly config: HealthCheckConfig,
    private readonly table: SiteTable,
  ) {}

  /** Starts a loop for every site in the table that has none; resolves when each has checked once. */
  async start(): Promise<void> {
    const firsts: Promise<void>[] = [];
    for (const site of this.table.list()) {
      if (!this.loops.has(site.id)) this.startLoop(site.id);
      firsts.push(this.loops.get(site.id)!.firstCheck);
    }
    await Promise.all(firsts);
  }

  /** Stops checking a site that left the config. */
  async stopSite(id: string): Promise<void> {
    const loop = this.loops.get(id);
    if (loop === undefined) return;
    this.loops.delete(id);
    loop.stop.abort(new Error('site removed'));
    await loop.done;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.all([...this.loops.keys()].map((id) => this.stopSite(id)));
  }

  /** Runs one check of a site now (also used by tests). */
  async checkOnce(site: SiteRuntime, signal?: AbortSignal): Promise<void> {
    const { clock, timers } = this.env;
    const abort = new AbortController();
    const onOuterAbort = () => abort.abort(signal?.reason);
    signal?.addEventListener('abort', onOuterAbort, { once: true });
    const timer = timers.after(this.config.timeoutMs, () => abort.abort(new Error(`timed out after ${this.config.timeoutMs} ms`)));
    const started = clock.monotonicMs();
    let ok = false;
    let answered = false;
    let rttMs: number | undefined;
    let detail: string | undefined;
    try {
      const targetOrigin = site.target.origin + site.target.basePath;
      const appSeparate = targetOrigin !== site.nodeUrl;
      const probes: Promise<string | undefined>[] = [this.probe(`${site.nodeUrl}${this.config.path}`, true, abort.signal)];
      if (appSeparate) probes.push(this.probe(`${targetOrigin}${this.config.appPath}`, false, abort.signal));
      if (this.config.lagMsMax !== undefined) probes.push(this.probeLag(site.nodeUrl, this.config.lagMsMax, abort.signal));
      const results = await Promise.all(probes);
      rttMs = clock.monotonicMs() - started;
      detail = results.find((r) => r !== undefined);
      ok = detail === undefined;
      answered = true;
    } catch (err) {
      detail = abort.signal.aborted ? String((abort.signal.reason as Error)?.message ?? abort.signal.reason) : (err as Error).message;
    } finally {
      timer.cancel();
      signal?.removeEventListener('abort', onOuterAbort);
    }
    if (signal?.aborted) return;
    this.table.recordCheck(site.id, ok, rttMs, detail, answered);
  }

  private startLoop(id: string): void {
    const stop = new AbortController();
    let markFirst!: () => void;
    const firstCheck = new Promise<void>((resolve) => (markFirst = resolve));
    const run = async () => {
      const { clock, timers } = this.env;
      while (!stop.signal.aborted && !this.stopped) {
        const site = this.table.get(id);
        if (site === undefined) break;
        const started = clock.monotonicMs();
        await this.checkOnce(site, stop.signal);
        markFirst();
        const waitMs = Math.max(0, this.config.intervalMs - (clock.monotonicMs() - started));
        try {
          await timers.sleep(waitMs, stop.signal);
        } catch {
          break;
        }
      }
      markFirst();
    };
    this.loops.set(id, { stop, firstCheck, done: run() });
  }

  /** Undefined when the probe passes, else why it failed. */
  private async probe(url: string, isNode: boolean, signal: AbortSignal): Promise<string | undefined> {
    const res = await this.env.transport.request({ method: 'GET', url, headers: { 'user-agent': 'tandem-router' }, signal });
    const expect = isNode ? this.config.expectStatus : 200;
    if (isNode && this.config.bodyMatch !== undefined) {
      const body = Buffer.from(await readBody(res.body, probeBodyBytesMax)).toString('utf8');
      if (res.status !== expect) return `${url} answered ${res.status}`;
      if (!body.includes(this.config.bodyMatch)) return `${url} body does not contain ${JSON.stringify(this.config.bodyMatch)}`;
      return undefined;
    }
    for await (const _chunk of res.body) {
      // drain, so the connection is reused
    }
    return res.status === expect || (!isNode && res.status >= 200 && res.status < 300) ? undefined : `${url} answered ${res.status}`;
  }

  private async probeLag(nodeUrl: string, lagMsMax: number, signal: AbortSignal): Promise<string | undefined> {
    const res = await this.env.transport.request({ method: 'GET', url: `${nodeUrl}/v1/status`, headers: { accept: 'application/json' }, signal });
    const body = await readBody(res.body, probeBodyBytesMax);
    if (res.status !== 200) return `${nodeUrl}/v1/status answered ${res.status}`;
    let status: { peers?: Record<string, { connected?: boolean; lagMs?: number }> };
    try {
      status = JSON.parse(Buffer.from(body).toString('utf8')) as typeof status;
    } catch {
      return `${nodeUrl}/v1/status is not JSON`;
    }
    for (const [peer, link] of Object.entries(status.peers ?? {})) {
      if (link.connected !== false && typeof link.lagMs === 'number' && link.lagMs > lagMsMax)
        return `replication lag from ${peer} is ${link.lagMs} ms (max ${lagMsMax})`;
    }
    return undefined;
  }
}
