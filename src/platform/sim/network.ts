// The simulated network: nodes listen on HTTP origins, other nodes call them through a `Transport`,
// and every message crosses the network as a scheduled sim event with a seeded delay and seeded
// faults. Same seed, same knobs, same calls: same deliveries, drops and resets, at the same sim times.
//
// Model. Each `request()` is one TCP-like connection, opened by the caller (the initiator) to the
// node listening on the URL's origin. It carries: the request (caller → callee), then the response
// head and each body chunk (callee → caller), each with its own one-way delay; a callee → caller
// message never arrives before the one sent ahead of it, so a stream never reorders.
//
// Sites. Partitions and link delays work on sites. A node id names its site before the first '/':
// 'us-east', 'us-east/app' and 'us-east/node' are all in site 'us-east'; nodes of one site are
// never cut from each other.
//
// Faults (each decided with the network's seeded random stream):
// - delay: `oneWayDelayMsMean` (or `setLinkDelay(a, b)` for a pair of sites) ± `oneWayDelayMsJitter`;
// - `dropProbability`: per message; a lost message resets the connection when it would have
//   arrived: request() rejects (or the body iterator throws) with ECONNRESET, the server's signal
//   aborts. A lost request never reaches the handler; a lost response was handled (outcome unknown);
// - `duplicateProbability`: the request reaches the handler a second time, up to
//   `reorderDelayMsMax` later; the caller sees only the first delivery's response;
// - `reorderProbability`: a request is held back up to `reorderDelayMsMax`, so independent
//   requests overtake each other;
// - cuts: `partition()` and `cutLink(from, to)` cut connections *initiated* from one site to
//   another, the way a link fault proxy does: after `cutLink('a', 'b')`, 'a' cannot reach 'b'
//   while 'b' still reaches 'a' (and gets its responses). A new connection across a cut fails with
//   UND_ERR_CONNECT_TIMEOUT (as undici's, nothing sent) after `connectTimeoutMs`; installing a cut resets every open connection across it at
//   once (a long-lived feed's body iterator throws ECONNRESET, its server signal aborts). `heal()`
//   removes every cut; connections that failed stay failed;
// - `crash(node)`: stops its listeners and resets every connection to or from it;
// - an origin nobody listens on refuses after a round trip (ECONNREFUSED);
// - the request's `signal` aborting closes the connection on both sides at once.
//
// Flow control: a response body keeps at most `streamWindowChunks` chunks sent but not yet read by
// the caller; the server's body iterator is not pulled further until the caller reads.
import type {
  Headers,
  IncomingRequest,
  Logger,
  RequestHandler,
  TimerHandle,
  Transport,
  TransportRequest,
  TransportResponse,
} from '../env.js';
import { singleChunk } from '../env.js';
import { assert, unreachable } from '../assert.js';
import type { SeededRandom } from './random.js';
import { SimResponseBody } from './response-body.js';

export interface SimNetworkOptions {
  oneWayDelayMsMean: number;
  /** Each message's delay is uniform in mean ± jitter (never below 0). */
  oneWayDelayMsJitter: number;
  /** Probability that one message (request, response head, body chunk) is lost. */
  dropProbability: number;
  /** Probability that a request is delivered to its handler twice. */
  duplicateProbability: number;
  /** Probability that a request is held back by up to `reorderDelayMsMax`. */
  reorderProbability: number;
  /** Most extra delay of a reordered request or of a duplicate. */
  reorderDelayMsMax: number;
  /** How long a connection attempt across a cut hangs before it fails with UND_ERR_CONNECT_TIMEOUT (nothing sent). */
  connectTimeoutMs: number;
  /** Most body chunks sent and not yet read by the caller, per response. */
  streamWindowChunks: number;
  /** Most open connections in the whole network: more means a caller leaks response bodies. */
  exchangesMax: number;
}

export const simNetworkDefaults: Readonly<SimNetworkOptions> = {
  oneWayDelayMsMean: 5,
  oneWayDelayMsJitter: 1,
  dropProbability: 0,
  duplicateProbability: 0,
  reorderProbability: 0,
  reorderDelayMsMax: 50,
  connectTimeoutMs: 1_000,
  streamWindowChunks: 16,
  exchangesMax: 10_000,
};

export type SimPartition =
  /** `site` is cut from every other site, both ways. */
  | { kind: 'isolate-site'; site: string }
  /** Sites in different groups are cut from each other, both ways; unlisted sites reach everyone. */
  | { kind: 'split'; groups: string[][] };

export type SimNetworkErrorCode = 'ECONNREFUSED' | 'UND_ERR_CONNECT_TIMEOUT' | 'ECONNRESET';

