// Test and benchmark helpers for the router: a stub site (node:http on a free port) that answers
// readiness and echoes requests with `Tandem-Site`, in process or as a real child process; a seeded
// Random; a config builder; polling with a bound.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { parseConfig } from '../../config/load.js';
import type { ClusterConfig } from '../../config/schema.js';
import type { Random } from '../../platform/env.js';
import { realClock, realTimers } from '../../platform/real/real-env.js';

export interface StubSite {
  id: string;
  url: string;
  port: number;
  /** Status of `/ready` (and `/health`). */
  readyStatus: number;
  /** Added before every answer, `/ready` included (a far-away site). */
  delayMs: number;
  /** When set, every request is held and never answered (a paused process, as seen from outside). */
  hang: boolean;
  /** Answer every non-health request with this status instead of echoing. */
  forcedStatus: number | undefined;
  /**
   * Answer the next `count` non-health requests with this RFC 9457 problem (`type` under Tandem's
   * URI prefix), as a site does when an owner moves or a quorum times out; then echo again.
   */
  problem: { status: number; type: string; count: number; retryAfter?: string; outcomeUnknown?: boolean } | undefined;
  /** Extra delay for writes (PUT, PATCH, DELETE, POST): a site forwarding them to a slow owner. */
  writeDelayMs: number;
  /** Answer 500 to requests whose body matches: a poison request, which fails on every site alike. */
  failBodiesMatching: RegExp | undefined;
  /** When set, every request's connection is reset once the request has arrived (a crash mid-request). */
  resetConnections: boolean;
  /** Requests other than `/ready` and `/health`. */
  requests: number;
  /** Health checks received (`/ready` and `/health`). */
  checks: number;
  /** Bodies of PUT requests received, by path. */
  puts: Map<string, string>;
  close(): Promise<void>;
}

/** Echo server logic, shared by the in-process stub and the child-process script. */
function handleStub(site: StubSite, req: IncomingMessage, res: ServerResponse, body: Buffer): void {
  const path = req.url ?? '/';
  if (path === '/ready' || path === '/health') {
    site.checks += 1;
    res.writeHead(site.readyStatus, { 'content-type': 'application/json', 'tandem-site': site.id });
    res.end(JSON.stringify({ ready: site.readyStatus === 200, site: site.id }));
    return;
  }
  site.requests += 1;
  if (req.method === 'PUT') site.puts.set(path, body.toString('utf8'));
  const status = /^\/status\/(\d{3})/.exec(path);
  const poisoned = site.failBodiesMatching?.test(body.toString('utf8')) === true;
  const code = site.forcedStatus ?? (poisoned ? 500 : status ? Number(status[1]) : 200);
  if (site.problem !== undefined && site.problem.count > 0) {
    const p = site.problem;
    p.count -= 1;
    const headers: Record<string, string> = { 'content-type': 'application/problem+json', 'tandem-site': site.id };
    if (p.retryAfter !== undefined) headers['retry-after'] = p.retryAfter;
    if (p.outcomeUnknown === true) headers['tandem-outcome'] = 'unknown';
    res.writeHead(p.status, headers);
    res.end(JSON.stringify({ type: `https://tandem.dev/problems/${p.type}`, title: p.type, status: p.status, detail: `stub ${site.id}` }));
    return;
  }
  if (path.startsWith('/outcome-unknown')) {
    // what a site answers when a write it forwarded to the item's owner got no answer
    res.writeHead(502, { 'content-type': 'application/problem+json', 'tandem-site': site.id, 'tandem-outcome': 'unknown' });
    res.end('{"status":502,"type":"outcome-unknown"}');
    return;
  }
  if (path.startsWith('/stream')) {
    res.writeHead(code, { 'content-type': 'text/plain', 'tandem-site': site.id });
    let sent = 0;
    const more = () => {
      if (sent >= 3) return res.end('end\n');
      sent += 1;
      res.write(`chunk ${sent}\n`);
      void realTimers.sleep(20).then(more);
    };
    more();
    return;
  }
  if (path.startsWith('/big')) {
    const bytes = Number(new URL(path, 'http://x').searchParams.get('bytes') ?? 1_000_000);
    res.writeHead(code, { 'content-type': 'application/octet-stream', 'content-length': bytes, 'tandem-site': site.id });
    res.end(Buffer.alloc(bytes, 97));
    return;
  }
  const echo = JSON.stringify({
    site: site.id,
    method: req.method,
    path,
    headers: req.headers,
    bodyBytes: body.length,
    body: body.length <= 4096 ? body.toString('utf8') : undefined,
  });
  res.writeHead(code, { 'content-type': 'application/json', 'tandem-site': site.id, 'set-cookie': ['a=1', 'b=2'] });
  res.end(req.method === 'HEAD' ? undefined : echo);
}

