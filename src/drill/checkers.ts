// The drill's checkers, run on a recorded history and the sites' final states once they converged
// (ARCHITECTURE.md, "Drills"). Each one is shown to catch what it looks for by a test that feeds it
// a bad history.
// - Lost writes, independent of conflict policy: an acknowledged write is lost iff no survivor's
//   converged item context or GC floor covers its dot, or a compensating write names it (a conflict
//   record with reason `voided`: a voided quorum write is a loss, not "in the feed").
// - Counters: acked + Σ negative unknowns ≤ value ≤ acked + Σ positive unknowns.
// - Sessions: a session read shows the session's last acknowledged write of that key, or a later one
//   (or one of its writes of unknown outcome, which may take effect at any time after it was sent).
// - Divergence: after convergence every site has the same vector and digests.
// - List-append linearizability (Elle-style, O(n log n)): every read a prefix of one list, each
//   acknowledged append in it exactly once, each read holding every append acknowledged before it
//   began, appends in real-time order.
import { covers, type VersionVector } from '../core/vector.js';
import type { TableConfig } from '../config/schema.js';
import { isWrite, type OpRecord } from './op-history.js';

export interface Anomaly {
  kind: 'lost-write' | 'counter-out-of-bounds' | 'session-violation' | 'divergence' | 'not-linearizable';
  detail: string;
}

export interface FinalItem {
  context: VersionVector;
  live: boolean;
  value: Record<string, unknown> | undefined;
}

/** What one surviving site holds once the cluster converged. */
export interface SiteFinal {
  site: string;
  gcFloor: VersionVector;
  /** `table\u0000key` → item */
  items: Map<string, FinalItem>;
}

export interface ConflictRecord {
  site: string;
  table: string;
  key: string;
  reason: string;
  loserDot: string;
}

export const itemRef = (table: string, key: string): string => `${table}\u0000${key}`;

export interface LostWrite {
  id: number;
  table: string;
  key: string;
  dot: string;
  durability: 'local' | 'quorum' | 'all';
  writeId: string | undefined;
  intendedMs: number;
  why: 'not covered' | 'voided';
}

export function durabilityOf(r: OpRecord, tables: Record<string, TableConfig>): 'local' | 'quorum' | 'all' {
  return r.durability ?? tables[r.table]?.durability ?? 'local';
}

export function findLostWrites(history: OpRecord[], survivors: SiteFinal[], conflicts: ConflictRecord[], tables: Record<string, TableConfig>): LostWrite[] {
  const voided = new Set(conflicts.filter((c) => c.reason === 'voided').map((c) => c.loserDot));
  const lost: LostWrite[] = [];
  for (const r of history) {
    if (!isWrite(r.op) || r.outcome !== 'ok' || r.dot === undefined) continue;
    const ref = itemRef(r.table, r.key);
    const dot = r.dot;
    const covered = survivors.some((s) => covers(s.items.get(ref)?.context ?? {}, dot) || covers(s.gcFloor, dot));
    if (covered && !voided.has(dot)) continue;
    lost.push({ id: r.id, table: r.table, key: r.key, dot, durability: durabilityOf(r, tables), writeId: r.writeId, intendedMs: r.intendedMs, why: covered ? 'voided' : 'not covered' });
  }
  return lost;
}

export function lostWriteAnomalies(lost: LostWrite[]): Anomaly[] {
  return lost.map((l) => ({
    kind: 'lost-write' as const,
    detail: `acknowledged ${l.durability} write ${l.writeId ?? `#${l.id}`} of ${l.table}/${l.key} (${l.dot}, intended at ${Math.round(l.intendedMs)} ms) is lost: ${l.why === 'voided' ? 'a compensating write voided it' : 'no survivor\'s item context or GC floor covers its dot'}`,
  }));
}

