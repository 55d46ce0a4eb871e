// The router's own API under `/_tandem/router/` (CONTRACT.md, "Router"): status, dials, metrics,
// liveness and readiness. Everything else under `/_tandem/` is 404; other paths are proxied.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { timingSafeEqual } from 'node:crypto';
import type { Registry } from 'prom-client';
import type { PolicyName } from '../config/router-schema.js';
import { sendProblem } from './http-proxy.js';
import type { SiteTable } from './site-table.js';

export const adminPrefix = '/_tandem/';
/** Bound on an admin request body (a dial is a few bytes). */
const adminBodyBytesMax = 4 * 1024;

export interface RouterStatus {
  router: string;
  policy: readonly PolicyName[];
  failOpen: boolean;
  ready: boolean;
  sites: Record<
    string,
    {
      healthy: boolean;
      state: string;
      rttMs: number | null;
      dial: number;
      weight: number;
      /** Share of the requests answered in the last 10 s that this site served, 0..1. */
      share: number;
      /** Responses this site gave that went to clients. */
      requests: number;
      /** Attempts sent to this site, retries included. */
      attempts: number;
      target: string;
      lastCheck: { ok: boolean; at: string; detail?: string } | null;
    }
  >;
}

export function routerStatus(table: SiteTable, routerId: string, policy: readonly PolicyName[], failOpen: boolean, ready: boolean): RouterStatus {
  const sites: RouterStatus['sites'] = {};
  for (const site of table.list()) {
    let requests = 0;
    for (const n of site.responses.values()) requests += n;
    sites[site.id] = {
      healthy: site.health.state !== 'down',
      state: site.health.state,
      rttMs: site.rttMs === undefined ? null : Math.round(site.rttMs * 1000) / 1000,
      dial: site.dial,
      weight: site.weight,
      share: Math.round(table.recentShare(site) * 10_000) / 10_000,
      requests,
      attempts: site.attempts,
      target: site.target.origin + site.target.basePath,
      lastCheck:
        site.lastCheck === undefined
          ? null
          : {
              ok: site.lastCheck.ok,
              at: new Date(site.lastCheck.atWallMs).toISOString(),
              ...(site.lastCheck.detail === undefined ? {} : { detail: site.lastCheck.detail }),
            },
    };
  }
  return { router: routerId, policy, failOpen, ready, sites };
}

export interface AdminContext {
  table: SiteTable;
  routerId: string;
  policy: readonly PolicyName[];
  failOpen: boolean;
  adminToken: string | undefined;
  metrics: Registry;
  /** The first round of health checks is done. */
  isReady(): boolean;
}

function sendJson(res: ServerResponse, status: number, value: unknown): void {
  const body = JSON.stringify(value);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store' });
  res.end(body);
}

function authorized(req: IncomingMessage, token: string | undefined): boolean {
  if (token === undefined) return true;
  const given = Buffer.from(req.headers.authorization ?? '');
  const expected = Buffer.from(`Bearer ${token}`);
  return given.length === expected.length && timingSafeEqual(given, expected);
}

function readSmallBody(req: IncomingMessage): Promise<string | undefined> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let total = 0;
    req.on('data', (c: Buffer) => {
      total += c.length;
      if (total > adminBodyBytesMax) {
        resolve(undefined);
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.once('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.once('error', () => resolve(undefined));
  });
}

export async function handleAdmin(ctx: AdminContext, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const url = new URL(req.url ?? '/', 'http://router');
  const path = url.pathname;
  const method = req.method ?? 'GET';
  const { table } = ctx;

  if (path === '/_tandem/router/status' && (method === 'GET' || method === 'HEAD')) {
    sendJson(res, 200, routerStatus(table, ctx.routerId, ctx.policy, ctx.failOpen, ctx.isReady()));
    return;
  }
  if (path === '/_tandem/router/health' && method === 'GET') {
    sendJson(res, 200, { status: 'ok' });
    return;
  }
  if (path === '/_tandem/router/ready' && method === 'GET') {
    const anyHealthy = table.list().some((s) => s.health.state === 'healthy');
    const ready = ctx.isReady() && anyHealthy;
    sendJson(res, ready ? 200 : 503, { ready, firstRoundDone: ctx.isReady(), healthySites: table.list().filter((s) => s.health.state === 'healthy').map((s) => s.id) });
    return;
  }
  if (path === '/_tandem/router/metrics' && method === 'GET') {
    const text = await ctx.metrics.metrics();
    res.writeHead(200, { 'content-type': ctx.metrics.contentType });
    res.end(text);
    return;
  }
  if (path === '/_tandem/router/dials' && method === 'GET') {
    sendJson(res, 200, Object.fromEntries(table.list().map((s) => [s.id, s.dial])));
    return;
  }
  const dial = /^\/_tandem\/router\/dials\/([^/]+)$/.exec(path);
  if (dial) {
    if (method !== 'PUT') {
      sendProblem(res, { type: 'method-not-allowed', title: 'Method not allowed', status: 405, detail: `${method} ${path}: use PUT` }, { allow: 'PUT' });
      return;
    }
    if (!authorized(req, ctx.adminToken)) {
      sendProblem(res, { type: 'unauthorized', title: 'Unauthorized', status: 401, detail: 'this router needs Authorization: Bearer <adminToken>' }, { 'www-authenticate': 'Bearer' });
      return;
    }
    const siteId = decodeURIComponent(dial[1]!);
    const text = await readSmallBody(req);
    let percent: unknown;
    try {
      percent = text === undefined ? undefined : (JSON.parse(text) as { percent?: unknown }).percent;
    } catch {
      percent = undefined;
    }
    if (typeof percent !== 'number' || !Number.isFinite(percent) || percent < 0 || percent > 100) {
      const body = {
        type: 'validation',
        title: 'Invalid dial',
        status: 400,
        detail: 'expected a JSON body { "percent": 0..100 }',
        errors: [{ path: 'percent', message: 'expected a number from 0 to 100' }],
      };
      const json = JSON.stringify(body);
      res.writeHead(400, { 'content-type': 'application/problem+json', 'content-length': Buffer.byteLength(json) });
      res.end(json);
      return;
    }
    if (!table.setDial(siteId, percent)) {
      sendProblem(res, { type: 'not-found', title: 'Unknown site', status: 404, detail: `no site ${siteId} in this router's config` });
      return;
    }
    sendJson(res, 200, { site: siteId, percent });
    return;
  }
  sendProblem(res, { type: 'not-found', title: 'Not found', status: 404, detail: `${method} ${path} is not part of the router API` });
}
