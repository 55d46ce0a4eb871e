// Loggers for simulated nodes. `silentLogger` (from env.ts) discards everything; `CapturingLogger`
// keeps the most recent records, stamped with simulated time, so a test can assert on what a node
// logged or print the tail of the log next to a failing seed.
import type { Clock, Logger } from '../env.js';
import { assert } from '../assert.js';

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

export interface LogRecord {
  /** Simulated monotonic time of the call. */
  atMs: number;
  level: LogLevel;
  /** Bindings accumulated through `child()`, e.g. `{ node: 'us-east' }`. */
  bindings: object;
  obj: object;
  msg?: string;
}

/** The ring of records shared by a capturing logger and all of its children. */
class LogRing {
  readonly records: LogRecord[] = [];
  droppedCount = 0;

  constructor(readonly recordsMax: number) {
    assert(Number.isInteger(recordsMax) && recordsMax > 0, 'recordsMax must be a positive integer');
  }

  add(record: LogRecord): void {
    if (this.records.length === this.recordsMax) {
      this.records.shift();
      this.droppedCount++;
    }
    this.records.push(record);
  }
}

export class CapturingLogger implements Logger {
  private constructor(
    private readonly clock: Clock,
    private readonly ring: LogRing,
    private readonly bindings: object,
  ) {}

  /** Keeps the latest `recordsMax` records; older ones are dropped (and counted). */
  static create(clock: Clock, recordsMax = 10_000): CapturingLogger {
    return new CapturingLogger(clock, new LogRing(recordsMax), {});
  }

  debug(obj: object, msg?: string): void {
    this.record('debug', obj, msg);
  }
  info(obj: object, msg?: string): void {
    this.record('info', obj, msg);
  }
  warn(obj: object, msg?: string): void {
    this.record('warn', obj, msg);
  }
  error(obj: object, msg?: string): void {
    this.record('error', obj, msg);
  }

  child(bindings: object): CapturingLogger {
    return new CapturingLogger(this.clock, this.ring, { ...this.bindings, ...bindings });
  }

  /** Every kept record of this logger and its relatives, oldest first. */
  records(): readonly LogRecord[] {
    return this.ring.records;
  }

  /** Records that fell out of the ring. */
  get droppedCount(): number {
    return this.ring.droppedCount;
  }

  private record(level: LogLevel, obj: object, msg: string | undefined): void {
    const record: LogRecord = { atMs: this.clock.monotonicMs(), level, bindings: this.bindings, obj };
    if (msg !== undefined) record.msg = msg;
    this.ring.add(record);
  }
}
