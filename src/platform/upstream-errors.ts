// Whether a failed request may have reached the server it was sent to, from its error code. The
// router (retries on another site) and the site node (forwards to an owner) both decide by it: a
// write that may have been sent has an unknown outcome and must not be repeated or called failed.

export type UpstreamFailure = 'not-sent' | 'timeout' | 'broken';

/**
 * Codes that prove nothing of the request left this process. Not UND_ERR_CLOSED nor
 * UND_ERR_DESTROYED: undici raises them for a client or socket closed at any point, also after
 * the request was written.
 */
const notSentCodes = new Set(['ECONNREFUSED', 'UND_ERR_CONNECT_TIMEOUT', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'EADDRNOTAVAIL']);
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
