// The router in process against stub sites on free ports: proxying, retries, passive and active
// health, dials, policies, the status API, metrics and graceful stop.
import { afterEach, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { silentLogger, type Env } from '../platform/env.js';
import { realClock, realRandom, realTimers, realTransport } from '../platform/real/real-env.js';
import { startRouter, type RunningRouter } from './index.js';
import { routerTestConfig, seededRandom, sleep, startStubSite, waitFor, type StubSite } from './testing/stub-site.js';
import { freePort as deadPort } from '../cluster/ports.js';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!();
});

function testEnv(seed = 1): Env {
  const transport = realTransport();
  cleanups.push(() => transport.close());
  return { clock: realClock, timers: realTimers, random: seed === 0 ? realRandom : seededRandom(seed), transport, log: silentLogger };
}

async function stubs(...ids: string[]): Promise<StubSite[]> {
  const sites = await Promise.all(ids.map((id) => startStubSite(id)));
  cleanups.push(async () => {
    await Promise.all(sites.map((s) => s.close().catch(() => undefined)));
  });
  return sites;
}

async function router(sites: { id: string; url: string; app?: string; region?: string }[], routerConfig: Record<string, unknown> = {}, seed = 1): Promise<RunningRouter> {
  const r = await startRouter(routerTestConfig(sites, routerConfig), { env: testEnv(seed), dnsListen: null });
  cleanups.push(() => r.stop());
  return r;
}

async function get(r: RunningRouter, path: string, headers: Record<string, string> = {}) {
  const res = await request(`${r.url}${path}`, { headers });
  const text = await res.body.text();
  return { status: res.statusCode, headers: res.headers, text, json: () => JSON.parse(text) as Record<string, unknown> };
}

describe('router: proxy', () => {
  it('forwards method, path, headers and body, and adds Tandem-Site and X-Forwarded-*', async () => {
    const [a] = await stubs('a');
    const r = await router([a!], { policy: 'failover' });
    const res = await request(`${r.url}/v1/tables/t/items/k%20x?x=1`, {
      method: 'PUT',
      headers: { 'content-type': 'application/json', 'x-custom': 'yes', connection: 'keep-alive' },
      body: '{"v":1}',
    });
    const echo = (await res.body.json()) as { method: string; path: string; headers: Record<string, string>; body: string; site: string };
    expect(res.statusCode).toBe(200);
    expect(res.headers['tandem-site']).toBe('a');
    expect(res.headers['set-cookie']).toEqual(['a=1', 'b=2']);
    expect(echo).toMatchObject({ method: 'PUT', path: '/v1/tables/t/items/k%20x?x=1', body: '{"v":1}' });
    expect(echo.headers['x-custom']).toBe('yes');
    expect(echo.headers['x-forwarded-for']).toBe('127.0.0.1');
    expect(echo.headers['x-forwarded-proto']).toBe('http');
    expect(echo.headers['x-forwarded-host']).toBe(new URL(r.url).host);
  });

  it('streams large and chunked bodies both ways', async () => {
    const [a] = await stubs('a');
    const r = await router([a!], { policy: 'failover', retry: { bodyBytesMax: 1024 } });
    const big = await request(`${r.url}/big?bytes=3000000`);
    expect((await big.body.arrayBuffer()).byteLength).toBe(3_000_000);
    const stream = await get(r, '/stream');
    expect(stream.text).toBe('chunk 1\nchunk 2\nchunk 3\nend\n');
    // a body over bodyBytesMax is streamed to the site, not kept
    const up = await request(`${r.url}/upload`, { method: 'POST', body: Buffer.alloc(200_000, 1) });
    expect(((await up.body.json()) as { bodyBytes: number }).bodyBytes).toBe(200_000);
    const head = await request(`${r.url}/x`, { method: 'HEAD' });
    expect(head.statusCode).toBe(200);
    await head.body.text();
  });

  it('answers its own API under /_tandem/ and 404 for unknown router paths', async () => {
    const [a, b] = await stubs('a', 'b');
    const r = await router([a!, b!]);
    const status = (await get(r, '/_tandem/router/status')).json() as { sites: Record<string, { healthy: boolean; dial: number; rttMs: number }> };
    expect(Object.keys(status.sites)).toEqual(['a', 'b']);
    expect(status.sites.a).toMatchObject({ healthy: true, dial: 100 });
    expect(typeof status.sites.a!.rttMs).toBe('number');
    expect((await get(r, '/_tandem/router/ready')).status).toBe(200);
    expect((await get(r, '/_tandem/nope')).status).toBe(404);
    await get(r, '/x');
    const metrics = await get(r, '/_tandem/router/metrics');
    expect(metrics.text).toContain('tandem_router_requests_total');
    expect(metrics.text).toMatch(/tandem_router_site_healthy\{site="a",router="router"\} 1/);
  });
});

