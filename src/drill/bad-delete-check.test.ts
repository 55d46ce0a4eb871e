// The bad-delete check fed a good recording passes it; fed a bad one (an item back at one site only,
// an item back with another value, a key written after the delete overwritten, a rewind write
// outside its prefix, a rewind that did not finish) names what is wrong. And the history of the
// deletes and the rewind's writes keeps the lost-write checker honest: covered dots pass, a rewind
// write that one site never got is a lost write.
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../config/load.js';
import { checkBadDelete, type BadDeleteRecording } from './bad-delete-check.js';
import { findLostWrites, itemRef, type FinalItem, type SiteFinal } from './checkers.js';
import type { OpRecord } from './op-history.js';

const tables = parseConfig(
  { cluster: 'c', secret: 'a-secret-of-16-chars', sites: [{ id: 'a', url: 'http://127.0.0.1:1' }, { id: 'b', url: 'http://127.0.0.1:2' }], tables: { profiles: { pattern: 'local' } } },
  'test',
).tables;
const slo = { restoredAllSites: true as const, untouchedChangedMax: 0 };
const seeded = { 'bd/0': { w: 's0' }, 'bd/1': { w: 's1' }, 'bd/2': { w: 's2' } };

const recording = (): BadDeleteRecording => ({
  table: 'profiles',
  prefix: 'bd/',
  seedSite: 'a',
  deleteSite: 'b',
  seeded,
  deleted: ['bd/0', 'bd/1', 'bd/2'],
  deleteAtMs: 100,
  deleteWallMs: 1_000_000,
  goneEverywhereAfterMs: 50,
  rewrittenAfter: { 'bd/2': { w: 'again' } },
  untouched: { 'bd-after/0': { w: 'after' } },
  rewind: {
    toTime: '2026-01-01T00:00:00.000Z',
    startedAtMs: 200,
    durationMs: 900,
    attempts: 1,
    exitCode: 0,
    id: 'rw-1',
    done: true,
    written: 2,
    counts: { 'deleted-after': 2, 'changed-after': 1 },
    errors: [],
    notCoveredBy: [],
    keys: { 'bd/0': { class: 'deleted-after', action: 'written', dot: 'a.1:10' }, 'bd/1': { class: 'deleted-after', action: 'written', dot: 'a.1:11' }, 'bd/2': { class: 'changed-after', action: 'skipped' } },
    error: null,
  },
});

const live = (value: Record<string, unknown>, context: Record<string, number> = { 'a.1': 11, 'b.1': 5 }): FinalItem => ({ context, live: true, value });
const good = (): Record<string, FinalItem> => ({
  [itemRef('profiles', 'bd/0')]: live({ w: 's0' }),
  [itemRef('profiles', 'bd/1')]: live({ w: 's1' }),
  [itemRef('profiles', 'bd/2')]: live({ w: 'again' }),
  [itemRef('profiles', 'bd-after/0')]: live({ w: 'after' }),
});
const site = (name: string, items: Record<string, FinalItem>): SiteFinal => ({ site: name, gcFloor: {}, items: new Map(Object.entries(items)) });

describe('the bad-delete check', () => {
  it('passes when every deleted item is back everywhere and nothing written after the delete changed', () => {
    const r = checkBadDelete(recording(), [site('a', good()), site('b', good())], [], slo);
    expect(r.failures).toEqual([]);
    expect(r).toMatchObject({ passed: true, seeded: 3, deleted: 3, toRestore: 2, restored: 2, restoredKeys: ['bd/0', 'bd/1'], skippedCount: 1, skipped: [{ key: 'bd/2', class: 'changed-after' }], untouchedChecked: 2, untouchedChangedCount: 0 });
  });

  it('names an item back at one site only, and one back with another value', () => {
    const atB = good();
    delete atB[itemRef('profiles', 'bd/0')];
    atB[itemRef('profiles', 'bd/1')] = live({ w: 'stale' });
    const r = checkBadDelete(recording(), [site('a', good()), site('b', atB)], [], slo);
    expect(r.passed).toBe(false);
    expect(r.restored).toBe(0);
    expect(r.notRestored).toEqual([
      { site: 'b', key: 'bd/0', why: 'absent' },
      { site: 'b', key: 'bd/1', why: 'holds {"w":"stale"}, not {"w":"s1"}' },
    ]);
    expect(r.failures[0]).toMatch(/2 of 2 deleted items not restored at every site \(bd\/0 at b: absent/);
  });

  it('names keys written after the delete that changed, and rewind writes outside the prefix or over them', () => {
    const rec = recording();
    rec.rewind!.keys['bd-after/0'] = { class: 'changed-after', action: 'written', dot: 'a.1:12' };
    const atA = good();
    atA[itemRef('profiles', 'bd/2')] = live({ w: 's2' });
    const r = checkBadDelete(rec, [site('a', atA), site('b', good())], [{ site: 'a', table: 'profiles', key: 'bd/2', reason: 'rewound', loserDot: 'b.1:7' }], slo);
    expect(r.untouchedChanged).toEqual([
      { site: 'a', key: 'bd/2', why: 'written after the delete as {"w":"again"}, now {"w":"s2"}' },
      { site: null, key: 'bd-after/0', why: 'the rewind wrote it (changed-after)' },
      { site: 'a', key: 'bd/2', why: 'the rewind overwrote b.1:7' },
    ]);
    expect(r.failures).toEqual([expect.stringMatching(/^bad-delete: 3 untouched keys changed \(SLO 0\)/)]);
  });

  it('fails a rewind that was refused or did not reach every site, and a delete that never reached every site', () => {
    const rec = recording();
    rec.goneEverywhereAfterMs = null;
    rec.rewind = { ...rec.rewind!, exitCode: 1, done: false, notCoveredBy: ['b'] };
    const r = checkBadDelete(rec, [site('a', good()), site('b', good())], [], slo);
    expect(r.failures).toEqual(['bad-delete: the delete did not reach every site', 'bad-delete: the rewind did not complete (exit 1; not covered by b)']);
    rec.rewind = null;
    expect(checkBadDelete(rec, [site('a', good())], [], slo).failures).toContain('bad-delete: the rewind did not run');
  });

  it('keeps the lost-write checker honest over the deletes and the rewind writes', () => {
    let id = 0;
    const w = (p: Partial<OpRecord> & Pick<OpRecord, 'op' | 'key' | 'dot'>): OpRecord => ({ id: id++, client: 'bad-delete', table: 'profiles', via: 'a', consistency: 'eventual', intendedMs: 0, sentMs: 0, endMs: 1, outcome: 'ok', ...p });
    const history = [
      w({ op: 'put', key: 'bd/0', dot: 'a.1:1' }),
      w({ op: 'delete', key: 'bd/0', dot: 'b.1:5' }),
      w({ op: 'put', key: 'bd/0', dot: 'a.1:10', client: 'rewind' }),
    ];
    const restored = site('a', { [itemRef('profiles', 'bd/0')]: live({ w: 's0' }) });
    expect(findLostWrites(history, [restored], [], tables)).toEqual([]);
    // a site whose item never saw the rewind's write (nor any later one): that write is lost
    const without = site('a', { [itemRef('profiles', 'bd/0')]: { context: { 'a.1': 1, 'b.1': 5 }, live: false, value: undefined } });
    expect(findLostWrites(history, [without], [], tables).map((l) => [l.key, l.dot])).toEqual([['bd/0', 'a.1:10']]);
  });
});
