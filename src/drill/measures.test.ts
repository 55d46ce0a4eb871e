import { describe, expect, it } from 'vitest';
import { parseConfig } from '../config/load.js';
import { classify, type ClassifyContext } from './measures.js';
import type { OpRecord } from './op-history.js';

const { tables } = parseConfig(
  {
    cluster: 'c',
    secret: 'a-secret-of-16-chars',
    sites: [{ id: 'a', url: 'http://127.0.0.1:1' }, { id: 'b', url: 'http://127.0.0.1:2' }, { id: 'c', url: 'http://127.0.0.1:3' }],
    tables: { sessions: { pattern: 'partitioned', home: { from: 'first-writer', separator: ':' } }, orders: { pattern: 'partitioned', home: { from: 'key-prefix', separator: ':' } } },
  },
  'test',
);

const write = (table: string, key: string): OpRecord => ({ id: 0, client: 'open', op: 'put', table, key, via: 'router', consistency: 'eventual', intendedMs: 0, sentMs: 0, endMs: 1, outcome: 'ok' });

describe('classify', () => {
  const ctx: ClassifyContext = { tables, regions: new Map(), faultedSites: new Set(['c']), ownerFaultExcluded: true, rtoPatterns: undefined, homes: new Map([['sessions/p2', 'c'], ['sessions/p1', 'a']]) };

  it('a first-writer partition homed at the faulted site needs its owner, like a key-prefix one', () => {
    expect(classify(write('sessions', 'p2:k1'), ctx)).toMatchObject({ name: 'partitioned.write.routed.owner-faulted', inSlo: false });
    expect(classify(write('orders', 'c:k1'), ctx)).toMatchObject({ name: 'partitioned.write.routed.owner-faulted', inSlo: false });
    expect(classify(write('sessions', 'p1:k1'), ctx)).toMatchObject({ name: 'partitioned.write.routed', inSlo: true });
    // a partition with no home at the end was never written: nothing to attribute
    expect(classify(write('sessions', 'p9:k1'), ctx)).toMatchObject({ name: 'partitioned.write.routed', inSlo: true });
  });
});
