// The drill's operation history: one JSON line per operation, written by the load generator as each
// completes, with the design's outcome table applied (ARCHITECTURE.md, "Drills"): ok; failed (4xx,
// owner-changed, quorum-unavailable, store-full, shed: nothing was written); unknown (store-failed,
// durability-timeout, 502 Tandem-Outcome: unknown, timeouts, a connection lost after sending: the
// write may have happened). Times are ms since the drill's zero on process.hrtime (CLOCK_MONOTONIC,
// one clock for every process of the machine).
import { readFileSync } from 'node:fs';

export type Outcome = 'ok' | 'failed' | 'unknown';
export type OpKind = 'get' | 'scan' | 'put' | 'patch' | 'delete';

export interface OpRecord {
  id: number;
  /** `open` (the open-loop generator), `session-N`, `list-N` (closed-loop clients) */
  client: string;
  op: OpKind;
  table: string;
  key: string;
  /** `router`, or the id of the site the operation was pinned to */
  via: string;
  consistency: 'eventual' | 'session' | 'strong';
  durability?: 'local' | 'quorum' | 'all';
  /** every write carries a unique write id in its value */
  writeId?: string;
  /** patch kinds: `increment` (amount), `add` (set element = writeId), `set` (register field) */
  patch?: 'increment' | 'add' | 'set';
  /** the patched field (counter, set or register) */
  field?: string;
  amount?: number;
  /** list-append: the element appended */
  element?: string;
  intendedMs: number;
  sentMs: number;
  endMs: number;
  outcome: Outcome;
  status?: number;
  /** problem type (last path segment), or an error code */
  reason?: string;
  /** Tandem-Site of the answer */
  site?: string;
  dot?: string;
  version?: string;
  /** reads: the write id(s) of what was read; list reads: the elements; scans: item count */
  read?: { found: boolean; writeId?: string; items?: string[]; count?: number };
  /** session token sent (closed-loop session clients) */
  session?: boolean;
}

/** A problem `type` URL to its last segment: `https://tandem.dev/problems/owner-changed` → `owner-changed`. */
export function problemName(type: unknown): string | undefined {
  if (typeof type !== 'string') return undefined;
  const i = type.lastIndexOf('/');
  return i >= 0 ? type.slice(i + 1) : type;
}

const writeOps = new Set<OpKind>(['put', 'patch', 'delete']);
export const isWrite = (op: OpKind): boolean => writeOps.has(op);

/**
 * The outcome of an answered request (the design's outcome table). Reads have no effect, so any
 * answer but a success is a failure; a GET's 404 is a successful read of nothing.
 */
export function outcomeOf(op: OpKind, status: number, problem: string | undefined, outcomeHeader: string | undefined): Outcome {
  if (status >= 200 && status < 300) return 'ok';
  if (!isWrite(op)) return op === 'get' && status === 404 ? 'ok' : status === 304 ? 'ok' : 'failed';
  if (outcomeHeader === 'unknown') return 'unknown';
  if (status >= 400 && status < 500) return 'failed';
  if (status === 503) return problem === 'store-failed' ? 'unknown' : 'failed';
  // 504 durability-timeout, a 502 or 500 from anywhere on the path: the write may have happened
  return 'unknown';
}

/** An error before any answer: nothing was sent when the connection was refused; otherwise (a timeout, a reset) unknown. */
export function outcomeOfError(code: string | undefined): Outcome {
  return code === 'ECONNREFUSED' ? 'failed' : 'unknown';
}

export function readHistory(path: string): OpRecord[] {
  const text = readFileSync(path, 'utf8');
  const out: OpRecord[] = [];
  let line = 0;
  for (const raw of text.split('\n')) {
    line++;
    if (raw.trim() === '') continue;
    try {
      out.push(JSON.parse(raw) as OpRecord);
    } catch {
      throw new Error(`${path}:${line}: not a JSON history record`);
    }
  }
  return out;
}
