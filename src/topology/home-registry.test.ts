import { describe, expect, it } from 'vitest';
import { parseConfig } from '../config/load.js';
import { homeRegistryTable } from '../config/schema.js';
import { RequestError } from '../core/errors.js';
import { HomeCache, homeOfValue, parseRegistryKey, partitionOf, registryKey, settledByCut } from './home-registry.js';
import { cutsBounding, genesisTopology } from './record.js';

const raw = (tables: Record<string, unknown>) => ({
  cluster: 'fw',
  secret: 'first-writer-test-secret-0123456789',
  sites: [
    { id: 'us-east', url: 'http://127.0.0.1:7101' },
    { id: 'eu-west', url: 'http://127.0.0.1:7102' },
  ],
  tables,
});

describe('first-writer partitions and registry keys', () => {
  it('takes the partition before the separator and refuses a key without one (400)', () => {
    expect(partitionOf('sessions', ':', 'p1:a:b')).toBe('p1');
    expect(partitionOf('sessions', '::', 'p1::a')).toBe('p1');
    for (const key of ['nosep', ':leading'])
      expect(() => partitionOf('sessions', ':', key)).toThrow(expect.objectContaining({ status: 400, errors: [{ path: 'key', message: 'expected <partition>:<id>' }] }) as RequestError);
  });

  it('round-trips registry keys, partitions holding "/" included, and reads only { site } values', () => {
    expect(parseRegistryKey(registryKey('sessions', 'a/b'))).toEqual({ table: 'sessions', partition: 'a/b' });
    expect(parseRegistryKey('nopartition/')).toBeUndefined();
    expect(parseRegistryKey('/p')).toBeUndefined();
    expect(homeOfValue({ site: 'us-east' })).toBe('us-east');
    for (const v of [null, [], { site: '' }, { site: 3 }, 'us-east']) expect(homeOfValue(v)).toBeUndefined();
  });
});

describe('HomeCache', () => {
  it('keeps the first home of a partition: a different second one is refused', () => {
    const cache = new HomeCache(10);
    expect(cache.set('t', 'p', 'us-east')).toBe(true);
    expect(cache.set('t', 'p', 'us-east')).toBe(true);
    expect(cache.set('t', 'p', 'eu-west')).toBe(false);
    expect(cache.get('t', 'p')).toBe('us-east');
    expect(cache.get('other', 'p')).toBeUndefined();
  });

  it('forgets an assignment whose registry item was undone, and only that one', () => {
    const cache = new HomeCache(10);
    cache.set('t', 'p', 'us-east');
    cache.set('t', 'q', 'eu-west');
    // an undone claim naming another site than the one known here leaves the known one
    expect(cache.forget('t', 'q', 'us-east')).toBe(false);
    expect(cache.get('t', 'q')).toBe('eu-west');
    expect(cache.forget('t', 'p', 'us-east')).toBe(true);
    expect(cache.get('t', 'p')).toBeUndefined();
    // once forgotten, the partition takes the home the registry names now
    expect(cache.set('t', 'p', 'eu-west')).toBe(true);
    expect(cache.size).toBe(2);
  });

  it('is bounded, dropping the least recently used first', () => {
    const cache = new HomeCache(2);
    cache.set('t', 'a', 's1');
    cache.set('t', 'b', 's2');
    expect(cache.get('t', 'a')).toBe('s1');
    cache.set('t', 'c', 's3');
    expect(cache.size).toBe(2);
    expect(cache.get('t', 'b')).toBeUndefined();
    expect(cache.get('t', 'a')).toBe('s1');
    expect(cache.get('t', 'c')).toBe('s3');
  });
});

