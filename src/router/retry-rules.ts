// What the router may retry on another site (ARCHITECTURE.md, "Router"), as pure functions of the
// request and of what went wrong. GET, HEAD and OPTIONS always; PUT and DELETE without preconditions
// (an exact repeat is harmless); anything else only when nothing of it reached the upstream.
import type { UpstreamFailure } from '../platform/upstream-errors.js';

export { classifyUpstreamError, type UpstreamFailure } from '../platform/upstream-errors.js';

export type RetryClass = 'safe' | 'repeatable' | 'once';

/** Request headers that make a write conditional, so that repeating it could change its answer. */
const preconditionHeaders = ['if-match', 'if-none-match', 'if-unmodified-since'] as const;

export function retryClassOf(method: string, headers: Record<string, string | string[] | undefined>): RetryClass {
  switch (method) {
    case 'GET':
    case 'HEAD':
    case 'OPTIONS':
      return 'safe';
    case 'PUT':
    case 'DELETE':
      return preconditionHeaders.some((h) => headers[h] !== undefined) ? 'once' : 'repeatable';
    default:
      return 'once';
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
