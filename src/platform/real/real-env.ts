// The real Env: Node's clocks, timers, crypto randomness, undici for the network, pino for logs.
import { performance } from 'node:perf_hooks';
import { randomInt } from 'node:crypto';
import { Agent, request as undiciRequest } from 'undici';
import pino from 'pino';
import type { Clock, Env, Logger, Random, Timers, Transport, TransportRequest, TransportResponse } from '../env.js';

export const realClock: Clock = {
  monotonicMs: () => performance.now(),
  wallMs: () => Date.now(),
};

export const realTimers: Timers = {
  after(ms, fn) {
    const t = setTimeout(fn, ms);
    return { cancel: () => clearTimeout(t) };
  },
  sleep(ms, signal) {
    return new Promise<void>((resolve, reject) => {
      if (signal?.aborted) return reject(signal.reason);
      const onAbort = () => {
        clearTimeout(t);
        reject(signal?.reason);
      };
      const t = setTimeout(() => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      }, ms);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  },
};

/** Runs `fn` on the next turn of the event loop, after pending I/O: where group commit gathers writes. */
export const realNextTurn = (fn: () => void): void => {
  setImmediate(fn);
};

export const realRandom: Random = {
  next: () => Math.random(),
  int: (maxExclusive) => randomInt(maxExclusive),
};

/**
 * A connection not set up within this fails as not sent (UND_ERR_CONNECT_TIMEOUT): a forward to an
 * owner cut off by a partition is then a 503, safe to retry, well before the forward timeout
 * (limits.forwardTimeoutMs, 6 s) would make it a 502 with an unknown outcome. Above a WAN round
 * trip plus one SYN retransmission; undici's default is 10 s.
 */
export const connectTimeoutMs = 2_500;

export function realTransport(options: { connectionsPerOrigin?: number } = {}): Transport & { close(): Promise<void> } {
  const agent = new Agent({ connections: options.connectionsPerOrigin ?? 16, keepAliveTimeout: 30_000, pipelining: 1, connect: { timeout: connectTimeoutMs } });
  return {
    async request(req: TransportRequest): Promise<TransportResponse> {
      const res = await undiciRequest(req.url, {
        method: req.method as 'GET',
        headers: req.headers,
        body: req.body === undefined ? undefined : Buffer.from(req.body.buffer, req.body.byteOffset, req.body.byteLength),
        signal: req.signal,
        dispatcher: agent,
        headersTimeout: 0,
        bodyTimeout: 0,
      });
      const headers: Record<string, string> = {};
      for (const [k, v] of Object.entries(res.headers)) {
        if (v !== undefined) headers[k] = Array.isArray(v) ? v.join(', ') : v;
      }
      return { status: res.statusCode, headers, body: res.body };
    },
    close: () => agent.close(),
  };
}

export function realLogger(bindings: object = {}, level = process.env.TANDEM_LOG_LEVEL ?? 'info'): Logger {
  return pino({ level, base: bindings }) as unknown as Logger;
}

/**
 * `wallClockSkewMs` shifts this process's wall clock (never its monotonic clock) by a constant: a
 * start-up fault for clock-skew drills (TANDEM_CLOCK_SKEW_MS of `tandem site`).
 */
export function realEnv(log: Logger = realLogger(), options: { wallClockSkewMs?: number } = {}): Env & { close(): Promise<void> } {
  const transport = realTransport();
  const skewMs = options.wallClockSkewMs ?? 0;
  const clock: Clock = skewMs === 0 ? realClock : { monotonicMs: realClock.monotonicMs, wallMs: () => Date.now() + skewMs };
  return { clock, timers: realTimers, random: realRandom, transport, log, close: () => transport.close() };
}
