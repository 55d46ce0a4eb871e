// The data API in process (fastify inject): semantics of CONTRACT.md, and bad input answered with
// a 4xx problem document naming what was wrong, with the store unchanged.
import { fdatasync } from 'node:fs';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { silentLogger, type Env } from '../platform/env.js';
import { realClock, realRandom, realTimers } from '../platform/real/real-env.js';
import { buildSiteServer } from './http-server.js';
import { SiteMetrics } from './metrics.js';
import { inProcessSite } from './test-helpers.js';

type Site = Awaited<ReturnType<typeof inProcessSite>>;
let site: Site;
beforeEach(async () => {
  site = await inProcessSite();
});
afterEach(async () => {
  await site.close();
});

const json = { 'content-type': 'application/json' };
const item = (t: string, k: string) => `/v1/tables/${t}/items/${encodeURIComponent(k)}`;

describe('data API', () => {
  it('PUT then GET round-trips with version, dot, origin, ETag and Tandem-Site', async () => {
    const put = await site.app.inject({ method: 'PUT', url: item('profiles', 'alice'), headers: json, payload: { name: 'Alice' } });
    expect(put.statusCode).toBe(200);
    const w = put.json();
    expect(w).toMatchObject({ key: 'alice', origin: 'us-east' });
    expect(w.dot).toMatch(/^us-east\.[0-9a-z]+:1$/);
    expect(put.headers['etag']).toBe(`"${w.version}"`);
    expect(put.headers['tandem-site']).toBe('us-east');
    const get = await site.app.inject({ method: 'GET', url: item('profiles', 'alice') });
    expect(get.json()).toEqual({ key: 'alice', value: { name: 'Alice' }, version: w.version, origin: 'us-east' });
    const notModified = await site.app.inject({ method: 'GET', url: item('profiles', 'alice'), headers: { 'if-none-match': `"${w.version}"` } });
    expect(notModified.statusCode).toBe(304);
  });

  it('keys are any UTF-8 up to 1024 bytes, percent-encoded, including slashes', async () => {
    for (const key of ['a/b', 'ünï cödé', '🙂', 'x'.repeat(1024), '%2F', 'a?b#c']) {
      const put = await site.app.inject({ method: 'PUT', url: item('profiles', key), headers: json, payload: { k: key } });
      expect(put.statusCode, key).toBe(200);
      const get = await site.app.inject({ method: 'GET', url: item('profiles', key) });
      expect(get.json().value, key).toEqual({ k: key });
    }
  });

  it('PATCH set/unset on merge, increment/add/remove on crdt, 409 for the wrong kind', async () => {
    await site.app.inject({ method: 'PUT', url: item('carts', 'c'), headers: json, payload: { a: 1, b: 2 } });
    await site.app.inject({ method: 'PATCH', url: item('carts', 'c'), headers: json, payload: { set: { c: 3 }, unset: ['a'] } });
    expect((await site.app.inject({ method: 'GET', url: item('carts', 'c') })).json().value).toEqual({ b: 2, c: 3 });
    await site.app.inject({ method: 'PATCH', url: item('counters', 'n'), headers: json, payload: { increment: { n: 5 }, add: { tags: ['x', 'y'] } } });
    await site.app.inject({ method: 'PATCH', url: item('counters', 'n'), headers: json, payload: { increment: { n: -2 }, remove: { tags: ['x'] } } });
    expect((await site.app.inject({ method: 'GET', url: item('counters', 'n') })).json().value).toEqual({ n: 3, tags: ['y'] });
    const wrong = await site.app.inject({ method: 'PATCH', url: item('counters', 'n'), headers: json, payload: { set: { n: 1 } } });
    expect(wrong.statusCode).toBe(409);
    expect(wrong.headers['content-type']).toMatch(/application\/problem\+json/);
    expect(wrong.json().errors[0].path).toBe('set.n');
  });

  it('DELETE answers the tombstone version; GET is then 404; a repeat is harmless', async () => {
    await site.app.inject({ method: 'PUT', url: item('profiles', 'd'), headers: json, payload: { x: 1 } });
    const del = await site.app.inject({ method: 'DELETE', url: item('profiles', 'd') });
    expect(del.statusCode).toBe(200);
    expect((await site.app.inject({ method: 'GET', url: item('profiles', 'd') })).statusCode).toBe(404);
    const again = await site.app.inject({ method: 'DELETE', url: item('profiles', 'd') });
    expect(again.statusCode).toBe(200);
    expect(again.json().version).toBe(del.json().version);
    expect((await site.app.inject({ method: 'DELETE', url: item('profiles', 'never') })).statusCode).toBe(404);
  });

  it('If-Match and If-None-Match: * give 412 when they fail and write nothing', async () => {
    const v1 = (await site.app.inject({ method: 'PUT', url: item('profiles', 'p'), headers: json, payload: { v: 1 } })).json().version;
    const bad = await site.app.inject({ method: 'PUT', url: item('profiles', 'p'), headers: { ...json, 'if-match': '"0000000000000000-us-east-000000000000"' }, payload: { v: 2 } });
    expect(bad.statusCode).toBe(412);
    const ok = await site.app.inject({ method: 'PUT', url: item('profiles', 'p'), headers: { ...json, 'if-match': `"${v1}"` }, payload: { v: 3 } });
    expect(ok.statusCode).toBe(200);
    const exists = await site.app.inject({ method: 'PUT', url: item('profiles', 'p'), headers: { ...json, 'if-none-match': '*' }, payload: { v: 4 } });
    expect(exists.statusCode).toBe(412);
    expect((await site.app.inject({ method: 'GET', url: item('profiles', 'p') })).json().value).toEqual({ v: 3 });
    const fresh = await site.app.inject({ method: 'PUT', url: item('profiles', 'new'), headers: { ...json, 'if-none-match': '*' }, payload: { v: 1 } });
    expect(fresh.statusCode).toBe(200);
  });

  it('scans by prefix and range in byte order, paging with an opaque cursor', async () => {
    for (const k of ['b1', 'a2', 'a1', 'a3', 'c']) await site.app.inject({ method: 'PUT', url: item('profiles', k), headers: json, payload: { k } });
    const p1 = (await site.app.inject({ method: 'GET', url: '/v1/tables/profiles/items?prefix=a&limit=2' })).json();
    expect(p1.items.map((i: { key: string }) => i.key)).toEqual(['a1', 'a2']);
    const p2 = (await site.app.inject({ method: 'GET', url: `/v1/tables/profiles/items?prefix=a&limit=2&cursor=${p1.cursor}` })).json();
    expect(p2.items.map((i: { key: string }) => i.key)).toEqual(['a3']);
    expect(p2.cursor).toBeNull();
    const range = (await site.app.inject({ method: 'GET', url: '/v1/tables/profiles/items?start=a2&end=c' })).json();
    expect(range.items.map((i: { key: string }) => i.key)).toEqual(['a2', 'a3', 'b1']);
  });

  it('a batch is atomic: one bad op and nothing is written', async () => {
    const bad = await site.app.inject({
      method: 'POST',
      url: '/v1/batch',
      headers: json,
      payload: { ops: [{ op: 'put', table: 'profiles', key: 'b1', value: { x: 1 } }, { op: 'patch', table: 'counters', key: 'b2', value: { set: { n: 1 } } }] },
    });
    expect(bad.statusCode).toBe(409);
    expect((await site.app.inject({ method: 'GET', url: item('profiles', 'b1') })).statusCode).toBe(404);
    const ok = await site.app.inject({
      method: 'POST',
      url: '/v1/batch',
      headers: json,
      payload: { ops: [{ op: 'put', table: 'profiles', key: 'b1', value: { x: 1 } }, { op: 'patch', table: 'counters', key: 'b2', value: { increment: { n: 1 } } }] },
    });
    expect(ok.statusCode).toBe(200);
    const dots = ok.json().items.map((i: { dot: string }) => i.dot);
    expect(new Set(dots).size).toBe(1);
  });

  it('strong reads are refused on local tables; session tokens round-trip', async () => {
    const strong = await site.app.inject({ method: 'GET', url: item('profiles', 'x'), headers: { 'tandem-consistency': 'strong' } });
    expect(strong.statusCode).toBe(400);
    const put = await site.app.inject({ method: 'PUT', url: item('profiles', 's'), headers: json, payload: { v: 1 } });
    const token = put.headers['tandem-session'] as string;
    const read = await site.app.inject({ method: 'GET', url: item('profiles', 's'), headers: { 'tandem-consistency': 'session', 'tandem-session': token } });
    expect(read.statusCode).toBe(200);
    const ahead = Buffer.from(JSON.stringify({ 'eu-west.zz': 5 })).toString('base64url');
    const stale = await site.app.inject({ method: 'GET', url: item('profiles', 's'), headers: { 'tandem-consistency': 'session', 'tandem-session': ahead } });
    expect(stale.statusCode).toBe(503);
    expect(stale.json().type).toMatch(/session-unavailable/);
  });

  it('status, health, ready and metrics answer', async () => {
    await site.app.inject({ method: 'PUT', url: item('profiles', 'm'), headers: json, payload: { v: 1 } });
    const status = (await site.app.inject({ method: 'GET', url: '/v1/status' })).json();
    expect(status).toMatchObject({ site: 'us-east', epoch: expect.any(Number), peers: {} });
    expect(Object.values(status.vector)).toEqual([1]);
    expect(status.digests.profiles).toMatch(/^[0-9a-f]{32}$/);
    expect((await site.app.inject({ method: 'GET', url: '/health' })).statusCode).toBe(200);
    expect((await site.app.inject({ method: 'GET', url: '/ready' })).statusCode).toBe(200);
    const metrics = await site.app.inject({ method: 'GET', url: '/metrics' });
    expect(metrics.body).toContain('tandem_writes_total 1');
  });
});

