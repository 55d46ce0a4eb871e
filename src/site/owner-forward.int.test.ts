// A write for an item another site owns is forwarded to the owner, over real sockets here. When no
// answer comes back, what the client is told decides whether it may retry: 503 only when the
// request certainly never reached the owner; 502 with Tandem-Outcome: unknown when it may have.
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import type { FastifyInstance } from 'fastify';
import { demoConfig } from '../config/demo.js';
import { silentLogger, type Env } from '../platform/env.js';
import { realClock, realRandom, realTimers, realTransport } from '../platform/real/real-env.js';
import { buildSiteServer } from './http-server.js';
import { SiteMetrics } from './metrics.js';
import { inProcessSite } from './test-helpers.js';

const forwardTimeoutMs = 300;
const json = { 'content-type': 'application/json' };
const item = (t: string, k: string) => `/v1/tables/${t}/items/${encodeURIComponent(k)}`;
const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** An owner that takes every request in whole and never answers: a stopped process, a stuck quorum. */
async function silentOwner(): Promise<{ url: string; received: string[] }> {
  const received: string[] = [];
  const held: ServerResponse[] = [];
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      received.push(`${req.method} ${req.url} ${body}`);
      held.push(res);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanups.push(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, received };
}

/** A port nobody listens on: a connection there is refused, so nothing is ever sent. */
async function closedPort(): Promise<string> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return `http://127.0.0.1:${port}`;
}

/** us-east, with ap-south (the home of `ap-south:…` keys) reachable at `ownerUrl`. */
async function siteWithOwnerAt(ownerUrl: string): Promise<FastifyInstance> {
  const demo = demoConfig({ sites: 3, basePort: 7100 });
  const config = { ...demo, sites: demo.sites.map((s) => (s.id === 'ap-south' ? { ...s, url: ownerUrl } : s)) };
  const site = await inProcessSite({ config, siteId: 'us-east' });
  const transport = realTransport();
  const env: Env = { clock: realClock, timers: realTimers, random: realRandom, transport, log: silentLogger };
  const app = buildSiteServer({ env, node: site.node, metrics: new SiteMetrics(), forwardTimeoutMs });
  await app.ready();
  cleanups.push(async () => {
    await app.close();
    await transport.close();
    await site.close();
  });
  return app;
}

const writes = [
  { name: 'PUT', method: 'PUT' as const, url: item('orders', 'ap-south:o1'), payload: { n: 1 } },
  { name: 'PATCH', method: 'PATCH' as const, url: item('orders', 'ap-south:o1'), payload: { set: { n: 2 } } },
  { name: 'DELETE', method: 'DELETE' as const, url: item('orders', 'ap-south:o1') },
  { name: 'batch', method: 'POST' as const, url: '/v1/batch', payload: { ops: [{ op: 'put', table: 'orders', key: 'ap-south:o2', value: { n: 3 } }] } },
];

describe('a write forwarded to its owner', () => {
  it('that reached an owner which did not answer in time: 502 Tandem-Outcome: unknown, not a retryable 503', async () => {
    const owner = await silentOwner();
    const app = await siteWithOwnerAt(owner.url);
    const before = (await app.inject({ method: 'GET', url: '/v1/status' })).json();
    for (const [i, w] of writes.entries()) {
      const res = await app.inject({ method: w.method, url: w.url, headers: json, ...(w.payload ? { payload: w.payload } : {}) });
      expect(res.statusCode, w.name).toBe(502);
      expect(res.headers['tandem-outcome'], w.name).toBe('unknown');
      expect(res.headers['retry-after'], w.name).toBeUndefined();
      expect(res.headers['content-type'], w.name).toMatch(/application\/problem\+json/);
      expect(res.json(), w.name).toMatchObject({ type: 'https://tandem.dev/problems/outcome-unknown', status: 502, title: 'Outcome unknown' });
      expect(res.json().detail, w.name).toMatch(/ap-south .*outcome is unknown/);
      // the owner got it, once, whole
      expect(owner.received, w.name).toHaveLength(i + 1);
      expect(owner.received[i], w.name).toBe(`${w.method} ${w.url} ${w.payload ? JSON.stringify(w.payload) : ''}`);
    }
    const after = (await app.inject({ method: 'GET', url: '/v1/status' })).json();
    expect(after.vector).toEqual(before.vector);
    expect(after.digests).toEqual(before.digests);
  });

  it('that never left this site (connection refused): 503 owner-unavailable with Retry-After', async () => {
    const app = await siteWithOwnerAt(await closedPort());
    const before = (await app.inject({ method: 'GET', url: '/v1/status' })).json();
    for (const w of writes) {
      const res = await app.inject({ method: w.method, url: w.url, headers: json, ...(w.payload ? { payload: w.payload } : {}) });
      expect(res.statusCode, w.name).toBe(503);
      expect(res.headers['retry-after'], w.name).toBe('1');
      expect(res.headers['tandem-outcome'], w.name).toBeUndefined();
      expect(res.json(), w.name).toMatchObject({ type: 'https://tandem.dev/problems/owner-unavailable', status: 503 });
    }
    const after = (await app.inject({ method: 'GET', url: '/v1/status' })).json();
    expect(after.vector).toEqual(before.vector);
  });

  it('a strong read of a silent owner stays 503 owner-unavailable: a read is safe to retry', async () => {
    const owner = await silentOwner();
    const app = await siteWithOwnerAt(owner.url);
    const res = await app.inject({ method: 'GET', url: item('orders', 'ap-south:o1'), headers: { 'tandem-consistency': 'strong' } });
    expect(res.statusCode).toBe(503);
    expect(res.headers['retry-after']).toBe('1');
    expect(res.json()).toMatchObject({ type: 'https://tandem.dev/problems/owner-unavailable' });
    expect(res.json().detail).toMatch(new RegExp(`no answer within ${forwardTimeoutMs} ms`));
    expect(owner.received).toEqual([`GET ${item('orders', 'ap-south:o1')} `]);
  });
});
