// The router's data path: forwards each request to the site its policy chain picks, over pooled
// keep-alive undici connections, streaming the response back as it arrives. Request bodies are
// kept (up to `retry.bodyBytesMax`) only so that a retry can send them again. A retry goes to the
// next site of the same ranking, within `retry.attemptsMax` and `retry.budgetMs`; a write whose
// fate is unknown gets 502 with `Tandem-Outcome: unknown` instead of a second try. A request's
// 500/502/504 answers count against their sites' passive health only once its outcome is known: a
// request that no site served and that two sites answered alike is blamed, not the sites.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Pool, type Dispatcher } from 'undici';
import type { IncomingHttpHeaders } from 'undici/types/header.js';
import type { PolicyName, RouterConfig } from '../config/router-schema.js';
import type { Env } from '../platform/env.js';
import { Geolocator } from './geolocation.js';
import { rankSites, type Ranking, type RouteRequest, type SiteView } from './policies.js';
import {
  classifyUpstreamError,
  isPassiveFailureStatus,
  isRetryableStatus,
  mayRetryAfter,
  retryClassOf,
  type RetryClass,
  type UpstreamFailure,
} from './retry-rules.js';
import type { SiteRuntime, SiteTable } from './site-table.js';
import { parseIp } from './cidr.js';
import { assert } from '../platform/assert.js';

/** Hop-by-hop request headers (RFC 9110 §7.6.1) and those the router sets itself. */
const droppedRequestHeaders = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'expect',
  'host',
  'x-forwarded-for',
]);
const droppedResponseHeaders = ['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'trailer'];

class ClientGoneError extends Error {
  override name = 'ClientGoneError';
}

export interface ProblemBody {
  type: string;
  title: string;
  status: number;
  detail: string;
}

export function sendProblem(res: ServerResponse, problem: ProblemBody, headers: Record<string, string> = {}): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const body = JSON.stringify(problem);
  res.writeHead(problem.status, {
    'content-type': 'application/problem+json',
    'content-length': Buffer.byteLength(body),
    ...headers,
  });
  res.end(body);
}

/** The upstream connection pools, one per site target. */
export class UpstreamPools {
  private readonly pools = new Map<string, Pool>();

  constructor(private readonly config: RouterConfig) {}

  get(site: SiteRuntime): Pool {
    let pool = this.pools.get(site.target.origin);
    if (pool === undefined) {
      pool = new Pool(site.target.origin, {
        connections: this.config.upstreamConnectionsMax,
        pipelining: 1,
        connectTimeout: this.config.connectTimeoutMs,
        keepAliveTimeout: 30_000,
        keepAliveMaxTimeout: 60_000,
        headersTimeout: this.config.upstreamTimeoutMs,
        bodyTimeout: this.config.upstreamTimeoutMs,
      });
      this.pools.set(site.target.origin, pool);
    }
    return pool;
  }

  /** Closes pools whose origin no site uses any more. */
  async retain(origins: ReadonlySet<string>): Promise<void> {
    const gone = [...this.pools.entries()].filter(([origin]) => !origins.has(origin));
    for (const [origin] of gone) this.pools.delete(origin);
    await Promise.all(gone.map(([, pool]) => pool.close()));
  }

  async close(): Promise<void> {
    const all = [...this.pools.values()];
    this.pools.clear();
    await Promise.all(all.map((p) => p.close().catch(() => p.destroy())));
  }
}

export class HttpProxy {
  private readonly chain: readonly PolicyName[];
  private readonly requestIndependent: boolean;
  private readonly usesGeo: boolean;
  private readonly usesAffinity: boolean;
  private cachedViews: readonly SiteView[] | undefined;
  private cachedRanking: Ranking | undefined;
  inFlight = 0;

  constructor(
    readonly env: Env,
    readonly config: RouterConfig,
    readonly table: SiteTable,
    readonly pools: UpstreamPools,
    private readonly geolocator: Geolocator,
    chain: readonly PolicyName[],
    /** the cluster's `global` and `partitioned` tables: keyed writes to them are repeatable (retry-rules.ts) */
    readonly ownedTables: ReadonlySet<string> = new Set(),
  ) {
    this.chain = chain;
    this.requestIndependent = chain.every((p) => p === 'latency' || p === 'failover');
    this.usesGeo = chain.includes('geolocation');
    this.usesAffinity = chain.includes('affinity');
  }

