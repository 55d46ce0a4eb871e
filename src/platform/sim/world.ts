// The simulated world: one seed, one simulated clock, one agenda of events, one network. Every node
// of a simulated cluster gets its `Env` from here (`envFor`), so a test runs many sites, partitions,
// crashes and clock skew in one process, in milliseconds, and a failing seed replays exactly.
//
// Time stands still while code runs and jumps from event to event. Driving the world:
// - `step()` pops the next event (by time, then scheduling order), sets the clock to its time, runs
//   it, then settles: lets every promise continuation it caused run before the next event.
// - `runFor(ms)` steps through every event due within `ms`, then sets the clock to the end.
// - `runUntil(predicate, { timeoutMs })` steps until the predicate holds; it throws if the
//   deadline passes or nothing is left to run (the cluster is stuck).
//
// Settling: after an event, the world awaits `setImmediate` in a loop. Node runs every queued
// microtask (promise reactions, `process.nextTick`) before an immediate fires, so one turn settles
// every async chain that waits only on promises, however long (streaming bodies included). The
// loop takes another turn while the previous one scheduled sim events, in case code was waiting on
// Node's own immediates, and stops at `settleTurnsMax`. Limits: code under simulation must not wait
// on real I/O, real timers or worker threads (use the Env); such work would finish at a
// nondeterministic sim time. Synchronous work (better-sqlite3) is fine.
import type { Clock, Env, Logger, TimerHandle, Timers, Transport, TransportResponse } from '../env.js';
import { silentLogger } from '../env.js';
import { assert } from '../assert.js';
import { EventQueue, type SimEvent } from './event-queue.js';
import { SimNetwork, type SimNetworkOptions, type SimScheduler } from './network.js';
import { SeededRandom } from './random.js';

export interface SimWorldOptions {
  /** A uint32; print it with every failure so the run can be replayed. */
  seed: number;
  /** Wall-clock time at sim time 0 (ms since the Unix epoch). Fixed by default for replay. */
  epochMs?: number;
  network?: Partial<SimNetworkOptions>;
  /** Parent of every node's logger; silent by default. */
  log?: Logger;
  /** Most events pending at once. */
  pendingEventsMax?: number;
  /** Most events run at one sim instant before the world declares a livelock. */
  eventsAtSameTimeMax?: number;
  /** Most `setImmediate` turns to settle after one event. */
  settleTurnsMax?: number;
  /** How many of the latest executed events `trace()` keeps (0 turns tracing off). */
  traceEventsMax?: number;
}

export interface SimEnvOptions {
  /** This node's wall clock runs `skewMs` ahead of true sim wall time (negative: behind). */
  skewMs?: number;
  /** Parent logger for this node (default: the world's); the node's gets `{ node: nodeId }`. */
  log?: Logger;
}

export interface TraceEntry {
  atMs: number;
  label: string;
}

/** Thrown when `runUntil` cannot reach its condition; the message carries the replay seed. */
export class SimStalledError extends Error {
  override name = 'SimStalledError';
}

/** 2024-01-01T00:00:00Z: a fixed origin, so wall clocks replay too. */
const epochMsDefault = 1_704_067_200_000;

export class SimWorld {
  readonly seed: number;
  /** The world's root random stream; nodes and the network use their own forks of it. */
  readonly random: SeededRandom;
  /** True sim time: monotonic, and a wall clock without skew. */
  readonly clock: Clock;
  /** Timers that belong to no node (test drivers, fault schedules). */
  readonly timers: Timers;
  readonly network: SimNetwork;
  readonly log: Logger;

  private nowMsValue = 0;
  private readonly epochMs: number;
  private readonly queue: EventQueue;
  private readonly eventsAtSameTimeMax: number;
  private readonly settleTurnsMax: number;
  private readonly traceEventsMax: number;
  private readonly traceRing: TraceEntry[] = [];
  private eventsAtCurrentTime = 0;
  private readonly skewMsOfNode = new Map<string, number>();
  /** Bumped by `crash`: envs of an older incarnation of a node go inert. */
  private readonly incarnationOfNode = new Map<string, number>();
  private readonly pendingTimersOfNode = new Map<string, Set<TimerHandle>>();
  private readonly pausedUntilOfNode = new Map<string, number>();

  constructor(options: SimWorldOptions) {
    this.seed = options.seed;
    this.random = new SeededRandom(options.seed);
    this.epochMs = options.epochMs ?? epochMsDefault;
    this.log = options.log ?? silentLogger;
    this.queue = new EventQueue(options.pendingEventsMax ?? 1_000_000);
    this.eventsAtSameTimeMax = options.eventsAtSameTimeMax ?? 100_000;
    this.settleTurnsMax = options.settleTurnsMax ?? 100;
    this.traceEventsMax = options.traceEventsMax ?? 1_000;
    assert(Number.isInteger(this.eventsAtSameTimeMax) && this.eventsAtSameTimeMax > 0, 'eventsAtSameTimeMax must be a positive integer');
    assert(Number.isInteger(this.settleTurnsMax) && this.settleTurnsMax > 0, 'settleTurnsMax must be a positive integer');
    assert(Number.isInteger(this.traceEventsMax) && this.traceEventsMax >= 0, 'traceEventsMax must be an integer >= 0');
    this.clock = { monotonicMs: () => this.nowMsValue, wallMs: () => Math.floor(this.epochMs + this.nowMsValue) };
    this.timers = this.timersOwnedBy(null, () => true);
    const scheduler: SimScheduler = { nowMs: () => this.nowMsValue, schedule: (delayMs, label, run) => this.schedule(delayMs, label, run) };
    this.network = new SimNetwork(this.log.child({ component: 'sim-network' }), scheduler, this.random.fork('network'), options.network);
  }