describe('bad input', () => {
  const big = 'x'.repeat(401 * 1024);
  const cases: { name: string; method: 'GET' | 'PUT' | 'PATCH' | 'DELETE' | 'POST'; url: string; headers?: Record<string, string>; payload?: string; status: number; mentions?: RegExp }[] = [
    { name: 'malformed JSON', method: 'PUT', url: item('profiles', 'k'), headers: json, payload: '{"a":', status: 400 },
    { name: 'JSON array body', method: 'PUT', url: item('profiles', 'k'), headers: json, payload: '[1,2]', status: 400, mentions: /object/ },
    { name: 'JSON string body', method: 'PUT', url: item('profiles', 'k'), headers: json, payload: '"x"', status: 400 },
    { name: 'JSON null body', method: 'PUT', url: item('profiles', 'k'), headers: json, payload: 'null', status: 400 },
    { name: 'empty body', method: 'PUT', url: item('profiles', 'k'), headers: json, payload: '', status: 400 },
    { name: 'no content type', method: 'PUT', url: item('profiles', 'k'), headers: { 'content-type': 'application/xml' }, payload: '<a/>', status: 415 },
    { name: 'unknown table', method: 'PUT', url: item('nope', 'k'), headers: json, payload: '{}', status: 404, mentions: /nope/ },
    { name: 'unknown table read', method: 'GET', url: item('nope', 'k'), status: 404, mentions: /nope/ },
    { name: 'key too long', method: 'PUT', url: item('profiles', 'k'.repeat(1025)), headers: json, payload: '{}', status: 400, mentions: /key/ },
    { name: 'empty key', method: 'PUT', url: '/v1/tables/profiles/items/', headers: json, payload: '{}', status: 400, mentions: /key/ },
    { name: 'bad percent-encoding', method: 'PUT', url: '/v1/tables/profiles/items/%E0%A4%A', headers: json, payload: '{}', status: 400 },
    { name: 'lone surrogate key', method: 'PUT', url: '/v1/tables/profiles/items/%ED%A0%80', headers: json, payload: '{}', status: 400 },
    { name: 'item too large', method: 'PUT', url: item('profiles', 'k'), headers: json, payload: JSON.stringify({ big }), status: 413 },
    { name: 'request too large', method: 'PUT', url: item('profiles', 'k'), headers: json, payload: JSON.stringify({ big: big.repeat(11) }), status: 413 },
    { name: 'nested too deep', method: 'PUT', url: item('profiles', 'k'), headers: json, payload: '{"a":' + '['.repeat(40) + ']'.repeat(40) + '}', status: 400, mentions: /deep/ },
    { name: '__proto__ pollution', method: 'PUT', url: item('profiles', 'k'), headers: json, payload: '{"__proto__":{"x":1}}', status: 400 },
    { name: 'patch with unknown op', method: 'PATCH', url: item('carts', 'k'), headers: json, payload: '{"frobnicate":{}}', status: 400, mentions: /frobnicate/ },
    { name: 'patch empty', method: 'PATCH', url: item('carts', 'k'), headers: json, payload: '{}', status: 400 },
    { name: 'patch unset not array', method: 'PATCH', url: item('carts', 'k'), headers: json, payload: '{"unset":"a"}', status: 400, mentions: /unset/ },
    { name: 'patch increment not integer', method: 'PATCH', url: item('counters', 'k'), headers: json, payload: '{"increment":{"n":1.5}}', status: 400, mentions: /increment/ },
    { name: 'patch increment string', method: 'PATCH', url: item('counters', 'k'), headers: json, payload: '{"increment":{"n":"1"}}', status: 400 },
    { name: 'patch add not array', method: 'PATCH', url: item('counters', 'k'), headers: json, payload: '{"add":{"tags":"x"}}', status: 400, mentions: /add/ },
    { name: 'patch same field set and unset', method: 'PATCH', url: item('carts', 'k'), headers: json, payload: '{"set":{"a":1},"unset":["a"]}', status: 400 },
    { name: 'increment on register (lww)', method: 'PATCH', url: item('profiles', 'k'), headers: json, payload: '{"increment":{"n":1}}', status: 409 },
    { name: 'set on counter', method: 'PATCH', url: item('counters', 'k'), headers: json, payload: '{"set":{"n":1}}', status: 409 },
    { name: 'put counter with string', method: 'PUT', url: item('counters', 'k'), headers: json, payload: '{"n":"5"}', status: 400, mentions: /value\.n/ },
    { name: 'put set with object', method: 'PUT', url: item('counters', 'k'), headers: json, payload: '{"tags":{}}', status: 400, mentions: /value\.tags/ },
    { name: 'bad consistency header', method: 'GET', url: item('profiles', 'k'), headers: { 'tandem-consistency': 'linearizable' }, status: 400, mentions: /Tandem-Consistency/ },
    { name: 'bad durability header', method: 'PUT', url: item('profiles', 'k'), headers: { ...json, 'tandem-durability': 'maybe' }, payload: '{}', status: 400, mentions: /Tandem-Durability/ },
    { name: 'bad session token', method: 'GET', url: item('profiles', 'k'), headers: { 'tandem-consistency': 'session', 'tandem-session': 'not*a*token' }, status: 400, mentions: /Tandem-Session/ },
    { name: 'session token of garbage JSON', method: 'GET', url: item('profiles', 'k'), headers: { 'tandem-consistency': 'session', 'tandem-session': Buffer.from('[1]').toString('base64url') }, status: 400 },
    { name: 'malformed If-Match', method: 'PUT', url: item('profiles', 'k'), headers: { ...json, 'if-match': 'garbage value' }, payload: '{}', status: 400, mentions: /If-Match/ },
    { name: 'If-None-Match version on write', method: 'PUT', url: item('profiles', 'k'), headers: { ...json, 'if-none-match': '"abc"' }, payload: '{}', status: 400 },
    { name: 'scan limit zero', method: 'GET', url: '/v1/tables/profiles/items?limit=0', status: 400, mentions: /limit/ },
    { name: 'scan limit huge', method: 'GET', url: '/v1/tables/profiles/items?limit=99999', status: 400, mentions: /limit/ },
    { name: 'scan unknown param', method: 'GET', url: '/v1/tables/profiles/items?sort=desc', status: 400, mentions: /sort/ },
    { name: 'scan bad cursor', method: 'GET', url: '/v1/tables/profiles/items?cursor=***', status: 400, mentions: /cursor/ },
    { name: 'batch not an object', method: 'POST', url: '/v1/batch', headers: json, payload: '[]', status: 400 },
    { name: 'batch empty ops', method: 'POST', url: '/v1/batch', headers: json, payload: '{"ops":[]}', status: 400, mentions: /ops/ },
    { name: 'batch bad op', method: 'POST', url: '/v1/batch', headers: json, payload: '{"ops":[{"op":"upsert","table":"profiles","key":"a","value":{}}]}', status: 400, mentions: /op/ },
    { name: 'batch duplicate item', method: 'POST', url: '/v1/batch', headers: json, payload: '{"ops":[{"op":"put","table":"profiles","key":"a","value":{}},{"op":"delete","table":"profiles","key":"a"}]}', status: 400, mentions: /twice/ },
    { name: 'batch unknown table', method: 'POST', url: '/v1/batch', headers: json, payload: '{"ops":[{"op":"put","table":"zzz","key":"a","value":{}}]}', status: 404 },
    { name: 'batch spanning owners', method: 'POST', url: '/v1/batch', headers: json, payload: '{"ops":[{"op":"put","table":"orders","key":"eu-west:1","value":{}},{"op":"put","table":"profiles","key":"a","value":{}}]}', status: 400, mentions: /span/ },
    { name: 'partitioned key without home', method: 'PUT', url: item('orders', 'nohome'), headers: json, payload: '{}', status: 400, mentions: /key/ },
    { name: 'partitioned key unknown home', method: 'PUT', url: item('orders', 'mars:1'), headers: json, payload: '{}', status: 400, mentions: /mars/ },
    { name: 'conflicts bad cursor', method: 'GET', url: '/v1/tables/profiles/conflicts?cursor=!!', status: 400 },
    { name: 'unknown route', method: 'GET', url: '/v2/nothing', status: 404 },
    { name: 'method not allowed path', method: 'POST', url: item('profiles', 'k'), headers: json, payload: '{}', status: 404 },
  ];

  it(`answers each of ${cases.length} kinds of malformed request with a 4xx problem document and changes nothing`, async () => {
    await site.app.inject({ method: 'PUT', url: item('profiles', 'k'), headers: json, payload: { keep: true } });
    const before = (await site.app.inject({ method: 'GET', url: '/v1/status' })).json();
    for (const c of cases) {
      const res = await site.app.inject({ method: c.method, url: c.url, headers: c.headers ?? {}, ...(c.payload !== undefined ? { payload: c.payload } : {}) });
      expect(res.statusCode, c.name).toBe(c.status);
      expect(res.headers['content-type'], c.name).toMatch(/application\/problem\+json/);
      const body = res.json();
      expect(body, c.name).toMatchObject({ type: expect.any(String), title: expect.any(String), status: c.status, detail: expect.any(String) });
      if (c.mentions) expect(JSON.stringify(body), c.name).toMatch(c.mentions);
    }
    const after = (await site.app.inject({ method: 'GET', url: '/v1/status' })).json();
    expect(after.vector).toEqual(before.vector);
    expect(after.digests).toEqual(before.digests);
    expect((await site.app.inject({ method: 'GET', url: item('profiles', 'k') })).json().value).toEqual({ keep: true });
  });
});

