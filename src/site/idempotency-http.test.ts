// Idempotency-Key over HTTP: a repeat answers the first answer with Idempotent-Replayed: true and
// writes nothing; the same key with another request is 422 problem+json naming it; a malformed key
// is 400 naming the header; a write forwarded to its owner carries the key, so a retry at another
// site after the first forward was answered is answered by the owner from its record.
import { afterEach, describe, expect, it } from 'vitest';
import { demoConfig } from '../config/demo.js';
import { inProcessSite } from './test-helpers.js';

type Site = Awaited<ReturnType<typeof inProcessSite>>;
const sites: Site[] = [];
afterEach(async () => {
  for (const s of sites.splice(0).reverse()) await s.close();
});

async function site(options: Parameters<typeof inProcessSite>[0] = {}): Promise<Site> {
  const s = await inProcessSite(options);
  sites.push(s);
  return s;
}

const json = { 'content-type': 'application/json' };
const item = (t: string, k: string) => `/v1/tables/${t}/items/${encodeURIComponent(k)}`;
const keyed = (key: string, extra: Record<string, string> = {}) => ({ ...json, 'idempotency-key': key, ...extra });

describe('Idempotency-Key over HTTP', () => {
  it('a repeated PATCH increment answers the first answer with Idempotent-Replayed: true and is applied once', async () => {
    const s = await site();
    const send = () => s.app.inject({ method: 'PATCH', url: item('counters', 'c'), headers: keyed('inc 1'), payload: { increment: { n: 4 } } });
    const first = await send();
    expect(first.statusCode).toBe(200);
    expect(first.headers['idempotent-replayed']).toBeUndefined();
    const vector = (await s.app.inject({ method: 'GET', url: '/v1/status' })).json().vector;
    const again = await send();
    expect(again.statusCode).toBe(200);
    expect(again.json()).toEqual(first.json());
    expect(again.headers['idempotent-replayed']).toBe('true');
    expect(again.headers['etag']).toBe(first.headers['etag']);
    expect(again.headers['tandem-session']).toBeDefined();
    expect((await s.app.inject({ method: 'GET', url: '/v1/status' })).json().vector).toEqual(vector);
    expect((await s.app.inject({ method: 'GET', url: item('counters', 'c') })).json().value).toMatchObject({ n: 4 });
  });

  it('the same key with a different body or item is 422 idempotency-key-reused naming the key; nothing is written', async () => {
    const s = await site();
    expect((await s.app.inject({ method: 'PUT', url: item('profiles', 'a'), headers: keyed('K'), payload: { v: 1 } })).statusCode).toBe(200);
    for (const other of [
      { method: 'PUT' as const, url: item('profiles', 'a'), payload: { v: 2 } },
      { method: 'PUT' as const, url: item('profiles', 'b'), payload: { v: 1 } },
      { method: 'DELETE' as const, url: item('profiles', 'a') },
      { method: 'POST' as const, url: '/v1/batch', payload: { ops: [{ op: 'put', table: 'profiles', key: 'a', value: { v: 1 } }] } },
    ]) {
      const res = await s.app.inject({ ...other, headers: keyed('K') });
      expect(res.statusCode).toBe(422);
      expect(res.headers['content-type']).toMatch(/application\/problem\+json/);
      expect(res.json()).toMatchObject({ type: 'https://tandem.dev/problems/idempotency-key-reused', status: 422, errors: [{ path: 'header.idempotency-key' }] });
      expect(res.json().detail).toContain('"K"');
    }
    expect((await s.app.inject({ method: 'GET', url: item('profiles', 'a') })).json().value).toEqual({ v: 1 });
    expect((await s.app.inject({ method: 'GET', url: item('profiles', 'b') })).statusCode).toBe(404);
  });

  it('a malformed key is 400 naming the header, before anything is written or forwarded', async () => {
    const s = await site();
    for (const bad of ['x'.repeat(129), 'clé', '']) {
      for (const req of [
        { method: 'PUT' as const, url: item('profiles', 'a'), payload: { v: 1 } },
        { method: 'PUT' as const, url: item('orders', 'ap-south:o-1'), payload: { v: 1 } },
        { method: 'POST' as const, url: '/v1/batch', payload: { ops: [{ op: 'put', table: 'profiles', key: 'a', value: { v: 1 } }] } },
      ]) {
        const res = await s.app.inject({ ...req, headers: { ...json, 'idempotency-key': bad } });
        expect(res.statusCode, `${JSON.stringify(bad)} ${req.url}`).toBe(400);
        expect(res.json().errors).toEqual([{ path: 'header.idempotency-key', message: expect.stringContaining('printable ASCII') }]);
      }
    }
    expect((await s.app.inject({ method: 'PUT', url: item('profiles', 'a'), headers: keyed('x'.repeat(128)), payload: { v: 1 } })).statusCode).toBe(200);
    expect((await s.app.inject({ method: 'GET', url: '/v1/status' })).json().vector).toEqual({ [s.node.origin]: 1 });
  });

  it('a repeated batch answers the first batch answer and writes nothing', async () => {
    const s = await site();
    const payload = { ops: [{ op: 'put', table: 'profiles', key: 'x', value: { x: 1 } }, { op: 'patch', table: 'counters', key: 'y', value: { increment: { n: 2 } } }] };
    const first = await s.app.inject({ method: 'POST', url: '/v1/batch', headers: keyed('B'), payload });
    expect(first.statusCode).toBe(200);
    const again = await s.app.inject({ method: 'POST', url: '/v1/batch', headers: keyed('B'), payload });
    expect(again.statusCode).toBe(200);
    expect(again.json()).toEqual(first.json());
    expect(again.headers['idempotent-replayed']).toBe('true');
    expect((await s.app.inject({ method: 'GET', url: item('counters', 'y') })).json().value).toMatchObject({ n: 2 });
  });

  it('a forwarded write retried at another site after the first forward was answered: the owner answers from its record', async () => {
    const base = demoConfig({ sites: 3, basePort: 7100 });
    const owner = await site({ config: base, siteId: 'us-east' });
    const address = await owner.app.listen({ port: 0, host: '127.0.0.1' });
    const config = { ...base, sites: base.sites.map((x) => (x.id === 'us-east' ? { ...x, url: address } : x)) };
    const west = await site({ config, siteId: 'eu-west' });
    const south = await site({ config, siteId: 'ap-south' });
    const url = item('orders', 'us-east:o-1');
    const first = await west.app.inject({ method: 'PUT', url, headers: keyed('order-1'), payload: { total: 10 } });
    expect(first.statusCode).toBe(200);
    expect(first.headers['tandem-site']).toBe('us-east');
    expect(first.json()).toMatchObject({ origin: 'us-east' });
    const ownerVector = owner.node.vector();
    // the client did not see the answer and retries through another site
    const retry = await south.app.inject({ method: 'PUT', url, headers: keyed('order-1'), payload: { total: 10 } });
    expect(retry.statusCode).toBe(200);
    expect(retry.json()).toEqual(first.json());
    expect(retry.headers['idempotent-replayed']).toBe('true');
    expect(retry.headers['etag']).toBe(first.headers['etag']);
    expect(owner.node.vector()).toEqual(ownerVector);
    const reused = await south.app.inject({ method: 'PUT', url, headers: keyed('order-1'), payload: { total: 11 } });
    expect(reused.statusCode).toBe(422);
    expect(reused.json().type).toBe('https://tandem.dev/problems/idempotency-key-reused');
    expect(owner.node.vector()).toEqual(ownerVector);
  });
});
