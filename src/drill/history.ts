// The operation history of a workload (invoke, ok, fail, unknown) and the checks run on it after
// the cluster converges: acknowledged writes not lost (present, in a conflict feed, or superseded
// by a causally later write), counters within their acknowledged bounds, no resurrected deletes.
import { covers, type Dot } from '../core/vector.js';
import type { ItemState } from '../core/item.js';
import type { LogEntry } from '../store/types.js';

export type OpStatus = 'pending' | 'ok' | 'fail';

export interface HistoryOp {
  id: number;
  site: string;
  table: string;
  key: string;
  kind: 'put' | 'delete' | 'increment' | 'patch';
  /** increment amount */
  amount?: number;
  status: OpStatus;
  dot?: Dot;
  invokedAtMs: number;
  completedAtMs?: number;
}

export class History {
  readonly ops: HistoryOp[] = [];

  invoke(op: Omit<HistoryOp, 'id' | 'status'>): HistoryOp {
    const full: HistoryOp = { ...op, id: this.ops.length, status: 'pending' };
    this.ops.push(full);
    return full;
  }
}

export interface FinalItem {
  table: string;
  key: string;
  state: ItemState | undefined;
  live: boolean;
  value: unknown;
}

export interface CheckInput {
  history: History;
  /** every log entry of the converged cluster (any one site's log: all sites hold all entries) */
  log: LogEntry[];
  /** final item per table/key, from any one site */
  items: Map<string, FinalItem>;
  /** loser dots from the conflict feeds of every site */
  conflictLosers: Set<Dot>;
  /** which table is lww, which keys are counter-only */
  lwwTables: Set<string>;
  counterField: (table: string) => string | undefined;
}

export interface Anomaly {
  kind: 'lost-write' | 'counter-out-of-bounds' | 'resurrected' | 'unlogged-ack';
  detail: string;
}

const ref = (t: string, k: string) => `${t}\u0000${k}`;

export function checkHistory(input: CheckInput): Anomaly[] {
  const anomalies: Anomaly[] = [];
  const entryStates = new Map<Dot, Map<string, ItemState>>();
  for (const e of input.log) {
    const m = new Map<string, ItemState>();
    for (const i of e.items) m.set(ref(i.table, i.key), i.state);
    entryStates.set(`${e.origin}:${e.seq}`, m);
  }
  const writesByItem = new Map<string, Dot[]>();
  for (const [dot, items] of entryStates)
    for (const r of items.keys()) writesByItem.set(r, [...(writesByItem.get(r) ?? []), dot]);

  for (const op of input.history.ops) {
    if (op.status !== 'ok' || op.dot === undefined || op.dot.endsWith(':0')) continue;
    const r = ref(op.table, op.key);
    const own = entryStates.get(op.dot)?.get(r);
    if (!own) {
      anomalies.push({ kind: 'unlogged-ack', detail: `op ${op.id} ${op.kind} ${op.table}/${op.key} acked as ${op.dot} but no site logged it` });
      continue;
    }
    if (!input.lwwTables.has(op.table)) continue;
    const final = input.items.get(r);
    const winner = final?.state?.r['']?.[0]?.d;
    if (winner === op.dot) continue;
    // a delete that lost to a concurrent delete left the same content: not a conflict, not lost
    if (op.kind === 'delete' && (final === undefined || !final.live)) continue;
    if (input.conflictLosers.has(op.dot)) continue;
    const superseded = (writesByItem.get(r) ?? []).some((d) => d !== op.dot && covers(entryStates.get(d)!.get(r)!.c, op.dot!));
    if (!superseded)
      anomalies.push({ kind: 'lost-write', detail: `op ${op.id} ${op.kind} ${op.table}/${op.key} ${op.dot}: not final (winner ${winner}), not in a conflict feed, not superseded` });
    if (op.kind === 'delete' && final?.live && winner !== undefined && covers(own.c, winner))
      anomalies.push({ kind: 'resurrected', detail: `${op.table}/${op.key}: ${winner} was seen by delete ${op.dot} yet is live` });
  }

  const counters = new Map<string, { acked: number; unknown: number }>();
  for (const op of input.history.ops) {
    if (op.kind !== 'increment') continue;
    const r = ref(op.table, op.key);
    const c = counters.get(r) ?? { acked: 0, unknown: 0 };
    if (op.status === 'ok') c.acked += op.amount!;
    else if (op.status === 'pending') c.unknown += op.amount!;
    counters.set(r, c);
  }
  for (const [r, c] of counters) {
    const final = input.items.get(r);
    const [table] = r.split('\u0000') as [string];
    const field = input.counterField(table)!;
    const value = ((final?.value as Record<string, number> | undefined)?.[field] ?? 0) as number;
    const lo = Math.min(c.acked, c.acked + c.unknown);
    const hi = Math.max(c.acked, c.acked + c.unknown);
    if (value < lo || value > hi)
      anomalies.push({ kind: 'counter-out-of-bounds', detail: `${r.replace('\u0000', '/')}: ${value} not within [${lo}, ${hi}]` });
  }
  return anomalies;
}