describe('If-Match: *', () => {
  it('needs a live item: PUT, PATCH and DELETE of a missing or deleted item answer 412 and write nothing', async () => {
    const star = { ...json, 'if-match': '*' };
    await site.app.inject({ method: 'PUT', url: item('carts', 'gone'), headers: json, payload: { a: 1 } });
    await site.app.inject({ method: 'DELETE', url: item('carts', 'gone') });
    const before = (await site.app.inject({ method: 'GET', url: '/v1/status' })).json();
    for (const key of ['missing', 'gone']) {
      const writes = [
        { method: 'PUT' as const, payload: { a: 2 } },
        { method: 'PATCH' as const, payload: { set: { a: 2 } } },
        { method: 'DELETE' as const },
      ];
      for (const w of writes) {
        const res = await site.app.inject({ url: item('carts', key), headers: star, ...w });
        expect(res.statusCode, `${w.method} ${key}`).toBe(412);
        expect(res.json(), `${w.method} ${key}`).toMatchObject({ type: 'https://tandem.dev/problems/precondition-failed', status: 412 });
        expect(res.json().detail).toMatch(/If-Match: \* failed/);
      }
      expect((await site.app.inject({ method: 'GET', url: item('carts', key) })).statusCode, key).toBe(404);
    }
    const after = (await site.app.inject({ method: 'GET', url: '/v1/status' })).json();
    expect(after.vector).toEqual(before.vector);
    expect(after.digests).toEqual(before.digests);
  });

  it('passes on a live item; a quoted "*" is an ETag like any other and matches no version', async () => {
    const star = { ...json, 'if-match': '*' };
    await site.app.inject({ method: 'PUT', url: item('carts', 'here'), headers: json, payload: { a: 1 } });
    const quoted = await site.app.inject({ method: 'PUT', url: item('carts', 'here'), headers: { ...json, 'if-match': '"*"' }, payload: { a: 9 } });
    expect(quoted.statusCode).toBe(412);
    expect((await site.app.inject({ method: 'PUT', url: item('carts', 'here'), headers: star, payload: { a: 2 } })).statusCode).toBe(200);
    expect((await site.app.inject({ method: 'PATCH', url: item('carts', 'here'), headers: star, payload: { set: { b: 3 } } })).statusCode).toBe(200);
    expect((await site.app.inject({ method: 'GET', url: item('carts', 'here') })).json().value).toEqual({ a: 2, b: 3 });
    expect((await site.app.inject({ method: 'DELETE', url: item('carts', 'here'), headers: { 'if-match': '*' } })).statusCode).toBe(200);
    expect((await site.app.inject({ method: 'GET', url: item('carts', 'here') })).statusCode).toBe(404);
  });
});