describe('router: retries and passive health', () => {
  it('retries a GET and a POST on another site when the first refuses connections (nothing was sent)', async () => {
    const [a, b] = await stubs('a', 'b');
    const r = await router([a!, b!], { policy: 'failover', healthCheck: { intervalMs: 10_000 } });
    await a!.close(); // still healthy for the router: the next attempt is refused
    const res = await get(r, '/v1/tables/t/items/k');
    expect(res.status).toBe(200);
    expect(res.headers['tandem-site']).toBe('b');
    expect(r.status().sites.a!.healthy).toBe(false); // passive ejection, at once
  });

  it('a refused POST goes elsewhere: not a byte of it was sent', async () => {
    const [a, b] = await stubs('a', 'b');
    const r = await router([a!, b!], { policy: 'failover', healthCheck: { intervalMs: 10_000 } });
    await a!.close();
    const post = await request(`${r.url}/v1/batch`, { method: 'POST', body: '{"ops":[]}' });
    expect(post.statusCode).toBe(200);
    expect(post.headers['tandem-site']).toBe('b');
    await post.body.text();
  });

  it('a connection reset after the request arrived: PUT is repeated elsewhere, POST answers 502 Tandem-Outcome: unknown', async () => {
    const [a, b] = await stubs('a', 'b');
    const r = await router([a!, b!], { policy: 'failover', passive: { statusFailuresToEject: 1 }, healthCheck: { intervalMs: 10_000 } });
    a!.resetConnections = true;
    const put = await request(`${r.url}/v1/tables/t/items/k`, { method: 'PUT', body: '{"v":2}' });
    expect(put.statusCode).toBe(200);
    expect(put.headers['tandem-site']).toBe('b');
    await put.body.text();
    expect(b!.puts.get('/v1/tables/t/items/k')).toBe('{"v":2}');
    // bring `a` back into rotation for the POST
    await r.updateSites([{ id: 'b', url: b!.url }]);
    await r.updateSites([{ id: 'a', url: a!.url }, { id: 'b', url: b!.url }]);
    const before = b!.requests;
    const post = await request(`${r.url}/v1/batch`, { method: 'POST', body: '{"ops":[]}' });
    expect(post.statusCode).toBe(502);
    expect(post.headers['tandem-outcome']).toBe('unknown');
    await post.body.text();
    expect(b!.requests).toBe(before);
  });

  it('never repeats a POST or PATCH that may have arrived at a site that hangs; only the timeout of a request the site serves alone ejects it', async () => {
    const [a, b] = await stubs('a', 'b');
    const r = await router([a!, b!], { policy: 'failover', upstreamTimeoutMs: 300, forwardedTimeoutMs: 600, healthCheck: { intervalMs: 10_000 } });
    a!.hang = true; // accepts, reads, never answers: the write may have been applied
    // a batch, which a site may forward to an owner: it waits forwardedTimeoutMs, and its timeout is not `a`'s failure
    const post = await request(`${r.url}/v1/batch`, { method: 'POST', body: '{"ops":[]}' });
    expect(post.statusCode).toBe(502);
    expect(post.headers['tandem-outcome']).toBe('unknown');
    await post.body.text();
    expect(r.status().sites.a!.healthy).toBe(true);
    // a PATCH of a local table, which the site serves alone: its timeout ejects `a` at once (passive)
    const patch = await request(`${r.url}/v1/tables/profiles/items/k`, { method: 'PATCH', body: '{"increment":{"n":1}}' });
    expect(patch.statusCode).toBe(502);
    expect(patch.headers['tandem-outcome']).toBe('unknown');
    await patch.body.text();
    expect(b!.requests).toBe(0);
    expect(r.status().sites.a!.healthy).toBe(false);
    const next = await request(`${r.url}/v1/batch`, { method: 'POST', body: '{"ops":[]}' });
    expect(next.statusCode).toBe(200);
    expect(next.headers['tandem-site']).toBe('b');
    await next.body.text();
  });

  it('answers a conditional PUT whose fate is unknown with 502 Tandem-Outcome: unknown', async () => {
    const [a, b] = await stubs('a', 'b');
    const r = await router([a!, b!], { policy: 'failover', upstreamTimeoutMs: 300, healthCheck: { intervalMs: 10_000 } });
    a!.hang = true;
    const res = await request(`${r.url}/v1/tables/t/items/k`, { method: 'PUT', headers: { 'if-match': '"v1"' }, body: '{}' });
    expect(res.statusCode).toBe(502);
    expect(res.headers['tandem-outcome']).toBe('unknown');
    await res.body.text();
    expect(b!.puts.size).toBe(0);
  });

  it('a GET to a site that hangs times out and is retried: the client sees no error', async () => {
    const [a, b] = await stubs('a', 'b');
    const r = await router([a!, b!], { policy: 'failover', upstreamTimeoutMs: 300, healthCheck: { intervalMs: 10_000 } });
    a!.hang = true;
    const res = await get(r, '/v1/tables/t/items/k');
    expect(res.status).toBe(200);
    expect(res.headers['tandem-site']).toBe('b');
    expect(r.status().sites.a!.healthy).toBe(false);
  });

  it('ejects a site after consecutive 500s but never for 503, and retries both where allowed', async () => {
    const [a, b] = await stubs('a', 'b');
    const r = await router([a!, b!], { policy: 'failover', passive: { statusFailuresToEject: 3 }, healthCheck: { intervalMs: 10_000 } });
    a!.forcedStatus = 503;
    for (let i = 0; i < 5; i++) {
      const res = await get(r, '/x');
      expect(res.status).toBe(200);
      expect(res.headers['tandem-site']).toBe('b');
    }
    expect(r.status().sites.a!.healthy).toBe(true);
    // a POST answered 503 is not retried: the client gets the site's 503
    const post = await request(`${r.url}/x`, { method: 'POST', body: 'x' });
    expect(post.statusCode).toBe(503);
    await post.body.text();
    a!.forcedStatus = 500;
    for (let i = 0; i < 3; i++) expect((await get(r, '/x')).status).toBe(200);
    expect(r.status().sites.a!.healthy).toBe(false);
  });

  it('a request that fails alike on every site (a poison request) counts against none; a site that fails everything is still ejected', async () => {
    const [a, b, c] = await stubs('a', 'b', 'c');
    for (const site of [a!, b!, c!]) site.failBodiesMatching = /1e400/; // a number JSON cannot hold
    const r = await router([a!, b!, c!], { policy: 'failover', passive: { statusFailuresToEject: 3 }, healthCheck: { intervalMs: 10_000 } });
    for (let i = 0; i < 4; i++) {
      const put = await request(`${r.url}/v1/tables/t/items/k${i}`, { method: 'PUT', body: '{"a":1e400}' });
      expect(put.statusCode).toBe(500); // the last site's own answer, not the router's 502
      expect(put.headers['tandem-site']).toBe('c');
      await put.body.text();
    }
    expect(Object.values(r.status().sites).map((s) => s.healthy)).toEqual([true, true, true]);
    expect((await get(r, '/_tandem/router/metrics')).text).toMatch(/tandem_router_requests_blamed_total\{router="router"\} 4/);
    a!.forcedStatus = 500;
    for (let i = 0; i < 3; i++) {
      const res = await get(r, '/x');
      expect(res.status).toBe(200);
      expect(res.headers['tandem-site']).toBe('b');
    }
    expect(r.status().sites.a!.healthy).toBe(false);
    expect(r.status().sites.b!.healthy).toBe(true);
  });

  it('a site answering 502 Tandem-Outcome: unknown for a write it forwarded is not ejected; the answer reaches the client', async () => {
    const [a, b] = await stubs('a', 'b');
    const r = await router([a!, b!], { policy: 'failover', passive: { statusFailuresToEject: 3 }, healthCheck: { intervalMs: 10_000 } });
    for (let i = 0; i < 5; i++) {
      const res = await request(`${r.url}/outcome-unknown/${i}`, { method: 'PATCH', body: '{}' });
      expect(res.statusCode).toBe(502);
      expect(res.headers['tandem-outcome']).toBe('unknown');
      expect(res.headers['tandem-site']).toBe('a');
      await res.body.text();
    }
    expect(r.status().sites.a!.healthy).toBe(true);
  });

  it('two sites that fail alike are both ejected when a third serves the same requests', async () => {
    const [a, b, c] = await stubs('a', 'b', 'c');
    const r = await router([a!, b!, c!], { policy: 'failover', passive: { statusFailuresToEject: 3 }, healthCheck: { intervalMs: 10_000 } });
    a!.forcedStatus = 500;
    b!.forcedStatus = 500;
    for (let i = 0; i < 3; i++) {
      const res = await get(r, '/x');
      expect(res.status).toBe(200);
      expect(res.headers['tandem-site']).toBe('c');
    }
    expect(r.status().sites.a!.healthy).toBe(false);
    expect(r.status().sites.b!.healthy).toBe(false);
    expect(c!.requests).toBe(3);
    expect((await get(r, '/x')).headers['tandem-site']).toBe('c');
    expect(a!.requests + b!.requests).toBe(6);
  });

  it('when every site fails, a GET gets 502 (or 504 on timeouts) without Tandem-Outcome', async () => {
    const r = await router([{ id: 'a', url: `http://127.0.0.1:${await deadPort()}` }, { id: 'b', url: `http://127.0.0.1:${await deadPort()}` }], {
      failOpen: true,
      healthCheck: { intervalMs: 10_000 },
    });
    const res = await get(r, '/x');
    expect(res.status).toBe(502);
    expect(res.headers['tandem-outcome']).toBeUndefined();
    expect(res.headers['content-type']).toBe('application/problem+json');
  });

  it('fails closed with 503 when configured and no site is healthy', async () => {
    const r = await router([{ id: 'a', url: `http://127.0.0.1:${await deadPort()}` }], { failOpen: false });
    const res = await get(r, '/x');
    expect(res.status).toBe(503);
    expect(res.headers['retry-after']).toBe('1');
  });
});

