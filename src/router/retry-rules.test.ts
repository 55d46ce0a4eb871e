import { describe, expect, it } from 'vitest';
import {
  classifyUpstreamError,
  isNothingWritten,
  isRetryableStatus,
  mayRetryAfter,
  mayRetryAnswer,
  needsProblemType,
  retryAfterMs,
  retryClassOf,
} from './retry-rules.js';

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

  it('retries 5xx answers where allowed, never 4xx', () => {
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

  it('any write, a PATCH increment without Idempotency-Key included, is sent again after a 503 saying nothing was written', () => {
    for (const type of ['owner-unavailable', 'owner-changed', 'quorum-unavailable', 'starting', 'not-serving', 'shutting-down', 'overloaded']) {
      expect(isNothingWritten(503, type), type).toBe(true);
      expect(mayRetryAnswer('once', 503, type), type).toBe(true);
      expect(mayRetryAnswer('repeatable', 503, type), type).toBe(true);
    }
    const patch = retryClassOf('PATCH', {}, '/v1/tables/ledger/items/acct', new Set(['ledger']));
    expect(patch).toBe('once');
    expect(mayRetryAnswer(patch, 503, 'owner-unavailable')).toBe(true);
    expect(mayRetryAnswer(retryClassOf('PUT', { 'if-match': '"v1"' }), 503, 'owner-changed')).toBe(true);
  });

  it('never sends a non-idempotent write again after an ambiguous 503, a 504 or a 502 Tandem-Outcome: unknown', () => {
    // a 503 whose body does not say nothing was written: store-failed (may be committed), another type, no body
    for (const type of ['store-failed', 'session-unavailable', 'store-busy', undefined]) {
      expect(isNothingWritten(503, type), String(type)).toBe(false);
      expect(mayRetryAnswer('once', 503, type), String(type)).toBe(false);
    }
    // the type decides only with status 503: a 504 or 502 that names a nothing-written type is still ambiguous
    for (const [status, type] of [
      [504, 'durability-timeout'],
      [504, 'lease-expired'],
      [504, 'owner-changed'],
      [502, 'outcome-unknown'],
      [502, 'owner-unavailable'],
      [500, 'owner-changed'],
    ] as const) {
      expect(isNothingWritten(status, type)).toBe(false);
      expect(mayRetryAnswer('once', status, type), `${status} ${type}`).toBe(false);
    }
    // safe and repeatable requests go on as before; 4xx never
    expect(mayRetryAnswer('repeatable', 504, 'durability-timeout')).toBe(true);
    expect(mayRetryAnswer('safe', 502, undefined)).toBe(true);
    expect(mayRetryAnswer('once', 409, 'owner-changed')).toBe(false);
    expect(mayRetryAnswer('safe', 404, undefined)).toBe(false);
  });

  it('reads a problem body only when its type decides something', () => {
    expect(needsProblemType('once', 503)).toBe(true); // retry or not
    expect(needsProblemType('once', 504)).toBe(true); // attribution: durability-timeout is a healthy answer
    expect(needsProblemType('safe', 504)).toBe(true);
    expect(needsProblemType('safe', 503)).toBe(false); // retried whatever it says
    expect(needsProblemType('repeatable', 503)).toBe(false);
    expect(needsProblemType('once', 502)).toBe(false); // Tandem-Outcome is a header
    expect(needsProblemType('once', 200)).toBe(false);
  });

  it('reads Retry-After as seconds or as an HTTP-date', () => {
    const now = Date.parse('2026-12-02T12:00:00Z');
    expect(retryAfterMs('1', now)).toBe(1000);
    expect(retryAfterMs(' 2 ', now)).toBe(2000);
    expect(retryAfterMs('Wed, 02 Dec 2026 12:00:03 GMT', now)).toBe(3000);
    expect(retryAfterMs('Wed, 02 Dec 2026 11:00:00 GMT', now)).toBe(0);
    expect(retryAfterMs('soon', now)).toBeUndefined();
    expect(retryAfterMs('-1', now)).toBeUndefined();
    expect(retryAfterMs(undefined, now)).toBeUndefined();
    expect(retryAfterMs(['1', '2'], now)).toBeUndefined();
  });
});