describe('numbers that JSON.parse reads as Infinity', () => {
  const cases: { method: 'PUT' | 'PATCH' | 'POST'; url: string; payload: string; path: string }[] = [
    { method: 'PUT', url: item('profiles', 'n'), payload: '{"a":1e400}', path: 'body.a' },
    { method: 'PUT', url: item('profiles', 'n'), payload: '{"a":[1,{"b":-1e400}]}', path: 'body.a[1].b' },
    { method: 'PATCH', url: item('carts', 'n'), payload: '{"set":{"a":{"b":1e999}}}', path: 'body.set.a.b' },
    { method: 'PATCH', url: item('counters', 'n'), payload: '{"increment":{"n":1e400}}', path: 'body.increment.n' },
    { method: 'PATCH', url: item('counters', 'n'), payload: '{"add":{"tags":[1,1e400]}}', path: 'body.add.tags[1]' },
    { method: 'PATCH', url: item('counters', 'n'), payload: '{"remove":{"tags":[-1e400]}}', path: 'body.remove.tags[0]' },
    { method: 'POST', url: '/v1/batch', payload: '{"ops":[{"op":"put","table":"profiles","key":"n","value":{"x":1e400}}]}', path: 'body.ops[0].value.x' },
    { method: 'POST', url: '/v1/batch', payload: '{"ops":[{"op":"patch","table":"carts","key":"n","value":{"set":{"x":1e400}}}]}', path: 'body.ops[0].value.set.x' },
  ];

  it('are refused with 400 naming the path, before anything is written', async () => {
    const before = (await site.app.inject({ method: 'GET', url: '/v1/status' })).json();
    for (const c of cases) {
      const res = await site.app.inject({ method: c.method, url: c.url, headers: json, payload: c.payload });
      expect(res.statusCode, c.payload).toBe(400);
      expect(res.headers['content-type']).toMatch(/application\/problem\+json/);
      expect(res.json().errors, c.payload).toEqual([{ path: c.path, message: 'numbers must be finite' }]);
      expect(res.json().detail, c.payload).toBe(`${c.path}: numbers must be finite`);
    }
    const after = (await site.app.inject({ method: 'GET', url: '/v1/status' })).json();
    expect(after.vector).toEqual(before.vector);
    expect(after.digests).toEqual(before.digests);
    // large finite numbers are fine
    const big = await site.app.inject({ method: 'PUT', url: item('profiles', 'n'), headers: json, payload: '{"a":1e308,"b":-5e-324}' });
    expect(big.statusCode).toBe(200);
    expect((await site.app.inject({ method: 'GET', url: item('profiles', 'n') })).json().value).toEqual({ a: 1e308, b: -5e-324 });
  });
});