describe('router: gray failure (attribution) and writes refused before anything was written', () => {
  const tables = { profiles: { pattern: 'local' }, ledger: { pattern: 'global', writeSite: 'a', durability: 'quorum' } };
  const patchLedger = async (r: RunningRouter, key = 'acct') => {
    const res = await request(`${r.url}/v1/tables/ledger/items/${key}`, { method: 'PATCH', body: '{"increment":{"n":1}}' });
    const text = await res.body.text();
    return { status: res.statusCode, headers: res.headers, text };
  };
  async function ledgerRouter(sites: StubSite[], routerConfig: Record<string, unknown> = {}): Promise<RunningRouter> {
    const r = await startRouter(
      routerTestConfig(sites, { policy: 'failover', passive: { statusFailuresToEject: 3 }, healthCheck: { intervalMs: 10_000 }, ...routerConfig }, tables),
      { env: testEnv(), dnsListen: null },
    );
    cleanups.push(() => r.stop());
    return r;
  }

  it('a site slow to answer forwarded writes stays in; one that stops answering goes, and the writes it holds are retried at once', async () => {
    const [a, b] = await stubs('a', 'b');
    const r = await ledgerRouter([a!, b!], { upstreamTimeoutMs: 200, forwardedTimeoutMs: 5_000, healthCheck: { intervalMs: 50, timeoutMs: 200, unhealthyAfter: 2 } });
    a!.writeDelayMs = 600; // its owner is slow: three times the upstream timeout, well within the forward budget
    const slow = await Promise.all([patchLedger(r, 'x'), patchLedger(r, 'y'), patchLedger(r, 'z')]);
    for (const res of slow) {
      expect(res.status).toBe(200);
      expect(res.headers['tandem-site']).toBe('a');
    }
    expect(r.status().sites.a!.healthy).toBe(true);
    expect(b!.requests).toBe(0);
    a!.hang = true; // paused: no answer to anything, health checks included
    const started = realClock.monotonicMs();
    const put = await request(`${r.url}/v1/tables/ledger/items/acct`, { method: 'PUT', body: '{"n":1}' });
    expect(put.statusCode).toBe(200);
    expect(put.headers['tandem-site']).toBe('b'); // given up on at `a` once its checks failed, repeated at `b`
    await put.body.text();
    expect(realClock.monotonicMs() - started).toBeLessThan(4_000); // not the forward budget
    expect(r.status().sites.a!.healthy).toBe(false);
  });

  it('a PATCH answered 503 owner-unavailable or owner-changed goes to another site: nothing was written', async () => {
    const [a, b] = await stubs('a', 'b');
    const r = await ledgerRouter([a!, b!]);
    for (const type of ['owner-unavailable', 'owner-changed', 'quorum-unavailable']) {
      a!.problem = { status: 503, type, count: 1, retryAfter: '1' };
      const before = { a: a!.requests, b: b!.requests };
      const res = await patchLedger(r);
      expect(res.status, type).toBe(200);
      expect(res.headers['tandem-site']).toBe('b');
      expect({ a: a!.requests - before.a, b: b!.requests - before.b }).toEqual({ a: 1, b: 1 });
    }
    expect(r.status().sites.a!.healthy).toBe(true);
  });

  it('a PATCH answered an ambiguous 503, 504 durability-timeout or 502 Tandem-Outcome: unknown is answered as is and never repeated; none ejects the site', async () => {
    const [a, b] = await stubs('a', 'b');
    const r = await ledgerRouter([a!, b!]);
    const cases = [
      { status: 503, type: 'store-failed' },
      { status: 504, type: 'durability-timeout' },
      { status: 504, type: 'lease-expired' },
      { status: 502, type: 'outcome-unknown', outcomeUnknown: true },
    ];
    for (const c of [...cases, ...cases]) {
      a!.problem = { ...c, count: 1 };
      const res = await patchLedger(r);
      expect(res.status, c.type).toBe(c.status);
      expect(res.headers['tandem-site']).toBe('a');
      expect(JSON.parse(res.text)).toMatchObject({ type: `https://tandem.dev/problems/${c.type}`, status: c.status, detail: 'stub a' });
    }
    expect(b!.requests).toBe(0);
    expect(r.status().sites.a!.healthy).toBe(true); // 8 answers, statusFailuresToEject 3
    // a 504 that is not a healthy owner's answer is the site's own failure
    a!.problem = { status: 504, type: 'gateway-timeout', count: 3 };
    for (let i = 0; i < 3; i++) expect((await patchLedger(r)).status).toBe(504);
    expect(r.status().sites.a!.healthy).toBe(false);
  });

  it('with one site, a PATCH answered 503 owner-changed is sent again after its Retry-After, within the retry budget', async () => {
    const [a] = await stubs('a');
    const r = await ledgerRouter([a!]);
    a!.problem = { status: 503, type: 'owner-changed', count: 1, retryAfter: '1' };
    const started = realClock.monotonicMs();
    const res = await patchLedger(r);
    expect(res.status).toBe(200);
    expect(realClock.monotonicMs() - started).toBeGreaterThanOrEqual(950);
    expect(a!.requests).toBe(2);
    // a Retry-After beyond the budget: the site's 503 is the answer
    const tight = await ledgerRouter([a!], { retry: { budgetMs: 500 } });
    a!.problem = { status: 503, type: 'owner-changed', count: 1, retryAfter: '1' };
    const refused = await patchLedger(tight);
    expect(refused.status).toBe(503);
    expect(refused.headers['retry-after']).toBe('1');
    expect(JSON.parse(refused.text)).toMatchObject({ type: 'https://tandem.dev/problems/owner-changed' });
    expect(a!.requests).toBe(3);
  });
});

