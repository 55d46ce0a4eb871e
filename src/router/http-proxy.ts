// The router's data path: forwards each request to the site its policy chain picks, over pooled
// keep-alive undici connections, streaming the response back as it arrives. Request bodies are
// kept (up to `retry.bodyBytesMax`) only so that a retry can send them again. A retry goes to the
// next site of the same ranking, within `retry.attemptsMax` and `retry.budgetMs`; a write whose
// fate is unknown gets 502 with `Tandem-Outcome: unknown` instead of a second try. A request's
// 500/502/504 answers count against their sites' passive health only once its outcome is known: a
// request that no site served and that two sites answered alike is blamed, not the sites.
// Failures are attributed to the site that failed (attribution.ts): a request the site may hand to
// another site waits out the site's own forward budget, and its timeout does not eject the site;
// a 5xx problem body is held back (bounded) when its `type` decides a retry or the attribution.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Pool, type Dispatcher } from 'undici';
import type { IncomingHttpHeaders } from 'undici/types/header.js';
import type { PolicyName, RouterConfig } from '../config/router-schema.js';
import type { Env, TimerHandle } from '../platform/env.js';
import { Geolocator } from './geolocation.js';
import { rankSites, type Ranking, type RouteRequest, type SiteView } from './policies.js';
import {
  classifyUpstreamError,
  isNothingWritten,
  isRetryableStatus,
  mayRetryAfter,
  mayRetryAnswer,
  needsProblemType,
  retryAfterMs,
  retryClassOf,
  type RetryClass,
  type UpstreamFailure,
} from './retry-rules.js';
import { attributeAnswer, failureCountsAgainstSite, problemTypeOf, requestReach, type RequestReach, type TableFacts } from './attribution.js';
import { isUnresponsive, type SiteRuntime, type SiteTable } from './site-table.js';
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
  /** Requests that may wait on another site and are past upstreamTimeoutMs, by the site holding them. */
  private readonly overdue = new Map<string, Set<ProxyExchange>>();
  /** The `global` and `partitioned` tables: keyed writes to them are repeatable (retry-rules.ts). */
  readonly ownedTables: ReadonlySet<string>;
  inFlight = 0;

  constructor(
    readonly env: Env,
    readonly config: RouterConfig,
    readonly table: SiteTable,
    readonly pools: UpstreamPools,
    private readonly geolocator: Geolocator,
    chain: readonly PolicyName[],
    /** the cluster's tables: which requests a site may hand to another site (attribution.ts) */
    readonly tables: ReadonlyMap<string, TableFacts> = new Map(),
  ) {
    this.ownedTables = new Set([...tables].filter(([, t]) => t.owned).map(([name]) => name));
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

  watchOverdue(siteId: string, exchange: ProxyExchange): void {
    let set = this.overdue.get(siteId);
    if (set === undefined) this.overdue.set(siteId, (set = new Set()));
    set.add(exchange);
  }

  unwatchOverdue(siteId: string, exchange: ProxyExchange): void {
    const set = this.overdue.get(siteId);
    set?.delete(exchange);
    if (set?.size === 0) this.overdue.delete(siteId);
  }

  /**
   * After each health check: once a site is down and its checks get no answer at all (paused,
   * dead, cut off), the overdue requests it holds are given up on like timeouts (retried where
   * allowed), instead of waiting out forwardedTimeoutMs.
   */
  siteChecked(site: SiteRuntime): void {
    const set = this.overdue.get(site.id);
    if (set === undefined || !isUnresponsive(site)) return;
    this.overdue.delete(site.id);
    for (const exchange of set) exchange.siteUnresponsive();
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

/** Aborts an attempt that waits on a site the router now takes for unresponsive. */
class SiteUnresponsiveError extends Error {
  override name = 'SiteUnresponsiveError';
}

/** A 5xx problem body held back (up to `problemBodyBytesMax`) until its `type` decides the answer's fate. */
interface HeldAnswer {
  status: number;
  headers: IncomingHttpHeaders;
  chunks: Buffer[];
  bytes: number;
}

/** One client request through the router: attempts on successive sites until one answers. */
class ProxyExchange implements Dispatcher.DispatchHandler {
  private readonly retryClass: RetryClass;
  private readonly reach: RequestReach;
  private readonly startedMs: number;
  private readonly path: string;
  private headers: string[] = [];
  private body: Buffer | IncomingMessage | null = null;
  private candidate = 0;
  private attempts = 0;
  /** Sites an attempt went to: a retry to one of them again waits its Retry-After. */
  private readonly tried = new Set<string>();
  private site: SiteRuntime | undefined;
  private controller: Dispatcher.DispatchController | undefined;
  /** Why the current attempt is to be aborted once its controller is known. */
  private pendingAbort: Error | undefined;
  /** The current attempt got its response headers. */
  private responded = false;
  private held: HeldAnswer | undefined;
  private committed = false;
  private discarding = false;
  private finished = false;
  private clientGone = false;
  /** Some attempt may have reached an upstream (and applied a write). */
  private maybeApplied = false;
  /** The last answer said nothing was written: the next attempt may go to a site tried already. */
  private lastNothingWritten = false;
  private lastRetryAfterMs: number | undefined;
  /** This request's 500/502/504 answers, not yet counted against their sites (settleStatusFailures). */
  private statusFailures: { siteId: string; status: number }[] = [];
  private lastFailure: UpstreamFailure | 'status' = 'not-sent';
  /** The short timer of a `peers` request, or the backoff before the next attempt. */
  private timer: TimerHandle | undefined;
  /** Whether this exchange is in the proxy's set of overdue requests of the current site. */
  private overdue = false;

  constructor(
    private readonly proxy: HttpProxy,
    private readonly req: IncomingMessage,
    private readonly res: ServerResponse,
    private readonly ranking: Ranking,
  ) {
    const method = req.method ?? 'GET';
    this.path = req.url ?? '/';
    this.retryClass = retryClassOf(method, req.headers, this.path, proxy.ownedTables);
    this.reach = requestReach(method, req.headers, this.path, proxy.tables);
    this.startedMs = proxy.env.clock.monotonicMs();
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
    this.endAttempt();
    this.settleStatusFailures(false);
    this.abortAttempt(new ClientGoneError('the client went away'));
  }

  /** The current attempt waits on a site now taken for unresponsive: give up on it (as on a timeout). */
  siteUnresponsive(): void {
    if (this.finished || this.responded) return;
    this.abortAttempt(new SiteUnresponsiveError(`site ${this.current.id} stopped answering its health checks`));
  }

  private abortAttempt(reason: Error): void {
    if (this.controller !== undefined) this.controller.abort(reason);
    else this.pendingAbort = reason;
  }

  /** The site of the next attempt (after the first), or undefined when none may be tried. */
  private nextCandidate(): { site: SiteRuntime; index: number } | undefined {
    const sites = this.ranking.sites;
    const routable = (site: SiteRuntime | undefined) => site !== undefined && (this.ranking.failedOpen || site.health.state !== 'down');
    for (let i = this.candidate; i < sites.length; i++) {
      const site = this.proxy.table.get(sites[i]!.id);
      if (routable(site)) return { site: site!, index: i };
    }
    if (!this.lastNothingWritten) return undefined;
    // Nothing was written: a site tried already may take the request again once its owner moved.
    for (let i = 0; i < Math.min(this.candidate, sites.length); i++) {
      const site = this.proxy.table.get(sites[i]!.id);
      if (routable(site)) return { site: site!, index: i };
    }
    return undefined;
  }

  /** The wait before an attempt at `site`: none, a short backoff, or the Retry-After of a site tried already. */
  private delayBeforeMs(site: SiteRuntime): number {
    if (!this.lastNothingWritten) return 0;
    const backoffMs = this.proxy.config.retry.backoffMs;
    return this.tried.has(site.id) ? Math.max(backoffMs, this.lastRetryAfterMs ?? 0) : backoffMs;
  }

  private withinBudget(delayMs: number): boolean {
    const { config, env } = this.proxy;
    return this.attempts < config.retry.attemptsMax && env.clock.monotonicMs() + delayMs - this.startedMs <= config.retry.budgetMs;
  }

  /** Sends the next attempt, or answers with the failure when none may be made. */
  private next(): void {
    if (this.clientGone) return;
    if (this.attempts === 0) {
      // The ranking's first site, whatever its health since (a site removed since is skipped).
      while (this.candidate < this.ranking.sites.length) {
        const site = this.proxy.table.get(this.ranking.sites[this.candidate++]!.id);
        if (site !== undefined) {
          this.send(site);
          return;
        }
      }
      this.fail();
      return;
    }
    const next = this.nextCandidate();
    const delayMs = next === undefined ? 0 : this.delayBeforeMs(next.site);
    if (next === undefined || !this.withinBudget(delayMs)) {
      this.fail();
      return;
    }
    this.candidate = next.index + 1;
    this.proxy.table.countRetry(this.site?.id ?? '-', next.site.id, this.lastFailure);
    if (delayMs === 0) {
      this.send(next.site);
      return;
    }
    this.timer = this.proxy.env.timers.after(delayMs, () => {
      this.timer = undefined;
      if (!this.clientGone) this.send(next.site);
    });
  }

  private send(site: SiteRuntime): void {
    const { config, env, table } = this.proxy;
    this.attempts += 1;
    this.tried.add(site.id);
    this.site = site;
    this.controller = undefined;
    this.pendingAbort = undefined;
    this.responded = false;
    this.held = undefined;
    this.committed = false;
    this.discarding = false;
    table.countAttempt(site);
    // A request the site may hand on waits out the site's own budget, so the site answers first;
    // past the short timeout it is watched, and given up once the site itself stops answering.
    const headersTimeoutMs = this.reach === 'peers' ? Math.max(config.forwardedTimeoutMs, config.upstreamTimeoutMs) : config.upstreamTimeoutMs;
    if (headersTimeoutMs > config.upstreamTimeoutMs) {
      const attempt = this.attempts;
      this.timer = env.timers.after(config.upstreamTimeoutMs, () => {
        this.timer = undefined;
        if (attempt === this.attempts) this.becameOverdue();
      });
    }
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
          headersTimeout: headersTimeoutMs,
          bodyTimeout: config.upstreamTimeoutMs,
        },
        this,
      );
    } catch (err) {
      // undici refuses requests it cannot send as given (invalid header or method).
      this.endAttempt();
      this.finished = true;
      this.settleStatusFailures(false);
      sendProblem(this.res, { type: 'bad-request', title: 'Request cannot be forwarded', status: 400, detail: (err as Error).message });
    }
  }

  /** A `peers` request got no answer within the short timeout. */
  private becameOverdue(): void {
    // Failing open, every site is down: the site's answer is still the best there is.
    if (this.finished || this.responded || this.clientGone || this.ranking.failedOpen) return;
    const site = this.current;
    if (isUnresponsive(site)) {
      this.siteUnresponsive();
      return;
    }
    this.overdue = true;
    this.proxy.watchOverdue(site.id, this);
  }

  /** Cancels the current attempt's timer and watch. */
  private endAttempt(): void {
    this.timer?.cancel();
    this.timer = undefined;
    if (this.overdue && this.site !== undefined) this.proxy.unwatchOverdue(this.site.id, this);
    this.overdue = false;
  }

  private fail(): void {
    this.endAttempt();
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
    else if (this.pendingAbort !== undefined) controller.abort(this.pendingAbort);
  }

  onResponseStart(controller: Dispatcher.DispatchController, statusCode: number, headers: IncomingHttpHeaders): void {
    if (statusCode < 200) return;
    this.responded = true;
    this.endAttempt();
    if (needsProblemType(this.retryClass, statusCode) && isProblemJson(headers) && declaredLength(headers) <= problemBodyBytesMax) {
      this.held = { status: statusCode, headers, chunks: [], bytes: 0 };
      return;
    }
    this.decide(controller, statusCode, headers, undefined, []);
  }

  /**
   * Settles an answer: counts it for or against its site, then either drops it for another attempt
   * or starts sending it to the client (with the body bytes held back so far).
   */
  private decide(controller: Dispatcher.DispatchController, statusCode: number, headers: IncomingHttpHeaders, problemType: string | undefined, held: Buffer[]): void {
    const { table, env } = this.proxy;
    const site = this.current;
    if (attributeAnswer(statusCode, headers['tandem-outcome'], problemType) === 'site-failed') this.statusFailures.push({ siteId: site.id, status: statusCode });
    else table.report(site.id, 'requestSucceeded');
    if (mayRetryAnswer(this.retryClass, statusCode, problemType)) {
      const nothingWritten = isNothingWritten(statusCode, problemType);
      this.lastNothingWritten = nothingWritten;
      this.lastRetryAfterMs = nothingWritten ? retryAfterMs(headers['retry-after'], env.clock.wallMs()) : undefined;
      if (this.canRetry()) {
        // Read and drop this answer, then try again.
        this.discarding = true;
        this.lastFailure = 'status';
        if (this.retryClass !== 'safe' && !nothingWritten) this.maybeApplied = true;
        return;
      }
    }
    // No other attempt follows: whatever is answered now is the request's outcome.
    this.settleStatusFailures(!isRetryableStatus(statusCode));
    this.committed = true;
    for (const name of droppedResponseHeaders) {
      if (headers[name] !== undefined) delete headers[name];
    }
    if (headers['tandem-site'] === undefined) headers['tandem-site'] = site.id;
    table.countResponse(site, statusCode);
    try {
      this.res.writeHead(statusCode, headers as Record<string, string | string[]>);
      for (const chunk of held) this.res.write(chunk);
    } catch (err) {
      controller.abort(err as Error);
    }
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    const held = this.held;
    if (held !== undefined) {
      held.chunks.push(chunk);
      held.bytes += chunk.length;
      if (held.bytes > problemBodyBytesMax) {
        // Too long to be a problem body worth reading: decided by its status alone.
        this.held = undefined;
        this.decide(controller, held.status, held.headers, undefined, held.chunks);
      }
      return;
    }
    if (this.discarding || !this.committed) return;
    if (!this.res.write(chunk)) {
      controller.pause();
      this.res.once('drain', () => controller.resume());
    }
  }

  onResponseEnd(controller: Dispatcher.DispatchController): void {
    const held = this.held;
    if (held !== undefined) {
      this.held = undefined;
      this.decide(controller, held.status, held.headers, problemTypeOf(Buffer.concat(held.chunks)), held.chunks);
    }
    if (this.discarding) {
      this.next();
      return;
    }
    this.finished = true;
    this.res.end();
  }

  onResponseError(_controller: Dispatcher.DispatchController, err: Error): void {
    this.endAttempt();
    if (err instanceof ClientGoneError || this.clientGone) {
      this.finished = true;
      return;
    }
    const unresponsive = err instanceof SiteUnresponsiveError;
    const failure: UpstreamFailure = unresponsive ? 'timeout' : classifyUpstreamError(err);
    // Once the site answered, whatever breaks is its own doing; before, a timeout may be another site's.
    // A site given up on as unresponsive is down already.
    if (!unresponsive && (this.responded || failureCountsAgainstSite(failure, this.reach))) this.proxy.table.report(this.current.id, 'connectionFailed');
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
    this.held = undefined;
    this.proxy.env.log.debug({ site: this.current.id, err: err.message, failure }, 'upstream attempt failed');
    this.lastFailure = failure;
    this.lastNothingWritten = false;
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
    if (this.body === this.req) return false; // a streamed body cannot be sent twice
    const next = this.nextCandidate();
    return next !== undefined && this.withinBudget(this.delayBeforeMs(next.site));
  }
}

/** Bound on the bytes of a 5xx problem body read to learn its `type` before answering. */
const problemBodyBytesMax = 16 * 1024;

function isProblemJson(headers: IncomingHttpHeaders): boolean {
  const type = headers['content-type'];
  return typeof type === 'string' && type.toLowerCase().startsWith('application/problem+json');
}

/** The Content-Length of an answer, 0 when absent (chunked: bounded while read). */
function declaredLength(headers: IncomingHttpHeaders): number {
  const length = headers['content-length'];
  return typeof length === 'string' ? Number(length) : 0;
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