describe('request bodies', () => {
  const utf8 = (...parts: (string | number[])[]) => Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p) : Buffer.from(p))));

  it('invalid UTF-8 is refused with 400 and nothing is stored', async () => {
    const bad = [
      utf8('{"a":"', [0xff], '"}'), // never valid
      utf8('{"a":"', [0xc3], '"}'), // truncated sequence
      utf8('{"a":"', [0xed, 0xa0, 0x80], '"}'), // an encoded surrogate
      utf8('{"a":"', [0xc0, 0xaf], '"}'), // overlong "/"
    ];
    for (const payload of bad) {
      const put = await site.app.inject({ method: 'PUT', url: item('profiles', 'u'), headers: json, payload });
      expect(put.statusCode, payload.toString('hex')).toBe(400);
      expect(put.json()).toMatchObject({ status: 400, errors: [{ path: 'body', message: 'invalid UTF-8' }] });
      const batch = await site.app.inject({ method: 'POST', url: '/v1/batch', headers: json, payload: utf8('{"ops":[{"op":"put","table":"profiles","key":"u","value":{"a":"', [0xff], '"}}]}') });
      expect(batch.statusCode).toBe(400);
    }
    expect((await site.app.inject({ method: 'GET', url: item('profiles', 'u') })).statusCode).toBe(404);
    expect(Object.keys((await site.app.inject({ method: 'GET', url: '/v1/status' })).json().vector)).toEqual([]);
    const good = await site.app.inject({ method: 'PUT', url: item('profiles', 'u'), headers: json, payload: utf8('\u{feff}{"a":"ünï 🙂"}') });
    expect(good.statusCode).toBe(200);
    expect((await site.app.inject({ method: 'GET', url: item('profiles', 'u') })).json().value).toEqual({ a: 'ünï 🙂' });
  });

  it('Content-Type: application/json with no body is fine where a request takes none, and refused where one is needed', async () => {
    await site.app.inject({ method: 'PUT', url: item('profiles', 'e'), headers: json, payload: { v: 1 } });
    const get = await site.app.inject({ method: 'GET', url: item('profiles', 'e'), headers: json });
    expect(get.statusCode).toBe(200);
    const scan = await site.app.inject({ method: 'GET', url: '/v1/tables/profiles/items', headers: json });
    expect(scan.statusCode).toBe(200);
    const del = await site.app.inject({ method: 'DELETE', url: item('profiles', 'e'), headers: json });
    expect(del.statusCode).toBe(200);
    expect((await site.app.inject({ method: 'GET', url: item('profiles', 'e') })).statusCode).toBe(404);
    for (const method of ['PUT', 'PATCH'] as const) {
      const empty = await site.app.inject({ method, url: item('carts', 'e'), headers: json, payload: '' });
      expect(empty.statusCode, method).toBe(400);
      expect(empty.json(), method).toMatchObject({ detail: 'the request needs a JSON object body', errors: [{ path: 'body', message: 'missing body' }] });
    }
    const batch = await site.app.inject({ method: 'POST', url: '/v1/batch', headers: json, payload: '' });
    expect(batch.statusCode).toBe(400);
    expect((await site.app.inject({ method: 'GET', url: item('carts', 'e') })).statusCode).toBe(404);
  });

  it('a body sent with a DELETE is ignored, unread, whatever it holds', async () => {
    for (const payload of ['{"x":1}', 'not json', utf8([0xff])]) {
      await site.app.inject({ method: 'PUT', url: item('profiles', 'd'), headers: json, payload: { v: 1 } });
      const del = await site.app.inject({ method: 'DELETE', url: item('profiles', 'd'), headers: json, payload });
      expect(del.statusCode, String(payload)).toBe(200);
      expect((await site.app.inject({ method: 'GET', url: item('profiles', 'd') })).statusCode).toBe(404);
    }
  });

  it('malformed JSON and prototype keys name the body; the size limit still answers 413', async () => {
    const malformed = await site.app.inject({ method: 'PUT', url: item('profiles', 'j'), headers: json, payload: '{"a":' });
    expect(malformed.statusCode).toBe(400);
    expect(malformed.json()).toMatchObject({ errors: [{ path: 'body', message: 'invalid JSON' }] });
    for (const payload of ['{"__proto__":{"x":1}}', '{"constructor":{"prototype":{"x":1}}}']) {
      const res = await site.app.inject({ method: 'PUT', url: item('profiles', 'j'), headers: json, payload });
      expect(res.statusCode, payload).toBe(400);
      expect(res.json(), payload).toMatchObject({ errors: [{ path: 'body', message: 'forbidden key' }] });
    }
    const huge = await site.app.inject({ method: 'PUT', url: item('profiles', 'j'), headers: json, payload: JSON.stringify({ big: 'x'.repeat(5 * 1024 * 1024) }) });
    expect(huge.statusCode).toBe(413);
    expect((await site.app.inject({ method: 'GET', url: item('profiles', 'j') })).statusCode).toBe(404);
  });
});

