// HTTP helpers for the real-process tests (the local cluster's sites over real sockets): a call
// that never throws (a refused connection or a timeout is status 0), item URLs, and polling.
import { realTimers } from '../../platform/real/real-env.js';

export interface Answer {
  /** 0 when no answer came (refused, reset, timed out) */
  status: number;
  /** the body when it is a JSON object, else {} */
  json: Record<string, unknown>;
  headers: Headers | undefined;
}

export async function call(method: string, url: string, body?: unknown, options: { timeoutMs?: number; headers?: Record<string, string> } = {}): Promise<Answer> {
  try {
    const res = await fetch(url, {
      method,
      headers: { ...options.headers, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      signal: AbortSignal.timeout(options.timeoutMs ?? 10_000),
    });
    const text = await res.text();
    return { status: res.status, json: text.startsWith('{') ? (JSON.parse(text) as Record<string, unknown>) : {}, headers: res.headers };
  } catch {
    return { status: 0, json: {}, headers: undefined };
  }
}

export const itemUrl = (base: string, table: string, key: string): string => `${base}/v1/tables/${table}/items/${encodeURIComponent(key)}`;

/** Polls `check` every `intervalMs` until it holds; throws naming `what` after `timeoutMs`. */
export async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs = 20_000, intervalMs = 50): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!(await check())) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await realTimers.sleep(intervalMs);
  }
}