/** Counter bounds: every counter key of every crdt table the history incremented. */
export function checkCounters(history: OpRecord[], final: (table: string, key: string) => FinalItem | undefined): Anomaly[] {
  const sums = new Map<string, { table: string; key: string; field: string; acked: number; up: number; down: number }>();
  for (const r of history) {
    if (r.op !== 'patch' || r.patch !== 'increment' || r.amount === undefined || r.outcome === 'failed') continue;
    const field = r.field;
    if (field === undefined) continue;
    const k = `${itemRef(r.table, r.key)}\u0000${field}`;
    const s = sums.get(k) ?? { table: r.table, key: r.key, field, acked: 0, up: 0, down: 0 };
    if (r.outcome === 'ok') s.acked += r.amount;
    else if (r.amount > 0) s.up += r.amount;
    else s.down += r.amount;
    sums.set(k, s);
  }
  const out: Anomaly[] = [];
  for (const s of sums.values()) {
    const item = final(s.table, s.key);
    const raw = item?.live ? item.value?.[s.field] : undefined;
    const value = typeof raw === 'number' ? raw : 0;
    const lo = s.acked + s.down;
    const hi = s.acked + s.up;
    if (value < lo || value > hi)
      out.push({
        kind: 'counter-out-of-bounds',
        detail: `${s.table}/${s.key}.${s.field} = ${value}, outside [${lo}, ${hi}] (acknowledged ${s.acked}, unknown +${s.up}/${s.down})${value > hi ? ': an increment counted twice (a retry?)' : ': an acknowledged increment is missing'}`,
      });
  }
  return out;
}

/** Read-your-writes and monotonic reads of each closed-loop session client, per key. */
export function checkSessions(history: OpRecord[]): Anomaly[] {
  const byClient = new Map<string, OpRecord[]>();
  for (const r of history) if (r.session) byClient.set(r.client, [...(byClient.get(r.client) ?? []), r]);
  const out: Anomaly[] = [];
  for (const [client, ops] of byClient) {
    ops.sort((a, b) => a.sentMs - b.sentMs);
    // per key: the session's writes in order, and the index of the last acknowledged one
    const writes = new Map<string, OpRecord[]>();
    const lastAcked = new Map<string, number>();
    for (const r of ops) {
      if (isWrite(r.op)) {
        const list = writes.get(r.key) ?? [];
        list.push(r);
        writes.set(r.key, list);
        if (r.outcome === 'ok') lastAcked.set(r.key, list.length - 1);
        continue;
      }
      if (r.op !== 'get' || r.outcome !== 'ok' || r.read === undefined) continue;
      const floor = lastAcked.get(r.key);
      if (floor === undefined) continue;
      // from the last acknowledged write on, any write not refused; before it, a write whose outcome
      // is unknown too: it may take effect at any time after it was sent (a request held by a paused
      // site and run when it resumes is later than the acknowledged one, not older)
      const allowed = (writes.get(r.key) ?? [])
        .filter((w, i) => (i >= floor ? w.outcome !== 'failed' : w.outcome === 'unknown'))
        .map((w) => w.writeId);
      if (!r.read.found || !allowed.includes(r.read.writeId))
        out.push({
          kind: 'session-violation',
          detail: `${client}: session read of ${r.table}/${r.key} at ${r.site ?? r.via} (${Math.round(r.sentMs)} ms) returned ${r.read.found ? r.read.writeId : 'nothing'}, but the session had written ${writes.get(r.key)![floor]!.writeId} (acknowledged)`,
        });
    }
  }
  return out;
}

export interface SiteStatus {
  site: string;
  vector: VersionVector;
  digests: Record<string, string>;
}

export function checkDivergence(statuses: SiteStatus[]): Anomaly[] {
  const [first, ...rest] = statuses;
  if (first === undefined) return [];
  const out: Anomaly[] = [];
  const canon = (v: Record<string, unknown>) => JSON.stringify(Object.entries(v).sort(([a], [b]) => (a < b ? -1 : 1)));
  for (const s of rest) {
    if (canon(s.vector) !== canon(first.vector)) out.push({ kind: 'divergence', detail: `${s.site} and ${first.site} hold different vectors after convergence` });
    const tables = new Set([...Object.keys(first.digests), ...Object.keys(s.digests)]);
    for (const t of [...tables].sort())
      if (first.digests[t] !== s.digests[t]) out.push({ kind: 'divergence', detail: `table ${t}: ${s.site} digest ${s.digests[t] ?? 'none'} ≠ ${first.site} digest ${first.digests[t] ?? 'none'}` });
  }
  return out;
}