describe('durability of a repeated delete', () => {
  for (const confirmed of [false, true]) {
    it(`a quorum DELETE of an already deleted item waits for the tombstone's durability (${confirmed ? 'confirmed: 200' : 'not confirmed: 504'})`, async () => {
      await site.app.inject({ method: 'PUT', url: item('profiles', 'q'), headers: json, payload: { v: 1 } });
      const first = (await site.app.inject({ method: 'DELETE', url: item('profiles', 'q') })).json();
      const asked: [string, string][] = [];
      const env: Env = { clock: realClock, timers: realTimers, random: realRandom, transport: { request: () => Promise.reject(new Error('no network here')) }, log: silentLogger };
      const app = buildSiteServer({
        env,
        node: site.node,
        metrics: new SiteMetrics(),
        hooks: {
          awaitDurability: async (dot, level) => {
            asked.push([dot, level]);
            return confirmed;
          },
        },
      });
      try {
        const before = (await app.inject({ method: 'GET', url: '/v1/status' })).json();
        const again = await app.inject({ method: 'DELETE', url: item('profiles', 'q'), headers: { 'tandem-durability': 'quorum' } });
        expect(asked).toEqual([[first.dot, 'quorum']]);
        if (confirmed) {
          expect(again.statusCode).toBe(200);
          expect(again.json()).toMatchObject({ key: 'q', version: first.version, dot: first.dot });
        } else {
          expect(again.statusCode).toBe(504);
          expect(again.json()).toMatchObject({ type: 'https://tandem.dev/problems/durability-timeout', status: 504, version: first.version, dot: first.dot });
        }
        const after = (await app.inject({ method: 'GET', url: '/v1/status' })).json();
        expect(after.vector).toEqual(before.vector);
      } finally {
        await app.close();
      }
    });
  }
});

