// The simulator's agenda: a binary min-heap of events ordered by (time, insertion sequence), so two
// events due at the same instant run in the order they were scheduled. Cancelling marks an event
// dead in O(1); dead events are skipped when they reach the top and purged in bulk once they
// outnumber the live ones, so cancelled far-future timeouts cannot pile up.
import { assert } from '../assert.js';

export interface SimEvent {
  readonly atMs: number;
  /** Insertion sequence: the tie-breaker for events due at the same time. */
  readonly seq: number;
  /** What the event is, for traces and error messages. */
  readonly label: string;
  readonly run: () => void;
  cancelled: boolean;
}

/** Below this many dead events the heap is not worth rebuilding. */
const PURGE_DEAD_EVENTS_MIN = 1024;

export class EventQueue {
  private heap: SimEvent[] = [];
  private deadEvents = 0;
  private sequence = 0;

  constructor(private readonly liveEventsMax: number) {
    assert(Number.isInteger(liveEventsMax) && liveEventsMax > 0, 'liveEventsMax must be a positive integer');
  }

  /** How many events were ever scheduled: the simulator watches it to tell when code went quiet. */
  get scheduledCount(): number {
    return this.sequence;
  }

  get liveCount(): number {
    return this.heap.length - this.deadEvents;
  }

  push(atMs: number, label: string, run: () => void): SimEvent {
    assert(Number.isFinite(atMs), `event time must be finite: ${label}`);
    assert(this.liveCount < this.liveEventsMax, `more than ${this.liveEventsMax} pending sim events (last: ${label})`);
    const event: SimEvent = { atMs, seq: this.sequence++, label, run, cancelled: false };
    this.heap.push(event);
    this.siftUp(this.heap.length - 1);
    return event;
  }

  cancel(event: SimEvent): void {
    if (event.cancelled) return;
    event.cancelled = true;
    this.deadEvents++;
    if (this.deadEvents >= PURGE_DEAD_EVENTS_MIN && this.deadEvents > this.liveCount) this.purgeDeadEvents();
  }

  /** The next live event without removing it. */
  peek(): SimEvent | undefined {
    this.dropDeadTop();
    return this.heap[0];
  }

  /** Removes and returns the next live event. */
  pop(): SimEvent | undefined {
    this.dropDeadTop();
    return this.removeTop();
  }

  private dropDeadTop(): void {
    while (this.heap[0]?.cancelled) {
      this.removeTop();
      this.deadEvents--;
    }
  }

  private removeTop(): SimEvent | undefined {
    const top = this.heap[0];
    const last = this.heap.pop();
    if (top !== undefined && last !== undefined && top !== last) {
      this.heap[0] = last;
      this.siftDown(0);
    }
    return top;
  }

  private purgeDeadEvents(): void {
    this.heap = this.heap.filter((event) => !event.cancelled);
    this.deadEvents = 0;
    for (let i = (this.heap.length >> 1) - 1; i >= 0; i--) this.siftDown(i);
  }

  private siftUp(index: number): void {
    const heap = this.heap;
    let child = index;
    while (child > 0) {
      const parent = (child - 1) >> 1;
      if (!runsBefore(heap[child]!, heap[parent]!)) return;
      [heap[child], heap[parent]] = [heap[parent]!, heap[child]!];
      child = parent;
    }
  }

  private siftDown(index: number): void {
    const heap = this.heap;
    let parent = index;
    for (;;) {
      const left = parent * 2 + 1;
      const right = left + 1;
      let first = parent;
      if (left < heap.length && runsBefore(heap[left]!, heap[first]!)) first = left;
      if (right < heap.length && runsBefore(heap[right]!, heap[first]!)) first = right;
      if (first === parent) return;
      [heap[parent], heap[first]] = [heap[first]!, heap[parent]!];
      parent = first;
    }
  }
}

function runsBefore(a: SimEvent, b: SimEvent): boolean {
  return a.atMs < b.atMs || (a.atMs === b.atMs && a.seq < b.seq);
}