  /** Runs `run` after `delayMs` of sim time (negative delays count as 0). */
  schedule(delayMs: number, label: string, run: () => void): TimerHandle {
    assert(Number.isFinite(delayMs), `delay must be finite: ${label}`);
    const event: SimEvent = this.queue.push(this.nowMsValue + Math.max(0, delayMs), label, run);
    return { cancel: () => this.queue.cancel(event) };
  }

  /**
   * The Env of node `nodeId`: its own wall-clock skew, timers, random stream and transport over
   * `network`. After `crash(nodeId)`, envs handed out before go inert and a new call starts the
   * node's next incarnation (with a fresh random stream).
   */
  envFor(nodeId: string, options: SimEnvOptions = {}): Env {
    if (options.skewMs !== undefined) this.setSkew(nodeId, options.skewMs);
    const incarnation = this.incarnationOfNode.get(nodeId) ?? 0;
    const isAlive = () => (this.incarnationOfNode.get(nodeId) ?? 0) === incarnation;
    const clock: Clock = {
      monotonicMs: () => this.nowMsValue,
      wallMs: () => Math.floor(this.epochMs + this.nowMsValue + (this.skewMsOfNode.get(nodeId) ?? 0)),
    };
    return {
      clock,
      timers: this.timersOwnedBy(nodeId, isAlive),
      random: this.random.fork(`node:${nodeId}:${incarnation}`),
      transport: transportWhileAlive(this.network.transportFor(nodeId), isAlive),
      log: (options.log ?? this.log).child({ node: nodeId }),
    };
  }

  setSkew(nodeId: string, skewMs: number): void {
    assert(Number.isFinite(skewMs), `skew must be finite, got ${skewMs}`);
    this.skewMsOfNode.set(nodeId, skewMs);
  }

  /**
   * Kills node `nodeId` as a process crash would: its listeners stop, its connections reset, its
   * pending timers never fire, and its envs go inert (new timers never fire, sleeps and requests
   * never settle). Code already running cannot be stopped; it just never hears from the world
   * again. Call `envFor(nodeId)` to start it again.
   */
  crash(nodeId: string): void {
    this.incarnationOfNode.set(nodeId, (this.incarnationOfNode.get(nodeId) ?? 0) + 1);
    for (const timer of this.pendingTimersOfNode.get(nodeId) ?? []) timer.cancel();
    this.pendingTimersOfNode.delete(nodeId);
    this.network.crash(nodeId);
  }

  /**
   * Pauses node `nodeId` for `ms` (SIGSTOP then SIGCONT, or a VM pause): none of its timers fires
   * before it resumes (then every one due fires at once); its clocks go on. Cut its links meanwhile
   * if its sockets should go quiet too.
   */
  pause(nodeId: string, ms: number): void {
    this.pausedUntilOfNode.set(nodeId, Math.max(this.pausedUntilOfNode.get(nodeId) ?? 0, this.nowMsValue + ms));
  }

  /** Runs the next event, then settles. Returns false when nothing is left to run. */
  async step(): Promise<boolean> {
    await this.settle();
    return this.runNextEvent();
  }

  /** Runs every event due within `ms` of sim time, then advances the clock to the end of it. */
  async runFor(ms: number): Promise<void> {
    assert(Number.isFinite(ms) && ms >= 0, `runFor needs a duration >= 0, got ${ms}`);
    const endMs = this.nowMsValue + ms;
    await this.settle();
    for (;;) {
      const next = this.queue.peek();
      if (next === undefined || next.atMs > endMs) break;
      await this.runNextEvent();
    }
    this.advanceTo(endMs);
  }

  /** Steps until `predicate()` holds; throws `SimStalledError` after `timeoutMs` of sim time or when idle. */
  async runUntil(predicate: () => boolean, options: { timeoutMs: number }): Promise<void> {
    assert(Number.isFinite(options.timeoutMs) && options.timeoutMs >= 0, 'runUntil needs a timeoutMs >= 0');
    const startMs = this.nowMsValue;
    const deadlineMs = startMs + options.timeoutMs;
    await this.settle();
    while (!predicate()) {
      const next = this.queue.peek();
      if (next === undefined) {
        throw new SimStalledError(`condition still false at t=${this.nowMsValue}ms and nothing left to run (replay: SEED=${this.seed})`);
      }
      if (next.atMs > deadlineMs) {
        this.advanceTo(deadlineMs);
        throw new SimStalledError(`condition still false after ${options.timeoutMs}ms (from t=${startMs}ms; replay: SEED=${this.seed})`);
      }
      await this.runNextEvent();
    }
  }

