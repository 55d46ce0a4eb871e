// Closed-loop HTTP load generator shared by the benchmarks: `connections` keep-alive connections
// (one undici Pool, pipelining 1), each sending its next request as soon as the last one has been
// answered. A warm-up runs first and is not counted; then requests completing within the measured
// window are counted and their latencies recorded (µs) in an HDR histogram. Bounded in time: no
// request starts after the window ends, and each request has its own timeout.
import * as hdr from 'hdr-histogram-js';
import { Pool, type Dispatcher } from 'undici';
import { assert } from '../platform/assert.js';
import { realClock } from '../platform/real/real-env.js';

export interface LoadRequest {
  method: Dispatcher.HttpMethod;
  /** path and query, e.g. `/v1/tables/profiles/items/bench-3-17` */
  path: string;
  headers?: Record<string, string>;
  body?: string | Buffer;
}

export interface LoadOptions {
  /** origin of the target, e.g. `http://127.0.0.1:7101` */
  url: string;
  connections: number;
  warmupS: number;
  durationS: number;
  /** builds the `n`-th request (0-based, warm-up included) of connection `connection` */
  request: (connection: number, n: number) => LoadRequest;
  /** a request not answered within this long counts as an error */
  requestTimeoutMs?: number;
  /** called once when warm-up ends and the measured window begins */
  onMeasureStart?: () => void;
  /**
   * Latencies go into this histogram (newLatencyHistogram), which the caller owns and may pass to
   * several runs to pool them; the result's percentiles are then over all it holds.
   */
  histogram?: hdr.Histogram;
}

export interface LoadResult {
  /** requests answered within the measured window, any status */
  requests: number;
  /** transport failures and timeouts within the window */
  errors: number;
  /** answers with a status outside 2xx within the window */
  non2xx: number;
  seconds: number;
  /** successful (2xx) requests per second */
  rps: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  maxMs: number;
}

/**
 * One request on the pool, answered with its status once the response has ended. A bare dispatch
 * handler that drops the body: `pool.request` would build a stream per response and cost the
 * client as much CPU as a small server spends on the request.
 */
function send(pool: Pool, req: LoadRequest): Promise<number> {
  return new Promise((resolve, reject) => {
    let status = 0;
    pool.dispatch(
      {
        method: req.method,
        path: req.path,
        ...(req.headers ? { headers: req.headers } : {}),
        ...(req.body !== undefined ? { body: req.body } : {}),
      },
      {
        // undici takes a handler as the new-style API only when it has onRequestStart
        onRequestStart: () => undefined,
        onResponseStart: (_controller, statusCode) => {
          status = statusCode;
        },
        onResponseEnd: () => resolve(status),
        onResponseError: (_controller, error) => reject(error),
      },
    );
  });
}

export const loadConnectionsMax = 4096;
export const loadDurationSMax = 600;
const latencyUsMax = 60_000_000;

export async function runLoad(options: LoadOptions): Promise<LoadResult> {
  const { connections, warmupS, durationS } = options;
  assert(Number.isInteger(connections) && connections >= 1 && connections <= loadConnectionsMax, `connections must be 1..${loadConnectionsMax}`);
  assert(durationS > 0 && durationS <= loadDurationSMax, `durationS must be in (0, ${loadDurationSMax}]`);
  assert(warmupS >= 0 && warmupS <= loadDurationSMax, `warmupS must be in [0, ${loadDurationSMax}]`);
  const requestTimeoutMs = options.requestTimeoutMs ?? 10_000;
  const pool = new Pool(new URL(options.url).origin, {
    connections,
    pipelining: 1,
    keepAliveTimeout: 60_000,
    headersTimeout: requestTimeoutMs,
    bodyTimeout: requestTimeoutMs,
  });
  const histogram = options.histogram ?? newLatencyHistogram();
  let requests = 0;
  let errors = 0;
  let non2xx = 0;
  const started = realClock.monotonicMs();
  const measureFromMs = started + warmupS * 1000;
  const measureToMs = measureFromMs + durationS * 1000;
  let measuring = false;

  const worker = async (connection: number): Promise<void> => {
    for (let n = 0; ; n++) {
      const t0 = realClock.monotonicMs();
      if (t0 >= measureToMs) return;
      if (!measuring && t0 >= measureFromMs) {
        measuring = true;
        options.onMeasureStart?.();
      }
      const req = options.request(connection, n);
      // status 0: a transport failure or timeout, counted as an error below
      const status = await send(pool, req).catch(() => 0);
      const t1 = realClock.monotonicMs();
      if (t1 < measureFromMs || t1 >= measureToMs) continue;
      requests += 1;
      if (status === 0) errors += 1;
      else if (status < 200 || status > 299) non2xx += 1;
      histogram.recordValue(Math.min(latencyUsMax, Math.max(1, Math.round((t1 - t0) * 1000))));
    }
  };

  try {
    await Promise.all(Array.from({ length: connections }, (_, i) => worker(i)));
  } finally {
    await pool.close();
  }
  const result: LoadResult = {
    requests,
    errors,
    non2xx,
    seconds: durationS,
    rps: (requests - errors - non2xx) / durationS,
    ...latencyMs(histogram),
  };
  if (options.histogram === undefined) histogram.destroy();
  return result;
}

/** A histogram of request latencies in µs, as runLoad records them; destroy() it when done. */
export function newLatencyHistogram(): hdr.Histogram {
  return hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: latencyUsMax, numberOfSignificantValueDigits: 3, autoResize: false });
}

export function latencyMs(histogram: hdr.Histogram): Pick<LoadResult, 'p50Ms' | 'p90Ms' | 'p99Ms' | 'maxMs'> {
  const ms = (percentile: number) => histogram.getValueAtPercentile(percentile) / 1000;
  return { p50Ms: ms(50), p90Ms: ms(90), p99Ms: ms(99), maxMs: histogram.maxValue / 1000 };
}