describe('router: active health', () => {
  it('takes a site out after unhealthyAfter failed checks and back after healthyAfter passing ones', async () => {
    const [a, b] = await stubs('a', 'b');
    const r = await router([a!, b!], { policy: 'failover', healthCheck: { intervalMs: 30, unhealthyAfter: 2, healthyAfter: 3 } });
    expect((await get(r, '/x')).headers['tandem-site']).toBe('a');
    a!.readyStatus = 503;
    await waitFor(() => !r.status().sites.a!.healthy, 5_000, 'a to go down');
    expect((await get(r, '/x')).headers['tandem-site']).toBe('b');
    a!.readyStatus = 200;
    await waitFor(() => r.status().sites.a!.healthy, 5_000, 'a to come back');
    expect((await get(r, '/x')).headers['tandem-site']).toBe('a');
  });

  it('calculated health: a site is down when its app or its node is not ready', async () => {
    const [nodeA, appA, b] = await stubs('a', 'a', 'b');
    const r = await router([{ id: 'a', url: nodeA!.url, app: appA!.url }, b!], { policy: 'failover', healthCheck: { intervalMs: 30 } });
    const res = await get(r, '/x');
    expect(res.headers['tandem-site']).toBe('a');
    expect(appA!.requests).toBe(1); // traffic goes to the app, not the node
    expect(nodeA!.requests).toBe(0);
    appA!.readyStatus = 500;
    await waitFor(() => !r.status().sites.a!.healthy, 5_000, 'a to go down with its app');
    appA!.readyStatus = 200;
    await waitFor(() => r.status().sites.a!.healthy, 5_000, 'a to come back');
    nodeA!.readyStatus = 503;
    await waitFor(() => !r.status().sites.a!.healthy, 5_000, 'a to go down with its node');
  });

  it('stops checking a removed site', async () => {
    const [a, b] = await stubs('a', 'b');
    const r = await router([a!, b!], { healthCheck: { intervalMs: 20 } });
    await r.updateSites([{ id: 'b', url: b!.url }]);
    expect(Object.keys(r.status().sites)).toEqual(['b']);
    const before = a!.checks;
    await sleep(200);
    expect(a!.checks).toBe(before);
    expect(b!.checks).toBeGreaterThan(2);
  });
});