  /** The latest executed events, oldest first (at most `traceEventsMax`). */
  trace(): readonly TraceEntry[] {
    return [...this.traceRing];
  }

  /** Events waiting to run. */
  get pendingEventCount(): number {
    return this.queue.liveCount;
  }

  private async runNextEvent(): Promise<boolean> {
    const event = this.queue.pop();
    if (event === undefined) return false;
    this.advanceTo(event.atMs);
    this.eventsAtCurrentTime++;
    assert(
      this.eventsAtCurrentTime <= this.eventsAtSameTimeMax,
      `livelock: more than ${this.eventsAtSameTimeMax} events at t=${this.nowMsValue}ms, last: ${event.label} (replay: SEED=${this.seed})`,
    );
    this.recordTrace(event);
    event.run();
    await this.settle();
    return true;
  }

  private advanceTo(ms: number): void {
    assert(ms >= this.nowMsValue, `sim time must not go backwards: ${ms} < ${this.nowMsValue}`);
    if (ms > this.nowMsValue) this.eventsAtCurrentTime = 0;
    this.nowMsValue = ms;
  }

  private recordTrace(event: SimEvent): void {
    if (this.traceEventsMax === 0) return;
    if (this.traceRing.length === this.traceEventsMax) this.traceRing.shift();
    this.traceRing.push({ atMs: event.atMs, label: event.label });
  }

  /** See the module header: one `setImmediate` turn per round, more while code keeps scheduling. */
  private async settle(): Promise<void> {
    for (let turn = 0; turn < this.settleTurnsMax; turn++) {
      const scheduledBefore = this.queue.scheduledCount;
      await nextMacrotaskTurn();
      if (this.queue.scheduledCount === scheduledBefore) return;
    }
    assert(false, `code kept scheduling events across ${this.settleTurnsMax} setImmediate turns at t=${this.nowMsValue}ms (replay: SEED=${this.seed})`);
  }

  /** Timers of `nodeId` (or of the world, for null) that stop firing once `isAlive()` turns false. */
  private timersOwnedBy(nodeId: string | null, isAlive: () => boolean): Timers {
    const owner = nodeId ?? 'world';
    const after = (ms: number, fn: () => void): TimerHandle => {
      if (!isAlive()) return { cancel: () => {} };
      const pending = nodeId === null ? null : this.pendingTimersOf(nodeId);
      let inner: TimerHandle;
      const handle: TimerHandle = {
        cancel: () => {
          pending?.delete(handle);
          inner.cancel();
        },
      };
      const fire = () => {
        // a paused process (SIGSTOP, a VM pause) runs its timers only once it resumes
        const until = nodeId === null ? 0 : (this.pausedUntilOfNode.get(nodeId) ?? 0);
        if (this.nowMsValue < until) {
          inner = this.schedule(until - this.nowMsValue, `timer ${owner} (resumed)`, fire);
          return;
        }
        pending?.delete(handle);
        fn();
      };
      inner = this.schedule(ms, `timer ${owner}`, fire);
      pending?.add(handle);
      return handle;
    };
    const sleep = (ms: number, signal?: AbortSignal): Promise<void> =>
      new Promise<void>((resolve, reject) => {
        if (signal?.aborted) {
          reject(signal.reason);
          return;
        }
        const onAbort = () => {
          timer.cancel();
          reject(signal?.reason);
        };
        const timer = after(ms, () => {
          signal?.removeEventListener('abort', onAbort);
          resolve();
        });
        signal?.addEventListener('abort', onAbort, { once: true });
      });
    return { after, sleep };
  }

  private pendingTimersOf(nodeId: string): Set<TimerHandle> {
    let timers = this.pendingTimersOfNode.get(nodeId);
    if (timers === undefined) {
      timers = new Set();
      this.pendingTimersOfNode.set(nodeId, timers);
    }
    return timers;
  }
}

function nextMacrotaskTurn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** A promise that settles like `promise` while the node lives, and never once it is dead. */
function settleWhileAlive<T>(promise: Promise<T>, isAlive: () => boolean): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    promise.then(
      (value) => {
        if (isAlive()) resolve(value);
      },
      (error: unknown) => {
        if (isAlive()) reject(error);
      },
    );
  });
}

/** The transport of one node incarnation: a dead node's requests and responses never settle. */
function transportWhileAlive(transport: Transport, isAlive: () => boolean): Transport {
  return {
    async request(req): Promise<TransportResponse> {
      if (!isAlive()) return new Promise<TransportResponse>(() => {});
      const response = await settleWhileAlive(transport.request(req), isAlive);
      const body = response.body;
      return {
        ...response,
        body: {
          [Symbol.asyncIterator]() {
            const chunks = body[Symbol.asyncIterator]();
            return {
              next: () => settleWhileAlive(chunks.next(), isAlive),
              return: async () => (await chunks.return?.()) ?? { done: true, value: undefined },
            };
          },
        },
      };
    },
  };
}