describe('a store that fails', () => {
  it('a failed WAL sync answers 503 store-failed, then refuses every write while reads go on', async () => {
    let failing = false;
    const fatal: Error[] = [];
    const failingSite = await inProcessSite({
      store: {
        fdatasync: (fd, done) => (failing ? done(Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO' })) : fdatasync(fd, done)),
        onFatal: (e) => fatal.push(e),
      },
    });
    try {
      const put = (key: string) => failingSite.app.inject({ method: 'PUT', url: item('profiles', key), headers: json, payload: { key } });
      expect((await put('before')).statusCode).toBe(200);
      failing = true;
      const failed = await put('during');
      expect(failed.statusCode).toBe(503);
      expect(failed.headers['content-type']).toMatch(/application\/problem\+json/);
      expect(failed.headers['retry-after']).toBe('1');
      expect(failed.json()).toMatchObject({ type: 'https://tandem.dev/problems/store-failed', status: 503 });
      expect(failed.json().detail).toMatch(/outcome of this write is unknown/);
      failing = false;
      const refused = await put('after');
      expect(refused.statusCode).toBe(503);
      expect(refused.json()).toMatchObject({ type: 'https://tandem.dev/problems/store-failed' });
      expect(refused.json().detail).toMatch(/this write was not applied/);
      expect(fatal).toHaveLength(1);
      const get = await failingSite.app.inject({ method: 'GET', url: item('profiles', 'before') });
      expect(get.json().value).toEqual({ key: 'before' });
    } finally {
      await failingSite.close();
    }
  });
});

describe('a full disk', () => {
  it('a write that finds no room answers 503 store-full, is not applied, and writes resume once there is room', async () => {
    const roomy = await inProcessSite();
    try {
      // SQLite's page cap stands in for a full file system: the same SQLITE_FULL on the same path
      const db = (roomy.node.store as unknown as { db: { pragma(sql: string, options?: { simple: boolean }): unknown } }).db;
      const pages = Number(db.pragma('page_count', { simple: true }));
      db.pragma(`max_page_count = ${pages + 8}`);
      const put = (key: string) => roomy.app.inject({ method: 'PUT', url: item('profiles', key), headers: json, payload: { big: 'x'.repeat(3000) } });
      let refused;
      let written = 0;
      for (let i = 0; i < 100 && refused === undefined; i++) {
        const res = await put(`k${i}`);
        if (res.statusCode === 200) written += 1;
        else refused = res;
      }
      expect(written).toBeGreaterThan(0);
      expect(refused?.statusCode).toBe(503);
      expect(refused?.headers['retry-after']).toBe('1');
      expect(refused?.json()).toMatchObject({ type: 'https://tandem.dev/problems/store-full', status: 503 });
      expect(refused?.json().detail).toMatch(/no room left for this write .*it was not applied/);
      // not applied, and what was written before is intact
      expect((await roomy.app.inject({ method: 'GET', url: item('profiles', `k${written}`) })).statusCode).toBe(404);
      expect((await roomy.app.inject({ method: 'GET', url: item('profiles', 'k0') })).json().value.big).toHaveLength(3000);
      db.pragma('max_page_count = 1000000');
      expect((await put(`k${written}`)).statusCode).toBe(200);
    } finally {
      await roomy.close();
    }
  });
});