/** A socket-level failure, with the `code` a real socket error would carry. */
export class SimNetworkError extends Error {
  override name = 'SimNetworkError';
  constructor(
    readonly code: SimNetworkErrorCode,
    message: string,
  ) {
    super(`${code}: ${message}`);
  }
}

/** What the network needs from the world: the time, and a way to run something later. */
export interface SimScheduler {
  nowMs(): number;
  schedule(delayMs: number, label: string, run: () => void): TimerHandle;
}

export function siteOfNode(nodeId: string): string {
  const slash = nodeId.indexOf('/');
  return slash === -1 ? nodeId : nodeId.slice(0, slash);
}

interface Listener {
  nodeId: string;
  handler: RequestHandler;
}

interface ClientSide {
  resolve(response: TransportResponse): void;
  reject(error: unknown): void;
}

type RequestContent = Omit<IncomingRequest, 'signal'>;

/**
 * connecting: the request is on its way; failing: it will fail (connect timeout or refusal);
 * handling: the handler runs; responding: the response is on its way back; closed: over.
 */
type ExchangePhase = 'connecting' | 'failing' | 'handling' | 'responding' | 'closed';

/** One connection: one request and its response. */
class Exchange {
  phase: ExchangePhase = 'connecting';
  readonly serverAbort = new AbortController();
  /** Set when the response head reached the caller; failures then go to the body. */
  clientBody: SimResponseBody | null = null;
  /** Arrival time of the latest callee → caller message, so none overtakes another. */
  lastArrivalMs = 0;
  chunksSent = 0;
  chunksRead = 0;
  /** The body sender waiting for the caller to read (flow-control window full). */
  wakeSender: (() => void) | null = null;
  detachClientSignal: () => void = () => {};

  constructor(
    readonly id: number,
    readonly callerNode: string,
    /** Known from the address registry at send time, or from the listener at delivery. */
    public calleeNode: string | undefined,
    readonly origin: string,
    /** Null for a duplicate delivery, whose response nobody receives. */
    readonly client: ClientSide | null,
    readonly label: string,
  ) {}

  /** A method, not a field read, so checks after an `await` are not narrowed away by the compiler. */
  isClosed(): boolean {
    return this.phase === 'closed';
  }
}

const jsonEncoder = new TextEncoder();

export class SimNetwork {
  private currentOptions: SimNetworkOptions;
  private readonly listeners = new Map<string, Listener>();
  /** Every origin a node ever listened on: cuts and delays still apply after it stops listening. */
  private readonly nodeOfOrigin = new Map<string, string>();
  private readonly exchanges = new Map<number, Exchange>();
  private nextExchangeId = 1;
  private readonly linkDelayMs = new Map<string, number>();
  private partitions: SimPartition[] = [];
  private readonly cutLinks = new Set<string>();

  constructor(
    private readonly log: Logger,
    private readonly scheduler: SimScheduler,
    private readonly random: SeededRandom,
    options: Partial<SimNetworkOptions> = {},
  ) {
    this.currentOptions = validatedOptions({ ...simNetworkDefaults, ...options });
  }

  get options(): Readonly<SimNetworkOptions> {
    return this.currentOptions;
  }

  /** Changes fault knobs from now on; messages already in flight keep their fate. */
  configure(patch: Partial<SimNetworkOptions>): void {
    this.currentOptions = validatedOptions({ ...this.currentOptions, ...patch });
  }

  /** Open connections (including duplicate deliveries still being handled). */
  get openExchangeCount(): number {
    return this.exchanges.size;
  }

  listen(address: string, handler: RequestHandler, nodeId: string): void {
    const origin = originOf(address);
    assert(!this.listeners.has(origin), `${origin} is already listened on (by ${this.listeners.get(origin)?.nodeId})`);
    this.listeners.set(origin, { nodeId, handler });
    this.nodeOfOrigin.set(origin, nodeId);
  }

  /** Stops accepting new connections on `address`; open ones run to their end, as with server.close(). */
  unlisten(address: string): void {
    this.listeners.delete(originOf(address));
  }

  /** The client side for `nodeId`: cuts and delays apply to (nodeId, callee) pairs. */
  transportFor(nodeId: string): Transport {
    return { request: (req) => this.openExchange(nodeId, req) };
  }

  /** Sets the mean one-way delay between two sites, both ways (jitter still applies). */
  setLinkDelay(siteA: string, siteB: string, ms: number): void {
    assert(Number.isFinite(ms) && ms >= 0, `link delay must be >= 0 ms, got ${ms}`);
    this.linkDelayMs.set(pairKey(siteA, siteB), ms);
  }

