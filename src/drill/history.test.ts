// Each check of the history checker and the disk ledger, fed a bad history: it must see it.
import { describe, expect, it } from 'vitest';
import { emptyState, type ItemState } from '../core/item.js';
import type { LogEntry } from '../store/types.js';
import { checkHistory, DiskLedger, History, type FinalItem } from './history.js';

const a = 'site-a.1';
const entry = (origin: string, seq: number, value: string, table = 'profiles', key = 'k'): LogEntry => ({
  origin,
  seq,
  hlc: seq.toString(16).padStart(16, '0'),
  items: [{ table, key, state: { ...emptyState(), r: { '': [{ d: `${origin}:${seq}`, h: '0', s: 'a', v: value }] } } }],
});
const synced = (ledger: DiskLedger, site: string) => ledger.syncDone(site, ledger.syncStarted(site));

describe('disk ledger', () => {
  it('reports a read that does not show what the writes its vector covers make (a write resurrected after a purge)', () => {
    const lww = { conflict: 'lww' as const, fields: {} };
    const ledger = new DiskLedger();
    const stateOf = (origin: string, seq: number, ms: number, v: string | undefined, c: Record<string, number>): ItemState => {
      const d = `${origin}:${seq}`;
      const h = ms.toString(16).padStart(12, '0') + '0000';
      return { ...emptyState(), c, r: { '': [v === undefined ? { d, h, s: origin, t: true } : { d, h, s: origin, v: { v } }] }, w: { h, s: origin, d } };
    };
    // a put by a.1 and a later, concurrent delete by b.1: the delete wins (higher hlc)
    const put = stateOf('a.1', 1, 1000, 'x', { 'a.1': 1 });
    const del = stateOf('b.1', 1, 2000, undefined, { 'b.1': 1 });
    ledger.committedLocal('a', { origin: 'a.1', seq: 1, hlc: put.w.h, items: [{ table: 'profiles', key: 'k', state: put }] });
    ledger.committedLocal('b', { origin: 'b.1', seq: 1, hlc: del.w.h, items: [{ table: 'profiles', key: 'k', state: del }] });
    const both = { 'a.1': 1, 'b.1': 1 };
    ledger.readAgainstLog('profiles', 'k', lww, both, undefined, 'deleted: right');
    expect(ledger.anomalies).toEqual([]);
    // a site that purged the tombstone and then applied the put shows it live: wrong
    ledger.readAgainstLog('profiles', 'k', lww, both, { live: true, value: { v: 'x' } }, 'resurrected');
    ledger.readAgainstLog('profiles', 'k', lww, { 'a.1': 1 }, { live: true, value: { v: 'x' } }, 'only the put: right');
    expect(ledger.anomalies.map((x) => `${x.kind} ${x.detail.split(':')[0]}`)).toEqual(['read-not-of-its-vector resurrected']);
  });

  it('reports a dot issued twice with different content while a peer holds the first', () => {
    const ledger = new DiskLedger();
    ledger.committedLocal('a', entry(a, 1, 'r1'));
    synced(ledger, 'a');
    ledger.committedRemote('b', entry(a, 1, 'r1'));
    const copy = ledger.copyDisk('a');
    ledger.committedLocal('a', entry(a, 2, 'r2'));
    synced(ledger, 'a');
    ledger.committedRemote('b', entry(a, 2, 'r2'));
    ledger.rollBack('a', copy);
    ledger.committedLocal('a', entry(a, 2, 'other'));
    expect(ledger.anomalies.map((x) => x.kind)).toEqual(['reissued-dot']);
  });

  it('lets a dot nobody holds any more (lost in a power loss before its sync) be issued again', () => {
    const ledger = new DiskLedger();
    ledger.committedLocal('a', entry(a, 1, 'r1'));
    expect(ledger.powerLoss('a').map((f) => f.dot)).toEqual([`${a}:1`]);
    ledger.committedLocal('a', entry(a, 1, 'again'));
    expect(ledger.anomalies).toEqual([]);
  });

  it('reports a quorum ack when the peers hold a different entry under that dot', () => {
    const ledger = new DiskLedger();
    for (const site of ['b', 'c']) {
      ledger.committedRemote(site, entry(a, 4, 'old'));
      synced(ledger, site);
    }
    ledger.committedLocal('a', entry(a, 4, 'new'));
    synced(ledger, 'a');
    ledger.quorumAcked(`${a}:4`, ['a', 'b', 'c'], 'op 1');
    // the peers got the first meaning of the dot by replication: issuing it again is a reissue too
    expect(ledger.anomalies.map((x) => x.kind)).toEqual(['reissued-dot', 'unbacked-quorum-ack']);
  });

  it('an entry applied after every holder lost it (in flight during a rollback) still counts as issued', () => {
    const ledger = new DiskLedger();
    ledger.committedLocal('a', entry(a, 1, 'v'));
    synced(ledger, 'a');
    ledger.rollBack('a', undefined);
    ledger.committedRemote('b', entry(a, 1, 'v'));
    expect(ledger.entries().map((e) => `${e.origin}:${e.seq}`)).toEqual([`${a}:1`]);
    ledger.committedLocal('a', entry(a, 1, 'other'));
    expect(ledger.anomalies.map((x) => x.kind)).toEqual(['reissued-dot']);
  });

  it('reports a quorum ack when the peers applied the entry but had not synced it', () => {
    const ledger = new DiskLedger();
    ledger.committedLocal('a', entry(a, 1, 'v'));
    synced(ledger, 'a');
    ledger.committedRemote('b', entry(a, 1, 'v'));
    ledger.quorumAcked(`${a}:1`, ['a', 'b', 'c'], 'op 1');
    expect(ledger.anomalies.map((x) => x.kind)).toEqual(['unbacked-quorum-ack']);
    synced(ledger, 'b');
    ledger.quorumAcked(`${a}:1`, ['a', 'b', 'c'], 'op 1');
    expect(ledger.anomalies).toHaveLength(1);
  });

  it('a sync covers only what was committed before it started; a power loss takes the rest', () => {
    const ledger = new DiskLedger();
    ledger.committedLocal('a', entry(a, 1, 'v1'));
    const token = ledger.syncStarted('a');
    ledger.committedLocal('a', entry(a, 2, 'v2'));
    ledger.syncDone('a', token);
    expect(ledger.durableSeq('a', a)).toBe(1);
    expect(ledger.powerLoss('a').map((f) => f.dot)).toEqual([`${a}:2`]);
  });

  it('reports a read that shows a write of its own site before that write is durable', () => {
    const ledger = new DiskLedger();
    ledger.committedLocal('a', entry(a, 1, 'v1'));
    synced(ledger, 'a');
    ledger.committedLocal('a', entry(a, 2, 'v2'));
    ledger.readReturned('a', a, { [a]: 1 }, 'read');
    expect(ledger.anomalies).toEqual([]);
    ledger.readReturned('a', a, { [a]: 2 }, 'read');
    expect(ledger.anomalies.map((x) => x.kind)).toEqual(['read-before-durable']);
  });
});

