import { describe, expect, it } from 'vitest';
import { classifyUpstreamError, isPassiveFailureStatus, isRetryableStatus, mayRetryAfter, retryClassOf } from './retry-rules.js';

describe('retry rules', () => {
  it('classifies requests', () => {
    expect(retryClassOf('GET', {})).toBe('safe');
    expect(retryClassOf('HEAD', {})).toBe('safe');
    expect(retryClassOf('OPTIONS', {})).toBe('safe');
    expect(retryClassOf('PUT', {})).toBe('repeatable');
    expect(retryClassOf('DELETE', {})).toBe('repeatable');
    expect(retryClassOf('PUT', { 'if-match': '"v1"' })).toBe('once');
    expect(retryClassOf('PUT', { 'if-none-match': '*' })).toBe('once');
    expect(retryClassOf('DELETE', { 'if-unmodified-since': 'x' })).toBe('once');
    expect(retryClassOf('POST', {})).toBe('once');
    expect(retryClassOf('PATCH', {})).toBe('once');
  });

  it('repeats a keyed write to an owned table (the owner answers the repeat from its record), never one to a local table', () => {
    const owned = new Set(['ledger', 'orders']);
    const key = { 'idempotency-key': 'pay-1' };
    for (const method of ['PATCH', 'POST', 'PUT', 'DELETE']) {
      expect(retryClassOf(method, key, '/v1/tables/ledger/items/acct', owned), method).toBe('repeatable');
      expect(retryClassOf(method, { ...key, 'if-match': '"v1"' }, '/v1/tables/orders/items/us-east%3Ao-1?x=1', owned), method).toBe('repeatable');
    }
    // a local table: another site may not have the first write yet
    expect(retryClassOf('PATCH', key, '/v1/tables/counters/items/c', owned)).toBe('once');
    expect(retryClassOf('PUT', { ...key, 'if-match': '"v1"' }, '/v1/tables/counters/items/c', owned)).toBe('once');
    // no key, a batch (its tables are in its body), or not an item path
    expect(retryClassOf('PATCH', {}, '/v1/tables/ledger/items/acct', owned)).toBe('once');
    expect(retryClassOf('POST', key, '/v1/batch', owned)).toBe('once');
    expect(retryClassOf('POST', key, '/v1/tables/ledger/items', owned)).toBe('once');
    expect(retryClassOf('PATCH', key, '/v1/tables/%E0%A4%A/items/x', owned)).toBe('once');
  });

  it('never counts 503 against a site, but retries it where allowed', () => {
    expect(isPassiveFailureStatus(503)).toBe(false);
    for (const s of [500, 502, 504]) expect(isPassiveFailureStatus(s)).toBe(true);
    expect(isRetryableStatus(503)).toBe(true);
    expect(isRetryableStatus(404)).toBe(false);
    expect(isRetryableStatus(409)).toBe(false);
  });

  it('tells a request that was never sent from one that may have been', () => {
    expect(classifyUpstreamError(Object.assign(new Error('x'), { code: 'ECONNREFUSED' }))).toBe('not-sent');
    expect(classifyUpstreamError(Object.assign(new Error('x'), { code: 'UND_ERR_CONNECT_TIMEOUT' }))).toBe('not-sent');
    expect(classifyUpstreamError(new AggregateError([Object.assign(new Error('x'), { code: 'ECONNREFUSED' })]))).toBe('not-sent');
    expect(classifyUpstreamError(Object.assign(new Error('x'), { code: 'UND_ERR_HEADERS_TIMEOUT' }))).toBe('timeout');
    expect(classifyUpstreamError(Object.assign(new Error('x'), { code: 'UND_ERR_SOCKET' }))).toBe('broken');
    expect(classifyUpstreamError(new Error('no code'))).toBe('broken');
    // undici closes or destroys a client also after the request was written: the outcome is unknown
    expect(classifyUpstreamError(Object.assign(new Error('x'), { code: 'UND_ERR_CLOSED' }))).toBe('broken');
    expect(classifyUpstreamError(Object.assign(new Error('x'), { code: 'UND_ERR_DESTROYED' }))).toBe('broken');
  });

  it('retries non-idempotent requests only when nothing was sent', () => {
    expect(mayRetryAfter('once', 'not-sent')).toBe(true);
    expect(mayRetryAfter('once', 'broken')).toBe(false);
    expect(mayRetryAfter('once', 'timeout')).toBe(false);
    expect(mayRetryAfter('once', 'status')).toBe(false);
    expect(mayRetryAfter('repeatable', 'broken')).toBe(true);
    expect(mayRetryAfter('safe', 'timeout')).toBe(true);
  });
});