describe('registry items settled by a move of the registry', () => {
  const east = 'us-east.a1';
  const west = 'eu-west.b2';
  // the registry moved us-east → eu-west (revoked at 3, installed at 4 with us-east's cut at 10), then back (6, 7: cut of eu-west at 5)
  const changes = [
    { epoch: 0, unit: '_homes', owner: 'us-east' },
    { epoch: 3, unit: '_homes', owner: null },
    { epoch: 4, unit: '_homes', owner: 'eu-west' },
    { epoch: 6, unit: '_homes', owner: null },
    { epoch: 7, unit: '_homes', owner: 'us-east' },
  ];
  const cuts = [
    { epoch: 4, origin: east, seq: 10 },
    { epoch: 7, origin: west, seq: 5 },
  ];

  it('settles a claim within the cut of a later move away from its writer, and nothing else', () => {
    const t = { changes, cuts };
    expect(settledByCut(t, '_homes', east, 10)).toBe(true);
    // beyond the cut: void, or written after the registry came back: only the owner can tell
    expect(settledByCut(t, '_homes', east, 11)).toBe(false);
    expect(settledByCut(t, '_homes', west, 5)).toBe(true);
    expect(settledByCut(t, '_homes', west, 6)).toBe(false);
    // the writer still owns the registry: a claim not yet quorum-durable may still be cut off
    expect(settledByCut({ changes: changes.slice(0, 1), cuts: [] }, '_homes', east, 1)).toBe(false);
    // revoked, not installed yet: no cut yet
    expect(settledByCut({ changes: changes.slice(0, 2), cuts: [] }, '_homes', east, 1)).toBe(false);
    // another unit's moves settle nothing of the registry
    expect(settledByCut({ changes: changes.map((c) => ({ ...c, unit: 'ledger' })), cuts }, '_homes', east, 1)).toBe(false);
  });

  it('bounds every origin of a former owner at each move away, at 0 where the cut names none of its writes', () => {
    const t = { changes: [...changes, { epoch: 8, unit: 'ledger', owner: 'us-east' }, { epoch: 9, unit: 'ledger', owner: 'eu-west' }], cuts };
    expect(cutsBounding(t, east)).toEqual([
      { epoch: 4, seq: 10 },
      { epoch: 9, seq: 0 },
    ]);
    // an origin no voter had heard of when the cuts were taken: all its writes are beyond them
    expect(cutsBounding(t, 'us-east.c3')).toEqual([
      { epoch: 4, seq: 0 },
      { epoch: 9, seq: 0 },
    ]);
    expect(cutsBounding(t, west)).toEqual([{ epoch: 7, seq: 5 }]);
    // revoked and not installed yet: no cut to bound it by
    expect(cutsBounding({ changes: changes.slice(0, 2), cuts: [] }, east)).toEqual([]);
  });
});

describe('config and genesis of first-writer tables', () => {
  it('adds the quorum registry table, following the first such table\'s failoverOrder, idempotently', () => {
    const config = parseConfig(raw({ sessions: { pattern: 'partitioned', home: { from: 'first-writer' }, failoverOrder: ['eu-west', 'us-east'] } }));
    expect(config.tables.sessions!.home).toEqual({ from: 'first-writer', separator: ':' });
    expect(config.tables[homeRegistryTable]).toMatchObject({ pattern: 'global', writeSite: 'eu-west', failoverOrder: ['eu-west', 'us-east'], durability: 'quorum', conflict: 'lww' });
    // a parsed config written out and read again (local clusters, drills) keeps the same registry
    expect(parseConfig(JSON.parse(JSON.stringify(config)))).toEqual(config);
    expect(parseConfig(raw({ orders: { pattern: 'partitioned', home: { from: 'key-prefix' } } })).tables[homeRegistryTable]).toBeUndefined();
  });

  it('refuses a user table of the reserved name with another shape', () => {
    expect(() => parseConfig(raw({ [homeRegistryTable]: { pattern: 'local' } }))).toThrow(/tables\._homes: the table name _homes is reserved/);
  });

  it('gives each site a unit of the table at epoch 0, owned by itself', () => {
    const t = genesisTopology(parseConfig(raw({ sessions: { pattern: 'partitioned', home: { from: 'first-writer', separator: '|' } } })));
    expect(t.homes['sessions']).toEqual({ 'us-east': 'us-east', 'eu-west': 'eu-west' });
    expect(t.owners[homeRegistryTable]).toBe('us-east');
    expect(t.changes.filter((c) => c.unit.startsWith('sessions/'))).toEqual([
      { epoch: 0, unit: 'sessions/us-east', owner: 'us-east' },
      { epoch: 0, unit: 'sessions/eu-west', owner: 'eu-west' },
    ]);
  });
});
