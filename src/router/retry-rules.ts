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

/** Upstream answers that count against a site's passive health. Never 503 (owner failover). */
export function isPassiveFailureStatus(status: number): boolean {
  return status === 500 || status === 502 || status === 504;
}

/** Whether a request of this class may be sent again after an attempt failed this way. */
export function mayRetryAfter(retryClass: RetryClass, failure: UpstreamFailure | 'status'): boolean {
  if (retryClass === 'safe' || retryClass === 'repeatable') return true;
  return failure === 'not-sent';
}