describe('router: policies and dials end to end', () => {
  it('latency sends traffic to the nearer site (a delaying stub is far away)', async () => {
    const [far, near] = await stubs('far', 'near');
    far!.delayMs = 40;
    const r = await router([far!, near!], { policy: 'latency', healthCheck: { intervalMs: 30, timeoutMs: 1000 } });
    await waitFor(() => (r.status().sites.far!.rttMs ?? 0) > (r.status().sites.near!.rttMs ?? 0) + 20, 5_000, 'RTTs to separate');
    for (let i = 0; i < 5; i++) expect((await get(r, '/x')).headers['tandem-site']).toBe('near');
  });

  it('affinity follows the header, then the cookie, and falls back when the home site is down', async () => {
    const [a, b, c] = await stubs('a', 'b', 'c');
    const r = await router([a!, { ...b!, region: 'eu-west-1' }, c!].map((s) => ({ id: s.id, url: s.url, ...('region' in s ? { region: s.region as string } : {}) })), {
      policy: ['affinity', 'failover'],
    });
    expect((await get(r, '/x', { 'tandem-home': 'c' })).headers['tandem-site']).toBe('c');
    expect((await get(r, '/x', { 'tandem-home': 'eu-west-1' })).headers['tandem-site']).toBe('b');
    expect((await get(r, '/x', { cookie: 'x=1; tandem_home=c' })).headers['tandem-site']).toBe('c');
    expect((await get(r, '/x')).headers['tandem-site']).toBe('a');
    c!.readyStatus = 503;
    await waitFor(() => !r.status().sites.c!.healthy, 5_000, 'c to go down');
    expect((await get(r, '/x', { 'tandem-home': 'c' })).headers['tandem-site']).toBe('a');
  });

  it('geolocation routes by a trusted header and by the CIDR map', async () => {
    const [a, b] = await stubs('a', 'b');
    const r = await router([a!, b!], {
      policy: ['geolocation', 'failover'],
      geolocation: { header: 'x-client-region', countries: { DE: 'b' }, cidrs: { '127.0.0.0/8': 'a' } },
    });
    expect((await get(r, '/x')).headers['tandem-site']).toBe('a');
    expect((await get(r, '/x', { 'x-client-region': 'DE' })).headers['tandem-site']).toBe('b');
  });

  it('dials move the share of traffic (weighted policy, within statistical bounds) and dial 0 drains', async () => {
    const [a, b] = await stubs('a', 'b');
    const r = await router([a!, b!], { policy: 'weighted' }, 5);
    const share = async (n: number) => {
      let toB = 0;
      for (let i = 0; i < n; i++) if ((await get(r, '/x')).headers['tandem-site'] === 'b') toB++;
      return toB / n;
    };
    expect(Math.abs((await share(400)) - 0.5)).toBeLessThan(0.1);
    const dial = await request(`${r.url}/_tandem/router/dials/b`, { method: 'PUT', body: JSON.stringify({ percent: 25 }) });
    expect(dial.statusCode).toBe(200);
    expect(await dial.body.json()).toEqual({ site: 'b', percent: 25 });
    // weights 1 : 0.25 → b gets 20%
    expect(Math.abs((await share(400)) - 0.2)).toBeLessThan(0.08);
    r.setDial('b', 0);
    expect(await share(50)).toBe(0);
    const status = r.status();
    expect(status.sites.b!.dial).toBe(0);
    expect(status.sites.a!.share).toBeGreaterThan(0.5);
    const bad = await request(`${r.url}/_tandem/router/dials/b`, { method: 'PUT', body: JSON.stringify({ percent: 101 }) });
    expect(bad.statusCode).toBe(400);
    await bad.body.text();
    const unknown = await request(`${r.url}/_tandem/router/dials/zz`, { method: 'PUT', body: JSON.stringify({ percent: 1 }) });
    expect(unknown.statusCode).toBe(404);
    await unknown.body.text();
  });

  it('the dials API needs the admin token when one is configured', async () => {
    const [a] = await stubs('a');
    const r = await router([a!], { adminToken: 'secret-token-0123456789' });
    const denied = await request(`${r.url}/_tandem/router/dials/a`, { method: 'PUT', body: '{"percent":10}' });
    expect(denied.statusCode).toBe(401);
    await denied.body.text();
    const ok = await request(`${r.url}/_tandem/router/dials/a`, {
      method: 'PUT',
      headers: { authorization: 'Bearer secret-token-0123456789' },
      body: '{"percent":10}',
    });
    expect(ok.statusCode).toBe(200);
    await ok.body.text();
  });
});

describe('router: lifecycle', () => {
  it('stop lets in-flight requests finish, then refuses new connections', async () => {
    const [a] = await stubs('a');
    a!.delayMs = 200;
    const r = await startRouter(routerTestConfig([a!], { healthCheck: { timeoutMs: 1000 } }), { env: testEnv(), dnsListen: null });
    const inFlight = get(r, '/slow');
    await sleep(50);
    await r.stop();
    const res = await inFlight;
    expect(res.status).toBe(200);
    await expect(request(`${r.url}/x`)).rejects.toThrow();
  });

  it('rejects router config that names unknown sites', async () => {
    const [a] = await stubs('a');
    await expect(startRouter(routerTestConfig([a!], { weights: { nope: 2 } }), { env: testEnv(), dnsListen: null })).rejects.toThrow(
      /router\.weights\.nope: unknown site nope/,
    );
  });
});