  partition(partition: SimPartition): void {
    if (partition.kind === 'split') {
      assert(partition.groups.length >= 2, 'a split needs at least two groups');
      const sites = partition.groups.flat();
      assert(new Set(sites).size === sites.length, `a site appears in two groups of a split: ${sites.join(',')}`);
    }
    this.partitions.push(partition);
    this.resetExchangesAcrossCuts();
  }

  /** Cuts connections initiated by `fromSite` to `toSite`; the other direction keeps working. */
  cutLink(fromSite: string, toSite: string): void {
    this.cutLinks.add(directedKey(fromSite, toSite));
    this.resetExchangesAcrossCuts();
  }

  /** Removes every partition and cut link (link delays stay). */
  heal(): void {
    this.partitions = [];
    this.cutLinks.clear();
  }

  /** Whether a connection initiated by `fromNode` to `toNode` is cut right now. */
  isCut(fromNode: string, toNode: string): boolean {
    const fromSite = siteOfNode(fromNode);
    const toSite = siteOfNode(toNode);
    if (fromSite === toSite) return false;
    if (this.cutLinks.has(directedKey(fromSite, toSite))) return true;
    return this.partitions.some((partition) => separates(partition, fromSite, toSite));
  }

  /** Stops every listener of `nodeId` and resets every connection to or from it. */
  crash(nodeId: string): void {
    for (const [origin, listener] of this.listeners) {
      if (listener.nodeId === nodeId) this.listeners.delete(origin);
    }
    for (const exchange of [...this.exchanges.values()]) {
      if (exchange.callerNode === nodeId || exchange.calleeNode === nodeId) {
        this.breakExchange(exchange, connectionReset(`node ${nodeId} crashed`));
      }
    }
  }

  private openExchange(callerNode: string, req: TransportRequest): Promise<TransportResponse> {
    return new Promise<TransportResponse>((resolve, reject) => {
      const signal = req.signal;
      if (signal?.aborted) {
        reject(signal.reason);
        return;
      }
      const url = new URL(req.url);
      const origin = url.origin;
      const path = url.pathname + url.search;
      assert(
        this.exchanges.size < this.currentOptions.exchangesMax,
        `more than ${this.currentOptions.exchangesMax} open sim connections: is a response body never read to its end?`,
      );
      const id = this.nextExchangeId++;
      const calleeNode = this.nodeOfOrigin.get(origin);
      const exchange = new Exchange(id, callerNode, calleeNode, origin, { resolve, reject }, `#${id} ${callerNode} ${req.method} ${origin}${path}`);
      this.exchanges.set(id, exchange);
      if (signal !== undefined) {
        const onAbort = () => this.breakExchange(exchange, signal.reason);
        signal.addEventListener('abort', onAbort, { once: true });
        exchange.detachClientSignal = () => signal.removeEventListener('abort', onAbort);
      }

      if (calleeNode !== undefined && this.isCut(callerNode, calleeNode)) {
        exchange.phase = 'failing';
        this.scheduleFor(exchange, this.currentOptions.connectTimeoutMs, 'connect timeout', () =>
          this.breakExchange(exchange, new SimNetworkError('UND_ERR_CONNECT_TIMEOUT', `connect to ${origin} timed out: link cut`)),
        );
        return;
      }

      const content: RequestContent = { method: req.method, path, headers: { ...req.headers }, body: (req.body ?? new Uint8Array()).slice() };
      const { reorderProbability, reorderDelayMsMax, dropProbability, duplicateProbability } = this.currentOptions;
      const holdBackMs = this.random.chance(reorderProbability) ? this.random.next() * reorderDelayMsMax : 0;
      const delayMs = this.oneWayDelayMs(callerNode, calleeNode) + holdBackMs;
      const lost = this.random.chance(dropProbability);
      this.scheduleFor(exchange, delayMs, 'request arrives', () => {
        if (lost) this.breakExchange(exchange, connectionReset('request lost'));
        else this.deliverRequest(exchange, content);
      });
      if (this.random.chance(duplicateProbability)) {
        const duplicateDelayMs = delayMs + this.random.next() * reorderDelayMsMax;
        this.scheduler.schedule(duplicateDelayMs, `net ${exchange.label}: duplicate arrives`, () =>
          this.deliverDuplicate(exchange, content),
        );
      }
    });
  }

