// What the router may retry on another site (ARCHITECTURE.md, "Router"), as pure functions of the
// request and of what went wrong. GET, HEAD and OPTIONS always; PUT and DELETE without preconditions
// (an exact repeat is harmless); any write to an item of a `global` or `partitioned` table that
// carries an Idempotency-Key (every site forwards it to the one owner, which answers a repeat from
// its record of the key: applied once); anything else only when nothing of it reached the upstream.
// Not a keyed write to a `local` table: the other site may not have the first write's entry yet and
// would apply it again (README, "Idempotency-Key"). Nor a keyed batch: its tables are in its body.
import type { UpstreamFailure } from '../platform/upstream-errors.js';

export { classifyUpstreamError, type UpstreamFailure } from '../platform/upstream-errors.js';

export type RetryClass = 'safe' | 'repeatable' | 'once';

/** Request headers that make a write conditional, so that repeating it could change its answer. */
const preconditionHeaders = ['if-match', 'if-none-match', 'if-unmodified-since'] as const;

/**
 * `path` and `ownedTables` (the `global` and `partitioned` tables of the cluster config): a keyed
 * write to an item of one of them is repeatable whatever its method and preconditions.
 */
export function retryClassOf(
  method: string,
  headers: Record<string, string | string[] | undefined>,
  path = '',
  ownedTables: ReadonlySet<string> = new Set(),
): RetryClass {
  switch (method) {
    case 'GET':
    case 'HEAD':
    case 'OPTIONS':
      return 'safe';
    case 'PUT':
    case 'DELETE':
    case 'PATCH':
    case 'POST': {
      if (typeof headers['idempotency-key'] === 'string' && ownedTables.has(itemTableOf(path) ?? '')) return 'repeatable';
      if (method === 'PATCH' || method === 'POST') return 'once';
      return preconditionHeaders.some((h) => headers[h] !== undefined) ? 'once' : 'repeatable';
    }
    default:
      return 'once';
  }
}

/** The table of a data API item path (`/v1/tables/{table}/items/{key}`), or undefined. */
function itemTableOf(path: string): string | undefined {
  const m = /^\/v1\/tables\/([^/?]+)\/items\/[^/?]+(?:\?|$)/.exec(path);
  if (m === null) return undefined;
  try {
    return decodeURIComponent(m[1]!);
  } catch {
    return undefined;
  }
}

/** Upstream answers that send a retryable request elsewhere. 503: the site cannot take it now. */
export function isRetryableStatus(status: number): boolean {
  return status === 500 || status === 502 || status === 503 || status === 504;
}

/**
 * 503 problem types whose producers refuse a write before anything of it is written
 * (site/http-server.ts, site/site-node.ts, topology/, store/group-commit.ts; CONTRACT.md): the
 * owner is moving (`owner-changed`) or could not be reached with anything of the write
 * (`owner-unavailable`), too few data sites were heard from (`quorum-unavailable`), the site is
 * starting, not serving or shutting down, or its write queue is full. Not `store-failed` (a write
 * that may be committed but could not be made durable): its outcome is unknown.
 */
const nothingWrittenTypes: ReadonlySet<string> = new Set([
  'owner-changed',
  'owner-unavailable',
  'quorum-unavailable',
  'starting',
  'not-serving',
  'shutting-down',
  'overloaded',
]);

/** Whether an answer says that nothing of the request was written (so any write may be sent again). */
export function isNothingWritten(status: number, problemType: string | undefined): boolean {
  return status === 503 && problemType !== undefined && nothingWrittenTypes.has(problemType);
}

/** Whether the answer's problem type decides a retry: only then is the (bounded) body worth reading. */
export function needsProblemType(retryClass: RetryClass, status: number): boolean {
  // 504 for attribution (site-health): durability-timeout is a healthy owner's answer
  return (retryClass === 'once' && status === 503) || status === 504;
}

/** Whether a request of this class may be sent again after an attempt failed this way. */
export function mayRetryAfter(retryClass: RetryClass, failure: UpstreamFailure | 'status'): boolean {
  if (retryClass === 'safe' || retryClass === 'repeatable') return true;
  return failure === 'not-sent';
}

/**
 * Whether a request of this class may be sent again after a site answered it so. Safe and
 * repeatable requests: after any 500/502/503/504. Any other write: only after a 503 whose problem
 * type says nothing was written — never after an ambiguous 503 (`store-failed`, no body), a 504
 * (`durability-timeout`: written, not confirmed) or a 502 `Tandem-Outcome: unknown`.
 */
export function mayRetryAnswer(retryClass: RetryClass, status: number, problemType: string | undefined): boolean {
  if (!isRetryableStatus(status)) return false;
  if (retryClass === 'safe' || retryClass === 'repeatable') return true;
  return isNothingWritten(status, problemType);
}

/** The HTTP-date form senders use (RFC 9110 §5.6.7): `Sun, 06 Nov 1994 08:49:37 GMT`. */
const imfFixdate = /^[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT$/;

/**
 * How long a Retry-After header asks to wait, in ms (delta-seconds or an HTTP-date), or undefined
 * when absent or unreadable.
 */
export function retryAfterMs(value: string | string[] | undefined, nowWallMs: number): number | undefined {
  if (typeof value !== 'string') return undefined;
  const v = value.trim();
  if (/^\d{1,9}$/.test(v)) return Number(v) * 1000;
  if (!imfFixdate.test(v)) return undefined;
  const at = Date.parse(v);
  return Number.isNaN(at) ? undefined : Math.max(0, at - nowWallMs);
}