  /** The ranking for one request, computed from local state only. */
  rank(req: IncomingMessage): Ranking {
    const views = this.table.views();
    if (this.requestIndependent) {
      // Latency and failover order every request alike: rank once per change of the site table.
      if (this.cachedViews !== views || this.cachedRanking === undefined) {
        this.cachedRanking = rankSites(views, this.chain, noRequest, this.env.random, this.config.failOpen);
        this.cachedViews = views;
        if (this.cachedRanking.sites.some((s) => s.dial < 100)) this.cachedViews = undefined; // the spill is random
      }
      return this.cachedRanking;
    }
    return rankSites(views, this.chain, this.routeRequestOf(req), this.env.random, this.config.failOpen);
  }

  routeRequestOf(req: IncomingMessage): RouteRequest {
    let geo: RouteRequest['geo'];
    let home: string | undefined;
    if (this.usesGeo) {
      const peer = req.socket.remoteAddress;
      const headerName = this.config.geolocation.header?.toLowerCase();
      const header = headerName === undefined ? undefined : req.headers[headerName];
      geo = this.geolocator.locate(clientAddressOf(req, this.geolocator, peer), peer, typeof header === 'string' ? header : undefined);
    }
    if (this.usesAffinity) {
      const header = req.headers[this.config.affinity.header.toLowerCase()];
      home = typeof header === 'string' && header !== '' ? header.trim() : cookieValue(req.headers.cookie, this.config.affinity.cookie);
    }
    return { geo, home };
  }

  handle(req: IncomingMessage, res: ServerResponse): void {
    const ranking = this.rank(req);
    if (ranking.sites.length === 0) {
      this.table.noSiteAvailable += 1;
      sendProblem(
        res,
        { type: 'no-site-available', title: 'No healthy site', status: 503, detail: 'every site is unhealthy and the router fails closed' },
        { 'retry-after': '1' },
      );
      return;
    }
    const exchange = new ProxyExchange(this, req, res, ranking);
    this.inFlight += 1;
    res.once('close', () => {
      this.inFlight -= 1;
      exchange.clientClosed();
    });
    exchange.start();
  }
}

const noRequest: RouteRequest = { geo: undefined, home: undefined };

function cookieValue(cookie: string | undefined, name: string): string | undefined {
  if (cookie === undefined) return undefined;
  for (const part of cookie.split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) {
      const v = part.slice(eq + 1).trim();
      try {
        return decodeURIComponent(v) || undefined;
      } catch {
        return v || undefined;
      }
    }
  }
  return undefined;
}

/** The client's address: the connection's, or the nearest untrusted hop of X-Forwarded-For behind trusted proxies. */
function clientAddressOf(req: IncomingMessage, geolocator: Geolocator, peer: string | undefined): string | undefined {
  const xff = req.headers['x-forwarded-for'];
  if (typeof xff !== 'string' || !geolocator.isTrusted(peer)) return peer;
  const hops = xff.split(',').map((h) => h.trim());
  for (let i = hops.length - 1; i >= 0; i--) {
    if (parseIp(hops[i]!) !== undefined && !geolocator.isTrusted(hops[i])) return hops[i];
  }
  return peer;
}

/** One client request through the router: attempts on successive sites until one answers. */
class ProxyExchange implements Dispatcher.DispatchHandler {
  private readonly retryClass: RetryClass;
  private readonly startedMs: number;
  private readonly path: string;
  private headers: string[] = [];
  private body: Buffer | IncomingMessage | null = null;
  private candidate = 0;
  private attempts = 0;
  private site: SiteRuntime | undefined;
  private controller: Dispatcher.DispatchController | undefined;
  private committed = false;
  private discarding = false;
  private finished = false;
  private clientGone = false;
  /** Some attempt may have reached an upstream (and applied a write). */
  private maybeApplied = false;
  /** This request's 500/502/504 answers, not yet counted against their sites (settleStatusFailures). */
  private statusFailures: { siteId: string; status: number }[] = [];
  private lastFailure: UpstreamFailure | 'status' = 'not-sent';

  constructor(
    private readonly proxy: HttpProxy,
    private readonly req: IncomingMessage,
    private readonly res: ServerResponse,
    private readonly ranking: Ranking,
  ) {
    this.retryClass = retryClassOf(req.method ?? 'GET', req.headers, req.url ?? '/', proxy.ownedTables);
    this.startedMs = proxy.env.clock.monotonicMs();
    this.path = req.url ?? '/';
  }

  private get current(): SiteRuntime {
    assert(this.site !== undefined, 'an attempt is under way');
    return this.site;
  }