  private deliverRequest(exchange: Exchange, content: RequestContent): void {
    const listener = this.listeners.get(exchange.origin);
    if (listener === undefined) {
      exchange.phase = 'failing';
      this.scheduleFor(exchange, this.oneWayDelayMs(exchange.calleeNode, exchange.callerNode), 'connection refused', () =>
        this.breakExchange(exchange, new SimNetworkError('ECONNREFUSED', `nothing listens on ${exchange.origin}`)),
      );
      return;
    }
    exchange.calleeNode = listener.nodeId;
    exchange.phase = 'handling';
    void this.serve(exchange, listener.handler, { ...content, signal: exchange.serverAbort.signal });
  }

  /** A second copy of `original`'s request: handled like any other, its response thrown away. */
  private deliverDuplicate(original: Exchange, content: RequestContent): void {
    const listener = this.listeners.get(original.origin);
    if (listener === undefined || this.isCut(original.callerNode, listener.nodeId)) return;
    if (this.exchanges.size >= this.currentOptions.exchangesMax) return;
    const id = this.nextExchangeId++;
    const duplicate = new Exchange(id, original.callerNode, listener.nodeId, original.origin, null, `${original.label} (duplicate #${id})`);
    this.exchanges.set(id, duplicate);
    this.deliverRequest(duplicate, content);
  }

  private async serve(exchange: Exchange, handler: RequestHandler, request: IncomingRequest): Promise<void> {
    let response: TransportResponse;
    try {
      response = await handler(request);
    } catch (error) {
      this.log.error({ err: error, exchange: exchange.label }, 'sim request handler threw; answering 500');
      response = internalErrorResponse();
    }
    if (exchange.isClosed()) return;
    const client = exchange.client;
    if (client === null) {
      this.breakExchange(exchange, connectionReset('duplicate delivery: response discarded'));
      return;
    }
    exchange.phase = 'responding';
    const body = new SimResponseBody({
      onChunkRead: () => {
        exchange.chunksRead++;
        this.wakeSender(exchange);
      },
      onCancel: () => this.breakExchange(exchange, connectionReset('caller closed the response body')),
    });
    const head: TransportResponse = { status: response.status, headers: { ...response.headers }, body };
    const headLost = this.random.chance(this.currentOptions.dropProbability);
    this.scheduleArrival(exchange, 'response head arrives', () => {
      if (headLost) {
        this.breakExchange(exchange, connectionReset('response lost'));
        return;
      }
      exchange.clientBody = body;
      client.resolve(head);
    });
    await this.sendBody(exchange, response.body, body);
  }

  /**
   * Pulls the handler's body and schedules each chunk's arrival. The loop has no count bound on
   * purpose (a replication feed never ends); the flow-control window bounds what is in flight.
   */
  private async sendBody(exchange: Exchange, source: AsyncIterable<Uint8Array>, body: SimResponseBody): Promise<void> {
    try {
      const chunks = source[Symbol.asyncIterator]();
      for (;;) {
        await this.windowOpen(exchange);
        if (exchange.isClosed()) break;
        const result = await chunks.next();
        if (exchange.isClosed()) break;
        if (result.done) {
          this.scheduleArrival(exchange, 'response end arrives', () => {
            body.deliverEnd();
            this.closeExchange(exchange);
          });
          return;
        }
        if (result.value.byteLength === 0) continue;
        const chunk = result.value.slice();
        const lost = this.random.chance(this.currentOptions.dropProbability);
        exchange.chunksSent++;
        this.scheduleArrival(exchange, `chunk ${exchange.chunksSent} arrives`, () => {
          if (lost) this.breakExchange(exchange, connectionReset(`chunk ${exchange.chunksRead + 1} lost`));
          else body.deliverChunk(chunk);
        });
      }
      await chunks.return?.();
    } catch (error) {
      if (exchange.isClosed()) return;
      this.log.warn({ err: error, exchange: exchange.label }, 'sim response body threw; resetting the connection');
      this.scheduleArrival(exchange, 'reset arrives', () =>
        this.breakExchange(exchange, connectionReset('server aborted the response')),
      );
    }
  }

  private windowOpen(exchange: Exchange): Promise<void> {
    const unreadChunks = exchange.chunksSent - exchange.chunksRead;
    if (exchange.isClosed() || unreadChunks < this.currentOptions.streamWindowChunks) return Promise.resolve();
    return new Promise((resolve) => {
      exchange.wakeSender = resolve;
    });
  }

  private wakeSender(exchange: Exchange): void {
    const wake = exchange.wakeSender;
    exchange.wakeSender = null;
    wake?.();
  }

