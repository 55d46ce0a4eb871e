import { describe, expect, it } from 'vitest';
import { parseConfig } from '../config/load.js';
import { bucketOpsMin, classify, rtoByClass, type ClassifyContext } from './measures.js';
import type { OpRecord } from './op-history.js';
import type { Slo } from './scenarios.js';

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

describe('RTO by class', () => {
  const ctx: ClassifyContext = { tables, regions: new Map(), faultedSites: new Set(['c']), ownerFaultExcluded: true, rtoPatterns: undefined };
  const slo: Slo = { rtoMs: 2_000, lostQuorumWrites: 0, lostLocalWritesMax: 0, successRateMin: 0.99, windowMs: 3_000, latencyMaxMs: 1_000, converged: true };
  const heal = { phase: 'heal' as const, label: 'heal at 0 ms', startMs: 0, endMs: 10_000, sites: [] };
  const op = (table: string, key: string, intendedMs: number, ok: boolean): OpRecord => ({ ...write(table, key), intendedMs, sentMs: intendedMs, endMs: intendedMs + 5, outcome: ok ? 'ok' : 'unknown' });

  it('lists a class with too few operations in an episode without letting one failure set the RTO', () => {
    // one write cut off at the heal, nothing more of its class; a busy class recovers after its last failure, at 450 ms
    const history = [op('profiles', 'k', 0, false), ...Array.from({ length: 200 }, (_, i) => op('orders', 'a:k', i * 50, i * 50 >= 500))];
    const classes = rtoByClass(history, [heal], ctx, slo);
    const sparse = classes.find((c) => c.ops === 1)!;
    expect(sparse).toMatchObject({ inSlo: false, rtoMs: 10_000, recovered: false, excludedWhy: `1 operations in the episode, under the ${bucketOpsMin} an RTO is measured from` });
    const busy = classes.find((c) => c.ops === 200)!;
    expect(busy).toMatchObject({ inSlo: true, rtoMs: 450, recovered: true });
  });
});