  start(): void {
    this.headers = forwardedHeaders(this.req);
    const lengthHeader = this.req.headers['content-length'];
    const hasBody = lengthHeader !== undefined ? lengthHeader !== '0' : this.req.headers['transfer-encoding'] !== undefined;
    if (!hasBody) {
      this.next();
      return;
    }
    const length = lengthHeader === undefined ? Infinity : Number(lengthHeader);
    if (length > this.proxy.config.retry.bodyBytesMax) {
      this.body = this.req; // streamed, so never retried
      this.next();
      return;
    }
    const chunks: Buffer[] = [];
    this.req.on('data', (c: Buffer) => chunks.push(c));
    this.req.once('end', () => {
      this.body = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
      this.next();
    });
    this.req.once('error', () => this.clientClosed());
  }

  clientClosed(): void {
    if (this.finished) return;
    this.clientGone = true;
    this.settleStatusFailures(false);
    this.controller?.abort(new ClientGoneError('the client went away'));
  }

  /** Sends the next attempt, or answers with the failure when none may be made. */
  private next(): void {
    if (this.clientGone) return;
    const { table, config, env } = this.proxy;
    const sites = this.ranking.sites;
    while (this.candidate < sites.length) {
      const view = sites[this.candidate++]!;
      const site = table.get(view.id);
      // A site ejected since the ranking was made is skipped (unless the router is failing open).
      if (site === undefined || (this.attempts > 0 && !this.ranking.failedOpen && site.health.state === 'down')) continue;
      if (this.attempts > 0) {
        if (this.attempts >= config.retry.attemptsMax || env.clock.monotonicMs() - this.startedMs > config.retry.budgetMs) break;
        table.countRetry(this.site?.id ?? '-', site.id, this.lastFailure);
      }
      this.attempts += 1;
      this.site = site;
      this.controller = undefined;
      this.committed = false;
      this.discarding = false;
      table.countAttempt(site);
      const target = site.target;
      try {
        this.proxy.pools.get(site).dispatch(
        {
          path: target.basePath === '' ? this.path : target.basePath + this.path,
          method: (this.req.method ?? 'GET') as Dispatcher.HttpMethod,
          headers: this.headers,
          body: this.body,
          idempotent: this.retryClass === 'safe',
          blocking: true,
          headersTimeout: config.upstreamTimeoutMs,
          bodyTimeout: config.upstreamTimeoutMs,
        },
        this,
      );
      } catch (err) {
        // undici refuses requests it cannot send as given (invalid header or method).
        this.finished = true;
        this.settleStatusFailures(false);
        sendProblem(this.res, { type: 'bad-request', title: 'Request cannot be forwarded', status: 400, detail: (err as Error).message });
      }
      return;
    }
    this.fail();
  }

  private fail(): void {
    this.finished = true;
    this.settleStatusFailures(false);
    const safe = this.retryClass === 'safe';
    const siteId = this.site?.id ?? 'none';
    if (!safe && this.maybeApplied) {
      this.proxy.table.unknownOutcomes += 1;
      sendProblem(
        this.res,
        {
          type: 'outcome-unknown',
          title: 'Outcome unknown',
          status: 502,
          detail: `the request reached site ${siteId} but no answer came back: it may or may not have been applied`,
        },
        { 'tandem-outcome': 'unknown', 'tandem-site': siteId },
      );
      return;
    }
    const timeout = this.lastFailure === 'timeout';
    sendProblem(this.res, {
      type: timeout ? 'upstream-timeout' : 'upstream-unavailable',
      title: timeout ? 'No site answered in time' : 'No site could answer',
      status: timeout ? 504 : 502,
      detail: `${this.attempts} attempt(s) failed; the last one, at site ${siteId}: ${this.lastFailure}`,
    });
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.controller = controller;
    if (this.clientGone) controller.abort(new ClientGoneError('the client went away'));
  }