  /** Schedules a callee → caller message, never before the previous one of the same connection. */
  private scheduleArrival(exchange: Exchange, what: string, run: () => void): void {
    const nowMs = this.scheduler.nowMs();
    const arrivalMs = Math.max(nowMs + this.oneWayDelayMs(exchange.calleeNode, exchange.callerNode), exchange.lastArrivalMs);
    exchange.lastArrivalMs = arrivalMs;
    this.scheduleFor(exchange, arrivalMs - nowMs, what, run);
  }

  /** Runs `run` after `delayMs` unless the connection closed meanwhile. */
  private scheduleFor(exchange: Exchange, delayMs: number, what: string, run: () => void): void {
    this.scheduler.schedule(delayMs, `net ${exchange.label}: ${what}`, () => {
      if (!exchange.isClosed()) run();
    });
  }

  private resetExchangesAcrossCuts(): void {
    for (const exchange of [...this.exchanges.values()]) {
      if (exchange.phase === 'failing' || exchange.calleeNode === undefined) continue;
      if (this.isCut(exchange.callerNode, exchange.calleeNode)) {
        this.breakExchange(exchange, connectionReset(`link ${siteOfNode(exchange.callerNode)} -> ${siteOfNode(exchange.calleeNode)} cut`));
      }
    }
  }

  /** Fails the connection on both sides: the caller gets `error`, the handler's signal aborts. */
  private breakExchange(exchange: Exchange, error: unknown): void {
    if (exchange.isClosed()) return;
    this.closeExchange(exchange);
    exchange.serverAbort.abort(error);
    if (exchange.client === null) return;
    if (exchange.clientBody !== null) exchange.clientBody.fail(error);
    else exchange.client.reject(error);
  }

  private closeExchange(exchange: Exchange): void {
    exchange.phase = 'closed';
    this.exchanges.delete(exchange.id);
    exchange.detachClientSignal();
    this.wakeSender(exchange);
  }

  private oneWayDelayMs(fromNode: string | undefined, toNode: string | undefined): number {
    const { oneWayDelayMsMean, oneWayDelayMsJitter } = this.currentOptions;
    const linkMs = fromNode !== undefined && toNode !== undefined ? this.linkDelayMs.get(pairKey(siteOfNode(fromNode), siteOfNode(toNode))) : undefined;
    const jitterMs = (this.random.next() * 2 - 1) * oneWayDelayMsJitter;
    return Math.max(0, (linkMs ?? oneWayDelayMsMean) + jitterMs);
  }
}

function separates(partition: SimPartition, siteA: string, siteB: string): boolean {
  switch (partition.kind) {
    case 'isolate-site':
      return (siteA === partition.site) !== (siteB === partition.site);
    case 'split': {
      const groupA = partition.groups.findIndex((group) => group.includes(siteA));
      const groupB = partition.groups.findIndex((group) => group.includes(siteB));
      return groupA !== -1 && groupB !== -1 && groupA !== groupB;
    }
    default:
      return unreachable(partition);
  }
}

function originOf(address: string): string {
  const origin = new URL(address).origin;
  assert(origin !== 'null', `sim addresses are http(s) origins, got ${address}`);
  return origin;
}

function directedKey(fromSite: string, toSite: string): string {
  return JSON.stringify([fromSite, toSite]);
}

function pairKey(siteA: string, siteB: string): string {
  return siteA < siteB ? directedKey(siteA, siteB) : directedKey(siteB, siteA);
}

function connectionReset(why: string): SimNetworkError {
  return new SimNetworkError('ECONNRESET', why);
}

function internalErrorResponse(): TransportResponse {
  const headers: Headers = { 'content-type': 'application/json' };
  return { status: 500, headers, body: singleChunk(jsonEncoder.encode('{"error":"internal"}')) };
}

function validatedOptions(options: SimNetworkOptions): SimNetworkOptions {
  const nonNegative = ['oneWayDelayMsMean', 'oneWayDelayMsJitter', 'reorderDelayMsMax', 'connectTimeoutMs'] as const;
  for (const name of nonNegative) {
    assert(Number.isFinite(options[name]) && options[name] >= 0, `${name} must be a finite number >= 0, got ${options[name]}`);
  }
  const probabilities = ['dropProbability', 'duplicateProbability', 'reorderProbability'] as const;
  for (const name of probabilities) {
    assert(options[name] >= 0 && options[name] <= 1, `${name} must be in [0, 1], got ${options[name]}`);
  }
  const counts = ['streamWindowChunks', 'exchangesMax'] as const;
  for (const name of counts) {
    assert(Number.isInteger(options[name]) && options[name] >= 1, `${name} must be an integer >= 1, got ${options[name]}`);
  }
  return options;
}