describe('counters with deletes', () => {
  const counterState = (c: Record<string, number>, live: boolean): ItemState => ({ ...emptyState(), c, x: live ? ['x'] : [] });
  const run = (value: number) => {
    const history = new History();
    const inc = (dot: string, amount: number) => Object.assign(history.invoke({ site: 'a', table: 'counters', key: 'k', kind: 'increment', amount, invokedAtMs: 0 }), { status: 'ok' as const, dot });
    inc('a.1:1', 3);
    const del = history.invoke({ site: 'b', table: 'counters', key: 'k', kind: 'delete', invokedAtMs: 0 });
    Object.assign(del, { status: 'ok', dot: 'b.1:1' });
    inc('a.1:2', 1);
    const log: LogEntry[] = [
      { origin: 'a.1', seq: 1, hlc: '1', items: [{ table: 'counters', key: 'k', state: counterState({ 'a.1': 1 }, true) }] },
      // the delete observed the first increment only
      { origin: 'b.1', seq: 1, hlc: '2', items: [{ table: 'counters', key: 'k', state: counterState({ 'a.1': 1, 'b.1': 1 }, false) }] },
      { origin: 'a.1', seq: 2, hlc: '3', items: [{ table: 'counters', key: 'k', state: counterState({ 'a.1': 2, 'b.1': 1 }, true) }] },
    ];
    const items = new Map<string, FinalItem>([['counters\u0000k', { table: 'counters', key: 'k', state: undefined, live: true, value: { n: value } }]]);
    return checkHistory({ history, log, items, conflictLosers: new Set(), lwwTables: new Set(), counterField: () => 'n' });
  };

  it('expects the increments no delete observed', () => {
    expect(run(1)).toEqual([]);
  });

  it('reports an increment after a delete that is lost (tombstone GC), and one the delete should have removed', () => {
    expect(run(0).map((x) => x.kind)).toEqual(['counter-out-of-bounds']);
    expect(run(4).map((x) => x.kind)).toEqual(['counter-out-of-bounds']);
  });

  it('widens the bounds by unknown increments of each sign, which never cancel out', () => {
    const history = new History();
    history.invoke({ site: 'a', table: 'counters', key: 'k', kind: 'increment', amount: 5, invokedAtMs: 0 });
    history.invoke({ site: 'a', table: 'counters', key: 'k', kind: 'increment', amount: -5, invokedAtMs: 0 });
    const check = (value: number) =>
      checkHistory({
        history,
        log: [],
        items: new Map<string, FinalItem>([['counters\u0000k', { table: 'counters', key: 'k', state: undefined, live: true, value: { n: value } }]]),
        conflictLosers: new Set(),
        lwwTables: new Set(),
        counterField: () => 'n',
      });
    // either, both or none of them may have applied: -5, 0 or 5
    for (const v of [-5, 0, 5]) expect(check(v)).toEqual([]);
    expect(check(6).map((x) => x.kind)).toEqual(['counter-out-of-bounds']);
  });
});

describe('Idempotency-Keys in the log', () => {
  const keyed = (origin: string, seq: number, key: string): LogEntry => ({ ...entry(origin, seq, `v${seq}`, 'counters'), idempotency: { key, fingerprint: 'f' } });
  const check = (log: LogEntry[]) => checkHistory({ history: new History(), log, items: new Map(), conflictLosers: new Set(), lwwTables: new Set(), counterField: () => undefined });

  it('reports a key written by two entries (a repeat applied again), at one site or two', () => {
    expect(check([keyed(a, 1, 'K1'), keyed(a, 2, 'K2'), entry(a, 3, 'plain')])).toEqual([]);
    expect(check([keyed(a, 1, 'K1'), keyed('site-b.1', 1, 'K1'), keyed(a, 2, 'K1')])).toEqual([
      { kind: 'idempotent-write-applied-twice', detail: `Idempotency-Key K1 was written 3 times: ${a}:1, site-b.1:1, ${a}:2` },
    ]);
  });
});