  onResponseStart(controller: Dispatcher.DispatchController, statusCode: number, headers: IncomingHttpHeaders): void {
    if (statusCode < 200) return;
    const { table } = this.proxy;
    // A site's 502 with Tandem-Outcome: unknown speaks of the owner it forwarded the write to, not of itself.
    if (isPassiveFailureStatus(statusCode) && headers['tandem-outcome'] !== 'unknown') this.statusFailures.push({ siteId: this.current.id, status: statusCode });
    else if (statusCode !== 503) table.report(this.current.id, 'requestSucceeded');
    if (isRetryableStatus(statusCode) && mayRetryAfter(this.retryClass, 'status') && this.canRetry()) {
      // Read and drop this answer, then try the next site.
      this.discarding = true;
      this.lastFailure = 'status';
      if (this.retryClass !== 'safe') this.maybeApplied = true;
      return;
    }
    // No other attempt follows: whatever is answered now is the request's outcome.
    this.settleStatusFailures(!isRetryableStatus(statusCode));
    this.committed = true;
    for (const name of droppedResponseHeaders) {
      if (headers[name] !== undefined) delete headers[name];
    }
    if (headers['tandem-site'] === undefined) headers['tandem-site'] = this.current.id;
    table.countResponse(this.current, statusCode);
    try {
      this.res.writeHead(statusCode, headers as Record<string, string | string[]>);
    } catch (err) {
      controller.abort(err as Error);
    }
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.discarding || !this.committed) return;
    if (!this.res.write(chunk)) {
      controller.pause();
      this.res.once('drain', () => controller.resume());
    }
  }

  onResponseEnd(): void {
    if (this.discarding) {
      this.next();
      return;
    }
    this.finished = true;
    this.res.end();
  }

  onResponseError(_controller: Dispatcher.DispatchController, err: Error): void {
    if (err instanceof ClientGoneError || this.clientGone) {
      this.finished = true;
      return;
    }
    const failure = classifyUpstreamError(err);
    this.proxy.table.report(this.current.id, 'connectionFailed');
    if (this.committed) {
      // The answer was already on its way: the client sees a truncated response.
      this.finished = true;
      this.res.destroy(err);
      return;
    }
    if (this.discarding) {
      // Failed while dropping a retryable answer: that answer already decided.
      this.next();
      return;
    }
    this.proxy.env.log.debug({ site: this.current.id, err: err.message, failure }, 'upstream attempt failed');
    this.lastFailure = failure;
    if (failure !== 'not-sent' && this.retryClass !== 'safe') this.maybeApplied = true;
    if (mayRetryAfter(this.retryClass, failure) && this.canRetry()) {
      this.next();
      return;
    }
    this.candidate = this.ranking.sites.length;
    this.fail();
  }

  /**
   * Counts this request's 500/502/504 answers against the sites that gave them, once no other
   * attempt will follow. When no site served the request (`served`: a site answered with a status
   * that is not retried) and two sites gave it the same failing status, the request is what fails
   * (a body every site's code trips over), not the sites: those answers count against none of
   * them, or a few such requests, each retried on every site, would eject every healthy site.
   * Retries do not stop at the second such answer: a third site that serves the request shows that
   * the first two are at fault, so two sites broken alike are still ejected. Connection errors and
   * timeouts are not settled here: they count at once (a paused site must go).
   */
  private settleStatusFailures(served: boolean): void {
    if (this.statusFailures.length === 0) return;
    const failures = this.statusFailures;
    this.statusFailures = [];
    const blamesRequest = (f: { siteId: string; status: number }) => !served && failures.some((o) => o !== f && o.status === f.status);
    if (failures.some(blamesRequest)) this.proxy.table.requestsBlamed += 1;
    for (const f of failures) {
      if (!blamesRequest(f)) this.proxy.table.report(f.siteId, 'requestFailed');
    }
  }

  private canRetry(): boolean {
    const { config, env } = this.proxy;
    if (this.body === this.req) return false; // a streamed body cannot be sent twice
    if (this.attempts >= config.retry.attemptsMax) return false;
    if (env.clock.monotonicMs() - this.startedMs > config.retry.budgetMs) return false;
    for (let i = this.candidate; i < this.ranking.sites.length; i++) {
      const site = this.proxy.table.get(this.ranking.sites[i]!.id);
      if (site !== undefined && (this.ranking.failedOpen || site.health.state !== 'down')) return true;
    }
    return false;
  }
}

/** The client's headers minus hop-by-hop ones, plus X-Forwarded-For/-Proto/-Host, as a flat list. */
function forwardedHeaders(req: IncomingMessage): string[] {
  const raw = req.rawHeaders;
  const out: string[] = [];
  let xff: string | undefined;
  let hasProto = false;
  let hasHost = false;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    const lower = name.toLowerCase();
    if (droppedRequestHeaders.has(lower)) {
      if (lower === 'x-forwarded-for') xff = xff === undefined ? raw[i + 1]! : `${xff}, ${raw[i + 1]!}`;
      continue;
    }
    if (lower === 'x-forwarded-proto') hasProto = true;
    else if (lower === 'x-forwarded-host') hasHost = true;
    out.push(name, raw[i + 1]!);
  }
  const peer = req.socket.remoteAddress ?? 'unknown';
  out.push('x-forwarded-for', xff === undefined ? peer : `${xff}, ${peer}`);
  if (!hasProto) out.push('x-forwarded-proto', 'http');
  if (!hasHost && req.headers.host !== undefined) out.push('x-forwarded-host', req.headers.host);
  return out;
}
