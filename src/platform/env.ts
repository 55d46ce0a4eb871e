// The one door through which every source of non-determinism enters Tandem: clocks, timers,
// randomness, the network, logging. `platform/real/` wraps Node; `platform/sim/` is a deterministic
// in-process world with simulated time and a simulated network. Domain code receives an `Env` and
// never touches Date.now, setTimeout, Math.random or sockets itself.

export interface Clock {
  /** Milliseconds from an arbitrary origin; never goes backwards. Use for durations, leases, timeouts. */
  monotonicMs(): number;
  /** Wall-clock milliseconds since the Unix epoch; may jump either way. Use only for HLC and reports. */
  wallMs(): number;
}

export interface TimerHandle {
  cancel(): void;
}

export interface Timers {
  /** Calls `fn` once after `ms` milliseconds (of this Env's clock). */
  after(ms: number, fn: () => void): TimerHandle;
  /** Resolves after `ms`; rejects with the signal's reason if it aborts first. */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

export interface Random {
  /** Uniform in [0, 1). */
  next(): number;
  /** Uniform integer in [0, maxExclusive). */
  int(maxExclusive: number): number;
}

export type Headers = Record<string, string>;

export interface TransportRequest {
  method: string;
  /** Absolute URL: `http://host:port/path?query`. */
  url: string;
  headers: Headers;
  body?: Uint8Array;
  signal?: AbortSignal;
}

export interface TransportResponse {
  status: number;
  headers: Headers;
  /** The body as it arrives, chunk by chunk (a long-lived stream for replication feeds). */
  body: AsyncIterable<Uint8Array>;
}

/** A server-side handler, the same function behind a real HTTP route and a simulated address. */
export interface IncomingRequest {
  method: string;
  /** Path and query, e.g. `/v1/peer/feed?from=...`. */
  path: string;
  headers: Headers;
  body: Uint8Array;
  /** Aborted when the caller goes away (connection closed, partition, crash). */
  signal: AbortSignal;
}
export type RequestHandler = (req: IncomingRequest) => Promise<TransportResponse>;

/** The client side of the network: how one component calls another. */
export interface Transport {
  request(req: TransportRequest): Promise<TransportResponse>;
}

export interface Logger {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
  child(bindings: object): Logger;
}

export interface Env {
  clock: Clock;
  timers: Timers;
  random: Random;
  transport: Transport;
  log: Logger;
}

/** Reads a whole response body (bounded): for small request/response exchanges. */
export async function readBody(body: AsyncIterable<Uint8Array>, bytesMax: number): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  let total = 0;
  for await (const chunk of body) {
    total += chunk.byteLength;
    if (total > bytesMax) throw new RangeError(`response body exceeds ${bytesMax} bytes`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

export async function* singleChunk(bytes: Uint8Array): AsyncIterable<Uint8Array> {
  if (bytes.byteLength > 0) yield bytes;
}

export const silentLogger: Logger = {
  debug() {},
  info() {},
  warn() {},
  error() {},
  child() {
    return silentLogger;
  },
};