/**
 * List-append linearizability per key. `final` is the converged list of each key (from a survivor).
 * Appends are writes carrying `element`; reads carry `read.items`.
 */
export function checkListAppend(history: OpRecord[], final: (table: string, key: string) => string[] | undefined): Anomaly[] {
  const byKey = new Map<string, OpRecord[]>();
  for (const r of history) {
    if (!r.client.startsWith('list-')) continue;
    const k = itemRef(r.table, r.key);
    byKey.set(k, [...(byKey.get(k) ?? []), r]);
  }
  const out: Anomaly[] = [];
  for (const [k, ops] of byKey) {
    const [table, key] = k.split('\u0000') as [string, string];
    const name = `${table}/${key}`;
    const reads = ops.filter((r) => r.op === 'get' && r.outcome === 'ok' && r.read?.items !== undefined);
    const appends = ops.filter((r) => r.element !== undefined);
    const lists = [...reads.map((r) => r.read!.items!), final(table, key) ?? []];
    const longest = lists.reduce((a, b) => (b.length > a.length ? b : a), []);
    const position = new Map<string, number>();
    longest.forEach((e, i) => {
      if (position.has(e)) out.push({ kind: 'not-linearizable', detail: `${name}: element ${e} appears twice (a duplicated append)` });
      else position.set(e, i);
    });
    for (const [i, list] of lists.entries()) {
      const bad = list.findIndex((e, j) => longest[j] !== e);
      if (bad >= 0) {
        const what = i < reads.length ? `read at ${Math.round(reads[i]!.sentMs)} ms` : 'the final list';
        out.push({ kind: 'not-linearizable', detail: `${name}: ${what} [${list.join(',')}] is not a prefix of [${longest.join(',')}] (differs at ${bad})` });
      }
    }
    const finalList = final(table, key) ?? [];
    const finalSet = new Set(finalList);
    for (const a of appends) {
      if (a.outcome === 'ok' && !finalSet.has(a.element!)) out.push({ kind: 'not-linearizable', detail: `${name}: acknowledged append ${a.element} is not in the final list` });
      if (a.outcome === 'failed' && position.has(a.element!)) out.push({ kind: 'not-linearizable', detail: `${name}: failed append ${a.element} appears in the list` });
    }
    // acknowledged appends by end time, with the running max of their positions
    const acked = appends.filter((a) => a.outcome === 'ok' && position.has(a.element!)).sort((a, b) => a.endMs - b.endMs);
    const prefixMax: number[] = [];
    acked.forEach((a, i) => prefixMax.push(Math.max(i > 0 ? prefixMax[i - 1]! : -1, position.get(a.element!)!)));
    const endedBefore = (t: number): number => {
      let lo = 0;
      let hi = acked.length;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (acked[mid]!.endMs < t) lo = mid + 1;
        else hi = mid;
      }
      return lo; // how many appends ended before t
    };
    for (const r of reads) {
      const n = endedBefore(r.sentMs);
      if (n > 0 && prefixMax[n - 1]! >= r.read!.items!.length)
        out.push({ kind: 'not-linearizable', detail: `${name}: read at ${Math.round(r.sentMs)} ms misses an append acknowledged before it began (it holds ${r.read!.items!.length} elements)` });
    }
    for (const b of appends) {
      const pos = position.get(b.element!);
      if (pos === undefined) continue;
      const n = endedBefore(b.sentMs);
      if (n > 0 && prefixMax[n - 1]! > pos)
        out.push({ kind: 'not-linearizable', detail: `${name}: append ${b.element} sits before an append acknowledged before it began` });
    }
  }
  return out;
}