export async function startStubSite(id: string, options: { port?: number; host?: string } = {}): Promise<StubSite> {
  const site: StubSite = {
    id,
    url: '',
    port: 0,
    readyStatus: 200,
    delayMs: 0,
    hang: false,
    forcedStatus: undefined,
    problem: undefined,
    writeDelayMs: 0,
    failBodiesMatching: undefined,
    resetConnections: false,
    requests: 0,
    checks: 0,
    puts: new Map(),
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (site.hang) return;
      if (site.resetConnections && req.url !== '/ready' && req.url !== '/health') {
        site.requests += 1;
        req.socket.resetAndDestroy();
        return;
      }
      const answer = () => handleStub(site, req, res, Buffer.concat(chunks));
      const isWrite = req.method !== 'GET' && req.method !== 'HEAD' && req.method !== 'OPTIONS';
      const delayMs = site.delayMs + (isWrite ? site.writeDelayMs : 0);
      if (delayMs > 0) void realTimers.sleep(delayMs).then(answer);
      else answer();
    });
  });
  const host = options.host ?? '127.0.0.1';
  await new Promise<void>((resolve) => server.listen(options.port ?? 0, host, resolve));
  site.port = (server.address() as AddressInfo).port;
  site.url = `http://${host}:${site.port}`;
  return site;
}

/**
 * A standalone stub site for real child processes (`node --input-type=module -e <script>`):
 * env STUB_SITE and STUB_PORT; prints `listening <port>` once ready. Echoes requests, answers
 * `/ready` and `/health`, keeps a small in-memory table for `PUT/GET /v1/tables/{t}/items/{k}`.
 * With STUB_FORWARD_MS, a write to the `ledger` table is answered after that long with 502
 * `Tandem-Outcome: unknown`: what a healthy site answers when its forward to a paused owner times out.
 */
export const stubSiteScript = `
import { createServer } from 'node:http';
const id = process.env.STUB_SITE;
const forwardMs = Number(process.env.STUB_FORWARD_MS ?? 0);
const items = new Map();
const server = createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const body = Buffer.concat(chunks).toString('utf8');
    const h = { 'content-type': 'application/json', 'tandem-site': id };
    if (req.url === '/ready' || req.url === '/health') { res.writeHead(200, h); res.end('{"ready":true}'); return; }
    if (forwardMs > 0 && req.method !== 'GET' && /^\\/v1\\/tables\\/ledger\\//.test(req.url)) {
      // a write to the global table, forwarded to its owner, which never answers (paused): the
      // site's forward times out and it answers that the outcome is unknown
      setTimeout(() => {
        res.writeHead(502, { ...h, 'content-type': 'application/problem+json', 'tandem-outcome': 'unknown' });
        res.end(JSON.stringify({ type: 'https://tandem.dev/problems/outcome-unknown', status: 502, title: 'Outcome unknown', detail: 'forward timed out' }));
      }, forwardMs);
      return;
    }
    const m = /^\\/v1\\/tables\\/[^/]+\\/items\\/([^/?]+)/.exec(req.url);
    if (m && req.method === 'PUT') { items.set(m[1], body); res.writeHead(200, h); res.end(JSON.stringify({ key: m[1], origin: id })); return; }
    if (m && req.method === 'GET') {
      if (!items.has(m[1])) { res.writeHead(404, h); res.end('{"status":404}'); return; }
      res.writeHead(200, h); res.end(JSON.stringify({ key: m[1], value: JSON.parse(items.get(m[1])), origin: id })); return;
    }
    res.writeHead(200, h); res.end(JSON.stringify({ site: id, method: req.method, path: req.url }));
  });
});
server.keepAliveTimeout = 65000;
server.listen(Number(process.env.STUB_PORT ?? 0), '127.0.0.1', () => process.stdout.write('listening ' + server.address().port + '\\n'));
process.on('SIGTERM', () => server.close(() => process.exit(0)));
`;

/** mulberry32: a small seeded generator, so that random policies replay exactly in tests. */
export function seededRandom(seed: number): Random {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return { next, int: (maxExclusive) => Math.floor(next() * maxExclusive) };
}

export function routerTestConfig(
  sites: { id: string; url: string; app?: string; region?: string; location?: { lat: number; lon: number } }[],
  router: Record<string, unknown> = {},
  tables: Record<string, unknown> = { profiles: { pattern: 'local' } },
): ClusterConfig {
  return parseConfig(
    {
      cluster: 'test',
      secret: 'test-secret-0123456789',
      sites: sites.map((s) => ({
        id: s.id,
        url: s.url,
        ...(s.app === undefined ? {} : { app: s.app }),
        ...(s.region === undefined ? {} : { region: s.region }),
        ...(s.location === undefined ? {} : { location: s.location }),
      })),
      tables,
      router: {
        listen: '127.0.0.1:0',
        ...router,
        healthCheck: { intervalMs: 50, timeoutMs: 300, unhealthyAfter: 2, healthyAfter: 2, ...((router.healthCheck as object) ?? {}) },
      },
    },
    'test config',
  );
}

/** Polls `condition` until it holds or `timeoutMs` passes; returns the time it took. */
export async function waitFor(condition: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<number> {
  const started = realClock.monotonicMs();
  for (;;) {
    if (await condition()) return realClock.monotonicMs() - started;
    if (realClock.monotonicMs() - started > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await realTimers.sleep(10);
  }
}

export const sleep = (ms: number): Promise<void> => realTimers.sleep(ms);
