// What the router may retry on another site (ARCHITECTURE.md, "Router"), as pure functions of the
// request and of what went wrong. GET, HEAD and OPTIONS always; PUT and DELETE without preconditions
// (an exact repeat is harmless); anything else only when nothing of it reached the upstream.

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

export type UpstreamFailure = 'not-sent' | 'timeout' | 'broken';

const notSentCodes = new Set([
  'ECONNREFUSED',
  'UND_ERR_CONNECT_TIMEOUT',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EADDRNOTAVAIL',
  'UND_ERR_CLOSED',
  'UND_ERR_DESTROYED',
]);
const timeoutCodes = new Set(['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT']);

function errorCode(err: unknown): string | undefined {
  if (typeof err !== 'object' || err === null) return undefined;
  const e = err as { code?: unknown; cause?: unknown; errors?: unknown[] };
  if (typeof e.code === 'string') return e.code;
  if (Array.isArray(e.errors) && e.errors.length > 0) return errorCode(e.errors[0]);
  if (e.cause !== undefined && e.cause !== err) return errorCode(e.cause);
  return undefined;
}

/** Whether a failed attempt may have reached the upstream (`not-sent`: certainly not). */
export function classifyUpstreamError(err: unknown): UpstreamFailure {
  const code = errorCode(err);
  if (code !== undefined && notSentCodes.has(code)) return 'not-sent';
  if (code !== undefined && timeoutCodes.has(code)) return 'timeout';
  return 'broken';
}

/** Whether a request of this class may be sent again after an attempt failed this way. */
export function mayRetryAfter(retryClass: RetryClass, failure: UpstreamFailure | 'status'): boolean {
  if (retryClass === 'safe' || retryClass === 'repeatable') return true;
  return failure === 'not-sent';
}
