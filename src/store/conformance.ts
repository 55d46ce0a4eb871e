// The Store conformance suite: every backend (SQLite now, PostgreSQL later) must pass it.
// It checks durability across reopen, atomic group commits, scans in UTF-8 byte order, the log
// feed, and the replication invariants of ARCHITECTURE.md ("Replication").
import { decode, encode } from '@msgpack/msgpack';
import { describe, expect, it } from 'vitest';
import { emptyState, type ItemState } from '../core/item.js';
import { dotOf, type VersionVector } from '../core/vector.js';
import type { CommitRequest, ItemRecord, LocalCommit, LogEntry, LogRecord, RemoteApply, Store } from './types.js';
import { commitClockOf, decodeLogEntry } from './log-codec.js';

export interface StoreFactory {
  /** A new, empty store for `siteId` at a fresh location. */
  create(siteId: string): Promise<{ store: Store; reopen(): Store }>;
  /** A new path for a snapshot file, and a store of `siteId` opened from such a file. */
  snapshotFiles?: { path(): string; open(path: string, siteId: string): Store };
}

function stateFor(dot: string, value: number): ItemState {
  return {
    ...emptyState(),
    c: { [dot.slice(0, dot.lastIndexOf(':'))]: Number(dot.slice(dot.lastIndexOf(':') + 1)) },
    r: { '': [{ d: dot, h: '0000000000010000', s: 'x', v: { value } }] },
    w: { h: '0000000000010000', s: 'x', d: dot },
  };
}

function record(table: string, key: string, state: ItemState, live = true): ItemRecord {
  return { table, key, state, live, value: live ? { k: key } : undefined, version: `v-${state.w.d}`, origin: 'x', hash: live ? 'ab'.repeat(16) : '' };
}

function put(table: string, key: string, value = 1, awaitsAck = false): CommitRequest {
  return {
    kind: 'local',
    ...(awaitsAck ? { awaitsAck } : {}),
    refs: [{ table, key }],
    build: (_cur, seq) => ({ records: [record(table, key, stateFor(dotOf('local.1', seq), value))], hlc: '0000000000010000' }),
  };
}

/** A local put under an Idempotency-Key; `built` counts the builds that ran. */
function keyedPut(table: string, key: string, idemKey: string, built: { n: number } = { n: 0 }): CommitRequest {
  return {
    kind: 'local',
    refs: [{ table, key }],
    idempotency: { key: idemKey, fingerprint: `fp-${table}-${key}` },
    build: (_cur, seq) => {
      built.n++;
      return { records: [record(table, key, stateFor(dotOf('local.1', seq), seq))], hlc: '0000000000010000' };
    },
  };
}

function remote(entry: LogEntry, conflicts = 0): CommitRequest {
  return {
    kind: 'remote',
    entry,
    merge: () => ({
      records: entry.items.map((i) => record(i.table, i.key, i.state)),
      conflicts: Array.from({ length: conflicts }, (_, n) => ({
        table: entry.items[0]!.table,
        key: entry.items[0]!.key,
        loserDot: `${entry.origin}:${entry.seq}:${n}`,
        field: '',
        winner: { version: 'w', origin: 'x' },
        loser: { value: { n }, deleted: false, version: 'l', origin: 'y' },
        atMs: 1,
      })),
    }),
  };
}

function entry(origin: string, seq: number, key: string): LogEntry {
  return { origin, seq, hlc: '0000000000020000', items: [{ table: 't', key, state: stateFor(dotOf(origin, seq), seq) }] };
}

