import { describe, expect, it } from 'vitest';
import { attributeAnswer, failureCountsAgainstSite, problemTypeOf, requestReach, type TableFacts } from './attribution.js';

const tables = new Map<string, TableFacts>([
  ['profiles', { owned: false, durability: 'local' }],
  ['audit', { owned: false, durability: 'quorum' }],
  ['orders', { owned: true, durability: 'local' }],
  ['ledger', { owned: true, durability: 'quorum' }],
]);
const reach = (method: string, path: string, headers: Record<string, string> = {}) => requestReach(method, headers, path, tables);

describe('attribution: which site a failure belongs to', () => {
  it('a site serves alone eventual reads and local-durability writes to local tables', () => {
    expect(reach('GET', '/v1/tables/profiles/items/k')).toBe('self');
    expect(reach('GET', '/v1/tables/ledger/items/k')).toBe('self'); // eventual: local state
    expect(reach('GET', '/v1/tables/ledger/items?prefix=a')).toBe('self');
    expect(reach('HEAD', '/v1/tables/orders/items/us-east%3Ak')).toBe('self');
    expect(reach('GET', '/v1/tables/profiles/items/k', { 'tandem-consistency': 'strong' })).toBe('self'); // 400 on a local table
    expect(reach('GET', '/v1/tables/profiles/items/k', { 'tandem-consistency': 'session' })).toBe('self'); // no token: nothing to wait for
    expect(reach('PUT', '/v1/tables/profiles/items/k')).toBe('self');
    expect(reach('PATCH', '/v1/tables/profiles/items/k', { 'idempotency-key': 'x' })).toBe('self');
    expect(reach('DELETE', '/v1/tables/profiles/items/k', { 'tandem-durability': 'local' })).toBe('self');
    expect(reach('PUT', '/v1/tables/nope/items/k')).toBe('self'); // 404
    expect(reach('GET', '/v1/status')).toBe('self');
    expect(reach('GET', '/ready')).toBe('self');
  });

  it('a site may hand on owned-table writes, quorum writes, strong and session reads, batches, rewinds and unknown writes', () => {
    for (const method of ['PUT', 'PATCH', 'DELETE']) {
      expect(reach(method, '/v1/tables/orders/items/ap-south%3Ak1'), method).toBe('peers');
      expect(reach(method, '/v1/tables/ledger/items/acct'), method).toBe('peers');
      expect(reach(method, '/v1/tables/audit/items/a'), method).toBe('peers'); // quorum by the table's config
      expect(reach(method, '/v1/tables/profiles/items/k', { 'tandem-durability': 'quorum' }), method).toBe('peers');
      expect(reach(method, '/v1/tables/profiles/items/k', { 'tandem-durability': 'All' }), method).toBe('peers');
    }
    expect(reach('GET', '/v1/tables/ledger/items/acct', { 'tandem-consistency': 'strong' })).toBe('peers');
    expect(reach('GET', '/v1/tables/profiles/items/k', { 'tandem-consistency': 'session', 'tandem-session': 'tok' })).toBe('peers');
    expect(reach('GET', '/v1/tables/profiles/items?prefix=a', { 'tandem-consistency': 'session', 'tandem-session': 'tok' })).toBe('peers');
    expect(reach('POST', '/v1/batch')).toBe('peers');
    expect(reach('POST', '/v1/tables/profiles/rewind/k')).toBe('peers');
    expect(reach('POST', '/v1/topology/failover')).toBe('peers');
    expect(reach('POST', '/v1/tables/profiles/items')).toBe('peers');
  });

  it('refused connections and resets eject the site they happen at; a timeout only when the site serves the request alone', () => {
    expect(failureCountsAgainstSite('not-sent', 'peers')).toBe(true);
    expect(failureCountsAgainstSite('broken', 'peers')).toBe(true);
    expect(failureCountsAgainstSite('timeout', 'self')).toBe(true);
    expect(failureCountsAgainstSite('timeout', 'peers')).toBe(false);
  });

  it('a site that answered for a failing owner is healthy: 503, 502 Tandem-Outcome: unknown, 504 durability-timeout or lease-expired', () => {
    for (const type of ['owner-unavailable', 'owner-changed', 'quorum-unavailable', 'store-failed', undefined]) expect(attributeAnswer(503, undefined, type)).toBe('served');
    expect(attributeAnswer(502, 'unknown', 'outcome-unknown')).toBe('served');
    expect(attributeAnswer(504, undefined, 'durability-timeout')).toBe('served');
    expect(attributeAnswer(504, undefined, 'lease-expired')).toBe('served');
    for (const status of [200, 201, 204, 304, 400, 404, 409, 412, 413]) expect(attributeAnswer(status, undefined, undefined)).toBe('served');
  });

  it('its own failures count against it: 500, a bare 502, a 504 of another kind', () => {
    expect(attributeAnswer(500, undefined, undefined)).toBe('site-failed');
    expect(attributeAnswer(500, 'unknown', 'owner-changed')).toBe('site-failed');
    expect(attributeAnswer(502, undefined, undefined)).toBe('site-failed');
    expect(attributeAnswer(502, 'maybe', undefined)).toBe('site-failed');
    expect(attributeAnswer(504, undefined, undefined)).toBe('site-failed');
    expect(attributeAnswer(504, undefined, 'gateway-timeout')).toBe('site-failed');
  });

  it('reads the type of a problem body, with or without the Tandem URI prefix', () => {
    const body = (v: unknown) => Buffer.from(JSON.stringify(v));
    expect(problemTypeOf(body({ type: 'https://tandem.dev/problems/owner-changed', status: 503 }))).toBe('owner-changed');
    expect(problemTypeOf(body({ type: 'outcome-unknown' }))).toBe('outcome-unknown');
    expect(problemTypeOf(body({ type: 7 }))).toBeUndefined();
    expect(problemTypeOf(body(['owner-changed']))).toBeUndefined();
    expect(problemTypeOf(body(null))).toBeUndefined();
    expect(problemTypeOf(Buffer.from('{"type":"owner-ch'))).toBeUndefined(); // truncated
    expect(problemTypeOf(Buffer.from('<html>busy</html>'))).toBeUndefined();
  });
});