export function storeSuite(name: string, factory: StoreFactory): void {
  describe(`Store conformance: ${name}`, () => {
    it('keeps committed writes, the vector and the identity across a reopen', async () => {
      const { store, reopen } = await factory.create('s1');
      const id = await store.open();
      expect(id.created).toBe(true);
      const results = await store.commit([put('t', 'a'), put('t', 'b')]);
      expect(results.map((r) => r.kind === 'local' && r.ok && r.seq)).toEqual([1, 2]);
      await store.close();
      const again = reopen();
      const id2 = await again.open();
      expect(id2.created).toBe(false);
      expect(id2.origin).toBe(id.origin);
      expect(again.vector()).toEqual({ [id.origin]: 2 });
      expect((await again.getItem('t', 'a'))?.live).toBe(true);
      await again.close();
    });

    it('rejects one failing write of a group alone; the others commit', async () => {
      const { store } = await factory.create('s1');
      await store.open();
      const failing: CommitRequest = { kind: 'local', refs: [{ table: 't', key: 'x' }], build: () => { throw new Error('no'); } };
      const results = await store.commit([put('t', 'a'), failing, put('t', 'b')]);
      expect(results.map((r) => r.kind === 'local' && r.ok)).toEqual([true, false, true]);
      expect(await store.getItem('t', 'x')).toBeUndefined();
      expect((results[2] as { seq: number }).seq).toBe(2);
      await store.close();
    });

    it('a write reads what the writes before it left, in its group and in earlier ones, and replaces it', async () => {
      const { store } = await factory.create('s');
      await store.open();
      const seen: (string | undefined)[] = [];
      const overwrite = (value: number, live = true): CommitRequest => ({
        kind: 'local',
        refs: [{ table: 't', key: 'a' }],
        build: ([cur], seq) => {
          seen.push(cur === undefined ? undefined : `${cur.version} ${cur.live} ${(cur.state.r['']![0]!.v as { value: number }).value}`);
          return { records: [record('t', 'a', stateFor(dotOf('local.1', seq), value), live)], hlc: '0000000000010000' };
        },
      });
      await store.commit([overwrite(1), overwrite(2), put('t', 'b')]);
      await store.commit([overwrite(3, false), overwrite(4)]);
      expect(seen).toEqual([undefined, 'v-local.1:1 true 1', 'v-local.1:2 true 2', 'v-local.1:4 false 3']);
      const a = await store.getItem('t', 'a');
      expect([a?.version, a?.live, a?.value]).toEqual(['v-local.1:5', true, { k: 'a' }]);
      expect((await store.scanAll('t', undefined, 10)).map((r) => r.key)).toEqual(['a', 'b']);
      await store.close();
    });

    it('scans live items in UTF-8 byte order with start, end, prefix and resume', async () => {
      const { store } = await factory.create('s1');
      await store.open();
      const keys = ['b', 'a', 'é', 'z', 'aa', 'ab', '\u{1F600}', 'Z', 'a\u0000b'];
      await store.commit(keys.map((k) => put('t', k)));
      const all = (await store.scanItems({ table: 't', limit: 100 })).map((r) => r.key);
      const byBytes = [...keys].sort((x, y) => Buffer.compare(Buffer.from(x), Buffer.from(y)));
      expect(all).toEqual(byBytes);
      expect((await store.scanItems({ table: 't', prefix: 'a', limit: 100 })).map((r) => r.key)).toEqual(['a', 'a\u0000b', 'aa', 'ab']);
      expect((await store.scanItems({ table: 't', start: 'aa', end: 'b', limit: 100 })).map((r) => r.key)).toEqual(['aa', 'ab']);
      expect((await store.scanItems({ table: 't', after: 'ab', limit: 2 })).map((r) => r.key)).toEqual(['b', 'z']);
      await store.close();
    });

    it('invariant 1: every applied remote entry is logged and served again (relay), losers included', async () => {
      const { store } = await factory.create('s1');
      await store.open();
      const e1 = entry('peer.1', 1, 'k');
      const e2 = entry('peer.1', 2, 'k');
      await store.commit([remote(e1), remote(e2, 2)]);
      const served = await store.readLog({}, 100, 1 << 20);
      expect(served.map((e) => `${e.origin}:${e.seq}`)).toEqual(['peer.1:1', 'peer.1:2']);
      expect(served[1]).toEqual(e2);
      expect((await store.conflicts('t', 0, 10)).length).toBe(2);
      await store.close();
    });

    it('invariant 2: apply skips seq <= vector and stops at a gap; the feed is in seq order', async () => {
      const { store } = await factory.create('s1');
      await store.open();
      const res = await store.commit([remote(entry('p.1', 1, 'a')), remote(entry('p.1', 1, 'a')), remote(entry('p.1', 3, 'a')), remote(entry('p.1', 2, 'b'))]);
      expect(res).toEqual([
        { kind: 'remote', applied: true },
        { kind: 'remote', applied: false, reason: 'duplicate' },
        { kind: 'remote', applied: false, reason: 'gap' },
        { kind: 'remote', applied: true },
      ]);
      expect(store.vector()).toEqual({ 'p.1': 2 });
      await store.commit([remote(entry('p.1', 3, 'c'))]);
      const from: VersionVector = { 'p.1': 1 };
      expect((await store.readLog(from, 100, 1 << 20)).map((e) => e.seq)).toEqual([2, 3]);
      await store.close();
    });

    it('invariant 3: an origin seq order is its commit order, across groups and reopen', async () => {
      const { store, reopen } = await factory.create('s1');
      const id = await store.open();
      await store.commit([put('t', 'a'), put('t', 'b')]);
      await store.commit([put('t', 'c')]);
      await store.close();
      const again = reopen();
      await again.open();
      const res = await again.commit([put('t', 'd')]);
      expect((res[0] as { seq: number }).seq).toBe(4);
      const log = await again.readLog({}, 100, 1 << 20);
      expect(log.filter((e) => e.origin === id.origin).map((e) => e.items[0]!.key)).toEqual(['a', 'b', 'c', 'd']);
      await again.close();
    });

    it('bounds a feed read by entries and bytes, and always makes progress', async () => {
      const { store } = await factory.create('s1');
      await store.open();
      await store.commit(Array.from({ length: 20 }, (_, i) => put('t', `k${i}`)));
      expect((await store.readLog({}, 5, 1 << 20)).length).toBe(5);
      expect((await store.readLog({}, 100, 1)).length).toBe(1);
      const [origin] = Object.keys(store.vector());
      expect((await store.readLog({ [origin!]: 7 }, 5, 1 << 20)).map((e) => e.seq)).toEqual([8, 9, 10, 11, 12]);
      expect((await store.readLog({ [origin!]: 18 }, 5, 1 << 20)).map((e) => e.seq)).toEqual([19, 20]);
      await store.close();
    });

    it('caps a feed read per origin with upTo, naming only the origins to serve', async () => {
      const { store } = await factory.create('s1');
      const id = await store.open();
      await store.commit([remote(entry('p.1', 1, 'a')), remote(entry('p.1', 2, 'b')), remote(entry('q.1', 1, 'c')), put('t', 'd')]);
      const served = await store.readLog({}, 100, 1 << 20, { 'p.1': 1, [id.origin]: 99 });
      expect(served.map((e) => `${e.origin}:${e.seq}`).sort()).toEqual([`${id.origin}:1`, 'p.1:1'].sort());
      expect((await store.readLog({ 'p.1': 1 }, 100, 1 << 20, { 'p.1': 2 })).map((e) => `${e.origin}:${e.seq}`)).toEqual(['p.1:2']);
      await store.close();
    });

    it('serves raw log bodies that decode to the entries, and logs a received body byte for byte', async () => {
      const { store } = await factory.create('s1');
      await store.open();
      const e1 = entry('p.1', 1, 'a');
      const raw = encode(e1);
      await store.commit([{ ...(remote(e1) as RemoteApply), raw }, put('t', 'b')]);
      const records = await store.readLogRaw({}, 100, 1 << 20);
      const decoded = await store.readLog({}, 100, 1 << 20);
      expect(records.map((r) => decode(r.body))).toEqual(decoded);
      expect(records.map((r) => [r.origin, r.seq, r.hlc])).toEqual(decoded.map((e) => [e.origin, e.seq, e.hlc]));
      expect(Buffer.from(records.find((r) => r.origin === 'p.1')!.body)).toEqual(Buffer.from(raw));
      await store.close();
    });

    it('applies peers\' entries without a sync when asked, and makes them durable at the next sync', async () => {
      const { store, reopen } = await factory.create('s1');
      const id = await store.open();
      await store.commit([remote(entry('p.1', 1, 'a'))], { sync: false });
      expect(store.vector()).toEqual({ 'p.1': 1 });
      expect(store.durableVector()).toEqual({});
      // served to other peers at once: the origin has it durably
      expect((await store.readLog({}, 100, 1 << 20)).map((e) => e.seq)).toEqual([1]);
      expect(await store.sync()).toEqual({ 'p.1': 1 });
      await store.commit([remote(entry('p.1', 2, 'b'))], { sync: false });
      // a commit with sync covers what came before it
      await store.commit([put('t', 'c')]);
      expect(store.durableVector()).toEqual({ 'p.1': 2, [id.origin]: 1 });
      await expect(store.commit([put('t', 'd')], { sync: false })).rejects.toThrow(/local writes/);
      await store.close();
      const again = reopen();
      await again.open();
      expect(again.durableVector()).toEqual(again.vector());
      await again.close();
    });

    it('keeps the membership of the newest epoch, durably, and refuses an older one', async () => {
      const { store, reopen } = await factory.create('s1');
      await store.open();
      expect(store.membership()).toEqual({ epoch: -1, members: [] });
      const first = { epoch: 0, members: [{ site: 's2', state: 'active' as const }, { site: 's1', state: 'active' as const }] };
      expect(await store.setMembership(first)).toBe(true);
      expect(store.membership()).toEqual({ epoch: 0, members: [{ site: 's1', state: 'active' }, { site: 's2', state: 'active' }] });
      const next = { epoch: 3, members: [{ site: 's1', state: 'active' as const }, { site: 's2', state: 'removed' as const }, { site: 's3', state: 'joining' as const }] };
      expect(await store.setMembership(next)).toBe(true);
      expect(await store.setMembership({ epoch: 2, members: [] })).toBe(false);
      await expect(store.setMembership({ epoch: 4, members: [{ site: 's1', state: 'gone' as never }] })).rejects.toThrow(/member state/);
      await store.close();
      const again = reopen();
      await again.open();
      expect(again.membership()).toEqual(next);
      await again.close();
    });

    it('flags the log entry of a local write that waits for acks', async () => {
      const { store } = await factory.create('s1');
      await store.open();
      await store.commit([put('t', 'a', 1, true), put('t', 'b')]);
      expect((await store.readLog({}, 100, 1 << 20)).map((e) => e.awaitsAck)).toEqual([true, undefined]);
      await store.close();
    });

    it('compacts the log up to a vector and reports its floor; a snapshot is one consistent read', async () => {
      const { store } = await factory.create('s1');
      await store.open();
      await store.commit([remote(entry('p.1', 1, 'a')), remote(entry('p.1', 2, 'b')), remote(entry('p.1', 3, 'c'))]);
      expect(await store.compactLog({ 'p.1': 2 })).toBe(2);
      expect(store.logFloor()).toEqual({ 'p.1': 2 });
      expect((await store.readLog({ 'p.1': 2 }, 100, 1 << 20)).map((e) => e.seq)).toEqual([3]);
      const pages = [];
      for await (const page of store.snapshot(2)) pages.push(page);
      expect(pages[0]!.vector).toEqual({ 'p.1': 3 });
      expect(pages.flatMap((p) => p.items.map((i) => i.key))).toEqual(['a', 'b', 'c']);
      await store.close();
    });

    it('advance-vector (end of a snapshot install) moves the vector and the log floor, never the own origin', async () => {
      const { store } = await factory.create('s1');
      const id = await store.open();
      await store.commit([{ kind: 'advance-vector', vector: { 'p.1': 5 } }]);
      expect(store.vector()).toEqual({ 'p.1': 5 });
      expect(store.logFloor()).toEqual({ 'p.1': 5 });
      await expect(store.commit([{ kind: 'advance-vector', vector: { [id.origin]: 3 } }])).rejects.toThrow(/own origin/);
      await store.close();
    });

    it('takeNewIncarnation: the old origin stays as a peer origin, new writes are numbered from 1 under the new one, durably', async () => {
      const { store, reopen } = await factory.create('s1');
      const first = await store.open();
      await store.commit([put('t', 'a'), put('t', 'b')]);
      await store.commit([remote(entry('p.1', 1, 'c'))]);
      const next = await store.takeNewIncarnation(first.incarnation + 5);
      expect(next.origin).not.toBe(first.origin);
      expect(next.incarnation).toBeGreaterThan(first.incarnation + 5);
      const [w] = await store.commit([put('t', 'd')]);
      expect(w).toMatchObject({ kind: 'local', ok: true, seq: 1 });
      expect(store.vector()).toEqual({ [first.origin]: 2, [next.origin]: 1, 'p.1': 1 });
      // the old origin's entries are served like any peer's, in order, and more of them can be applied
      expect((await store.readLog({}, 10, 1 << 20)).map((e) => `${e.origin}:${e.seq}`).sort()).toEqual(
        [`${first.origin}:1`, `${first.origin}:2`, `${next.origin}:1`, 'p.1:1'].sort(),
      );
      expect(await store.commit([remote(entry(first.origin, 3, 'e'))])).toMatchObject([{ kind: 'remote', applied: true }]);
      await store.close();
      const again = reopen();
      const reopened = await again.open();
      expect(reopened.origin).toBe(next.origin);
      expect(again.vector()).toEqual({ [first.origin]: 3, [next.origin]: 1, 'p.1': 1 });
      expect(await again.commit([put('t', 'f')])).toMatchObject([{ ok: true, seq: 2 }]);
      expect((await again.readLog({ [next.origin]: 1 }, 10, 1 << 20)).map((e) => `${e.origin}:${e.seq}`).filter((d) => d.startsWith(next.origin))).toEqual([`${next.origin}:2`]);
      await again.close();
    });

    it('a snapshot carries the GC floor read with it, and installing one joins that floor into ours', async () => {
      const { store } = await factory.create('s1');
      await store.open();
      await store.commit([remote(entry('p.1', 1, 'a'))]);
      await store.purgeTombstones({ 'p.1': 1 }, 10);
      const pages = [];
      for await (const page of store.snapshot(10)) pages.push(page);
      expect(pages[0]!.gcFloor).toEqual({ 'p.1': 1 });
      await store.close();

      const { store: fresh, reopen } = await factory.create('s2');
      await fresh.open();
      await fresh.commit([{ kind: 'advance-vector', vector: { 'p.1': 5 }, gcFloor: { 'p.1': 3, 'q.1': 2 } }]);
      expect(fresh.gcFloor()).toEqual({ 'p.1': 3, 'q.1': 2 });
      await fresh.close();
      const again = reopen();
      await again.open();
      expect(again.gcFloor()).toEqual({ 'p.1': 3, 'q.1': 2 });
      await again.close();
    });

    it('repairs write items without a log entry or a vector change', async () => {
      const { store } = await factory.create('s1');
      await store.open();
      await store.commit([{ kind: 'repair', refs: [{ table: 't', key: 'r' }], merge: () => ({ records: [record('t', 'r', stateFor('q.1:4', 1))], conflicts: [] }) }]);
      expect((await store.getItem('t', 'r'))?.live).toBe(true);
      expect(store.vector()).toEqual({});
      expect(await store.readLog({}, 100, 1 << 20)).toEqual([]);
      await store.close();
    });

    it('purges only tombstones whose context the floor covers, and keeps the floor', async () => {
      const { store, reopen } = await factory.create('s1');
      await store.open();
      const tomb = (key: string, dot: string): CommitRequest => ({
        kind: 'repair',
        refs: [{ table: 't', key }],
        merge: () => ({ records: [record('t', key, stateFor(dot, 0), false)], conflicts: [] }),
      });
      await store.commit([tomb('old', 'p.1:2'), tomb('new', 'p.1:9'), put('t', 'live')]);
      expect(await store.purgeTombstones({ 'p.1': 5 }, 100)).toBe(1);
      expect(await store.getItem('t', 'old')).toBeUndefined();
      expect(await store.getItem('t', 'new')).toBeDefined();
      expect(store.gcFloor()).toEqual({ 'p.1': 5 });
      await store.close();
      const again = reopen();
      await again.open();
      expect(again.gcFloor()).toEqual({ 'p.1': 5 });
      await again.close();
    });

    it('indexes an Idempotency-Key with its local write: the entry carries it, a later write under it (same group or not) is neither built nor written', async () => {
      const { store, reopen } = await factory.create('s1');
      const id = await store.open();
      const built = { n: 0 };
      const [first, again] = await store.commit([keyedPut('t', 'a', 'K1', built), keyedPut('t', 'a', 'K1', built), put('t', 'b')]);
      expect(first).toMatchObject({ kind: 'local', ok: true, seq: 1 });
      const recorded = { key: 'K1', fingerprint: 'fp-t-a', origin: id.origin, seq: 1, hlc: '0000000000010000', items: [{ table: 't', key: 'a', version: 'v-local.1:1', origin: 'x' }] };
      expect(again).toMatchObject({ kind: 'local', ok: false, replayed: recorded });
      expect(built.n).toBe(1);
      expect(store.vector()).toEqual({ [id.origin]: 2 });
      const log = await store.readLog({}, 100, 1 << 20);
      expect(log.map((e) => e.idempotency)).toEqual([{ key: 'K1', fingerprint: 'fp-t-a' }, undefined]);
      await store.close();
      const reopened = reopen();
      await reopened.open();
      expect(await reopened.idempotencyRecord('K1')).toMatchObject(recorded);
      expect(await reopened.commit([keyedPut('t', 'a', 'K1', built), keyedPut('t', 'c', 'K2', built)])).toMatchObject([
        { kind: 'local', ok: false, replayed: { seq: 1 } },
        { kind: 'local', ok: true, seq: 3 },
      ]);
      expect(built.n).toBe(2);
      expect(await reopened.idempotencyRecord('nope')).toBeUndefined();
      await reopened.close();
    });

    it('an Idempotency-Key is indexed in the transaction of its write: a refused write leaves no key, a rolled-back group neither', async () => {
      const { store } = await factory.create('s1');
      const id = await store.open();
      const refused: CommitRequest = { kind: 'local', refs: [{ table: 't', key: 'x' }], idempotency: { key: 'K', fingerprint: 'f' }, build: () => { throw new Error('412'); } };
      await store.commit([refused]);
      expect(await store.idempotencyRecord('K')).toBeUndefined();
      // a request that breaks an assertion inside the transaction rolls the whole group back, keyed write included
      const broken: CommitRequest = { kind: 'local', refs: [], build: () => ({ records: [], hlc: '0000000000010000' }) };
      await expect(store.commit([keyedPut('t', 'a', 'K'), broken])).rejects.toThrow();
      expect(await store.idempotencyRecord('K')).toBeUndefined();
      expect(store.vector()).toEqual({});
      expect(await store.commit([keyedPut('t', 'a', 'K')])).toMatchObject([{ ok: true, seq: 1 }]);
      expect(await store.idempotencyRecord('K')).toMatchObject({ origin: id.origin, seq: 1 });
      await store.close();
    });

    it("indexes a peer's entry's Idempotency-Key with its apply (a quarantined one too); of two entries under one key every site keeps the earlier", async () => {
      const { store } = await factory.create('s1');
      await store.open();
      const keyed = (origin: string, seq: number, key: string, hlc: string): LogEntry => ({ ...entry(origin, seq, key), hlc, idempotency: { key: 'K', fingerprint: `f-${origin}` } });
      const late = keyed('q.1', 1, 'a', '0000000000030000');
      await store.commit([remote(late)]);
      const state = late.items[0]!.state;
      expect(await store.idempotencyRecord('K')).toMatchObject({ key: 'K', fingerprint: 'f-q.1', origin: 'q.1', seq: 1, items: [{ table: 't', key: 'a', origin: state.w.s }] });
      expect((await store.idempotencyRecord('K'))!.items[0]!.version).toMatch(/^0000000000010000-x-/);
      // an earlier write under the same key (another site took it first) replaces it; a later one does not
      await store.commit([remote(keyed('p.1', 1, 'b', '0000000000020000')), remote(keyed('r.1', 1, 'c', '0000000000040000'))]);
      expect(await store.idempotencyRecord('K')).toMatchObject({ origin: 'p.1', seq: 1 });
      const poisoned: CommitRequest = { kind: 'remote', entry: { ...entry('s.1', 1, 'd'), idempotency: { key: 'Q', fingerprint: 'f' } }, merge: () => { throw new Error('bad'); } };
      expect(await store.commit([poisoned])).toMatchObject([{ applied: true, quarantined: 'bad' }]);
      expect(await store.idempotencyRecord('Q')).toMatchObject({ origin: 's.1', seq: 1 });
      // a duplicate delivery changes nothing
      expect(await store.commit([remote(keyed('q.1', 1, 'a', '0000000000000001'))])).toMatchObject([{ applied: false, reason: 'duplicate' }]);
      expect(await store.idempotencyRecord('K')).toMatchObject({ origin: 'p.1' });
      await store.close();
    });

    it('pages its Idempotency-Keys in key order, and takes a peer snapshot\'s records (the earlier of two under one key), durably', async () => {
      const { store, reopen } = await factory.create('s1');
      await store.open();
      for (const k of ['b', 'a', 'c']) await store.commit([keyedPut('t', k, k)]);
      expect((await store.idempotencyRecords(undefined, 2)).map((r) => r.key)).toEqual(['a', 'b']);
      expect((await store.idempotencyRecords('b', 10)).map((r) => r.key)).toEqual(['c']);
      const theirs = { key: 'p', fingerprint: 'f', origin: 'p.1', seq: 4, hlc: '0000000000050000', items: [{ table: 't', key: 'x', version: 'v', origin: 'p' }], atMs: 5 };
      await store.putIdempotencyRecords([theirs, { ...theirs, key: 'a', origin: 'q.1', hlc: '0000000000000001' }, { ...theirs, key: 'b', hlc: 'ffffffffffffffff' }]);
      // durable with the next commit that syncs
      await store.commit([put('t', 'z')]);
      await store.close();
      const again = reopen();
      await again.open();
      expect(await again.idempotencyRecord('p')).toEqual(theirs);
      expect(await again.idempotencyRecord('a')).toMatchObject({ origin: 'q.1' });
      expect(await again.idempotencyRecord('b')).toMatchObject({ hlc: '0000000000010000' });
      await again.close();
    });

    it('keeps void items with the commit that finds them, across a reopen, and forgets them (and their Idempotency-Keys) with the commit that undoes them', async () => {
      const { store, reopen } = await factory.create('s1');
      const id = await store.open();
      const voidOf = (e: LogEntry, i = 0) => ({ table: 't', key: e.items[i]!.key, dot: dotOf(e.origin, e.seq), origin: e.origin, seq: e.seq, value: { n: e.seq }, state: e.items[i]!.state });
      // a peer's keyed entry whose item is void here: logged, its item kept as void in the same transaction
      const found = { ...entry('p.1', 1, 'a'), idempotency: { key: 'K', fingerprint: 'f' } };
      const keep: CommitRequest = { kind: 'remote', entry: found, merge: () => ({ records: [], conflicts: [], voidBacklog: { add: [voidOf(found), voidOf(found)] } }) };
      await store.commit([keep, keyedPut('t', 'mine', 'M')], { sync: true });
      expect(await store.voidBacklog(10)).toEqual([voidOf(found)]);
      // a repair that finds one, in a group that is rolled back: nothing of it is kept
      const other = entry('p.1', 2, 'b');
      const broken: CommitRequest = { kind: 'local', refs: [], build: () => ({ records: [], hlc: '0000000000010000' }) };
      await expect(store.commit([{ kind: 'repair', refs: [], merge: () => ({ records: [], conflicts: [], voidBacklog: { add: [voidOf(other)] } }) }, broken])).rejects.toThrow();
      expect(await store.voidBacklog(10)).toEqual([voidOf(found)]);
      await store.commit([{ kind: 'repair', refs: [], merge: () => ({ records: [], conflicts: [], voidBacklog: { add: [voidOf(other)] } }) }, put('t', 'z')]);
      await store.close();
      const again = reopen();
      await again.open();
      expect(await again.voidBacklog(10)).toEqual([voidOf(found), voidOf(other)]);
      expect(await again.voidBacklog(1)).toEqual([voidOf(found)]);
      // the compensating write forgets what it undid, and the Idempotency-Key of a void write of this site stops answering
      const comp: CommitRequest = {
        kind: 'local',
        refs: [{ table: 't', key: 'a' }],
        build: (_c, seq) => ({
          records: [record('t', 'a', stateFor(dotOf(id.origin, seq), 0))],
          hlc: '0000000000010000',
          voids: [{ table: 't', key: 'a', dot: voidOf(found).dot, value: null }],
          voidBacklog: { resolve: [{ table: 't', key: 'a', dot: voidOf(found).dot }], voidedDots: [{ origin: 'p.1', seq: 1 }, { origin: id.origin, seq: 1 }] },
        }),
      };
      expect(await again.idempotencyRecord('M')).toMatchObject({ origin: id.origin, seq: 1 });
      await again.commit([comp]);
      expect(await again.voidBacklog(10)).toEqual([voidOf(other)]);
      expect(await again.idempotencyRecord('K')).toBeUndefined();
      expect(await again.idempotencyRecord('M')).toBeUndefined();
      // applying a peer's compensating entry forgets the void items it names
      const undo = entry('q.1', 1, 'b');
      await again.commit([{ kind: 'remote', entry: undo, merge: () => ({ records: [], conflicts: [], voidBacklog: { resolve: [{ table: 't', key: 'b', dot: voidOf(other).dot }] } }) }]);
      expect(await again.voidBacklog(10)).toEqual([]);
      await again.close();
    });

    it('trims Idempotency-Keys indexed before a time, oldest first, at most a given number per call', async () => {
      const { store } = await factory.create('s1');
      await store.open();
      for (const k of ['K1', 'K2', 'K3']) await store.commit([keyedPut('t', k, k)]);
      const at = await Promise.all(['K1', 'K2', 'K3'].map(async (k) => (await store.idempotencyRecord(k))!.atMs));
      expect(at[0]! < at[1]! && at[1]! < at[2]!).toBe(true);
      expect(await store.trimIdempotencyKeys(at[2]!, 1)).toBe(1);
      expect(await store.idempotencyRecord('K1')).toBeUndefined();
      expect(await store.trimIdempotencyKeys(at[2]!, 10)).toBe(1);
      expect(await store.idempotencyRecord('K2')).toBeUndefined();
      expect(await store.idempotencyRecord('K3')).toBeDefined();
      await store.close();
    });

    it('digests: equal content gives equal digests whatever the write order; tombstones do not count', async () => {
      const a = await factory.create('s1');
      const b = await factory.create('s1');
      await a.store.open();
      await b.store.open();
      await a.store.commit([remote(entry('p.1', 1, 'x')), remote(entry('q.1', 1, 'y'))]);
      await b.store.commit([remote(entry('q.1', 1, 'y'))]);
      expect(await a.store.digests()).not.toEqual(await b.store.digests());
      await b.store.commit([remote(entry('p.1', 1, 'x'))]);
      expect(await a.store.digests()).toEqual(await b.store.digests());
      expect(await a.store.bucketDigests('t')).toEqual(await b.store.bucketDigests('t'));
      await a.store.close();
      await b.store.close();
    });

    it('a local entry carries its commit clock, which the write\'s own hlc does not drag; entries without one still decode', async () => {
      const { store } = await factory.create('s1');
      const id = await store.open();
      await store.commit([{ ...(put('t', 'a') as LocalCommit), build: (_c, seq) => ({ records: [record('t', 'a', stateFor(dotOf(id.origin, seq), 1))], hlc: '00000000ffff0000', clock: '0000000000030000' }) }]);
      const [e] = await store.readLog({}, 10, 1 << 20);
      expect(e).toMatchObject({ hlc: '00000000ffff0000', clock: '0000000000030000' });
      expect(commitClockOf(e!)).toBe('0000000000030000');
      expect(commitClockOf(entry('p.1', 1, 'x'))).toBe('0000000000020000');
      await store.close();
    });

    it('boundary: vector, digests, clock and floors of what is durable, read together; own entries reach listeners once durable', async () => {
      const { store } = await factory.create('s1');
      const id = await store.open();
      const heard: LogRecord[] = [];
      const stop = store.onDurableOwnEntries((records) => {
        // called after the commit's sync: the durable vector covers every record it is given
        for (const r of records) expect(store.durableVector()[id.origin]).toBeGreaterThanOrEqual(r.seq);
        heard.push(...records);
      });
      await store.commit([put('t', 'a'), remote(entry('p.1', 1, 'x'))]);
      await store.commit([remote(entry('p.1', 2, 'y'))], { sync: false });
      const b = await store.boundary();
      expect(b.vector).toEqual({ [id.origin]: 1, 'p.1': 2 });
      expect(store.durableVector()).toEqual(b.vector);
      expect(b.digests).toEqual(await store.digests());
      expect(b.logFloor).toEqual({});
      expect(b.gcFloor).toEqual({});
      expect(b.maxHlc >= '0000000000010000').toBe(true);
      await store.commit([put('t', 'b')]);
      expect(heard.map((r) => [r.origin, r.seq])).toEqual([[id.origin, 1], [id.origin, 2]]);
      expect(decodeLogEntry(heard[1]!.body).items[0]!.key).toBe('b');
      stop();
      await store.commit([put('t', 'c')]);
      expect(heard).toHaveLength(2);
      await store.close();
    });

    it('snapshotToFile: a copy of items, vector, floors and identity that opens as a store, with an empty log', async () => {
      if (factory.snapshotFiles === undefined) return;
      const { store } = await factory.create('s1');
      const id = await store.open();
      await store.commit([put('t', 'a'), put('t', 'b'), remote(entry('p.1', 1, 'x')), remoteTombstone('t', 'gone', 'p.1:2')]);
      const path = factory.snapshotFiles.path();
      const info = await store.snapshotToFile(path, { itemsPerStep: 1, pauseMs: 0 });
      expect(info.vector).toEqual(store.vector());
      expect(info.items).toBe(4);
      const copy = factory.snapshotFiles.open(path, 's1');
      const copyId = await copy.open();
      expect(copyId.origin).toBe(id.origin);
      expect(copy.vector()).toEqual(store.vector());
      expect(await copy.digests()).toEqual(await store.digests());
      expect((await copy.getItem('t', 'gone'))?.live).toBe(false);
      expect(copy.logFloor()).toEqual(store.vector());
      expect(await copy.readLog({}, 10, 1 << 20)).toEqual([]);
      await copy.close();
      await store.close();
    });
  });
}

function remoteTombstone(table: string, key: string, dot: string): CommitRequest {
  const [origin, seq] = [dot.slice(0, dot.lastIndexOf(':')), Number(dot.slice(dot.lastIndexOf(':') + 1))];
  const state: ItemState = { ...emptyState(), c: { [origin]: seq }, w: { h: '0000000000020000', s: 'x', d: dot } };
  return { kind: 'remote', entry: { origin, seq, hlc: '0000000000020000', items: [{ table, key, state }] }, merge: () => ({ records: [record(table, key, state, false)], conflicts: [] }) };
}
