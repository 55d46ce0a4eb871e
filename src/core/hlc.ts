// Hybrid logical clock (Kulkarni et al. 2014): 48-bit wall milliseconds + 16-bit counter in one
// 64-bit value. Monotonic when the wall clock jumps back; pulled forward by a remote timestamp only
// within `skewMsMax` (beyond it the entry is still applied, but the clock is not dragged and the
// skew is reported). Carried on the wire as 16 hex digits, never as a JSON number (> 2^53).
import { assert } from './assert.js';

export type Hlc = bigint;

const counterBits = 16n;
const counterMax = (1n << counterBits) - 1n;
const msMax = (1n << 48n) - 1n;

export function hlcOf(ms: number, counter: number): Hlc {
  assert(Number.isInteger(ms) && ms >= 0, `hlc ms must be a non-negative integer, got ${ms}`);
  assert(Number.isInteger(counter) && counter >= 0 && BigInt(counter) <= counterMax, `hlc counter out of range: ${counter}`);
  const big = BigInt(ms);
  assert(big <= msMax, 'hlc ms exceeds 48 bits');
  return (big << counterBits) | BigInt(counter);
}

export function hlcMs(h: Hlc): number {
  return Number(h >> counterBits);
}

export function hlcCounter(h: Hlc): number {
  return Number(h & counterMax);
}

export function hlcToHex(h: Hlc): string {
  return h.toString(16).padStart(16, '0');
}

export function hlcFromHex(hex: string): Hlc {
  assert(/^[0-9a-f]{16}$/.test(hex), `malformed hlc hex: ${hex}`);
  return BigInt(`0x${hex}`);
}

export const hlcZero: Hlc = 0n;

export interface HybridClockOptions {
  wallMs: () => number;
  skewMsMax: number;
  /** Called when a remote timestamp is further ahead than skewMsMax (applied anyway, clock not dragged). */
  onSkew?: (aheadMs: number) => void;
  /** The highest timestamp this site ever issued or saw (from the store), so restarts stay monotonic. */
  floor?: Hlc;
}

export class HybridClock {
  private last: Hlc;
  skewAlarms = 0;

  constructor(private readonly options: HybridClockOptions) {
    this.last = options.floor ?? hlcZero;
  }

  /** The timestamp for a new local event: strictly greater than every earlier one. */
  tick(): Hlc {
    const wall = hlcOf(Math.max(0, Math.floor(this.options.wallMs())), 0);
    this.last = wall > this.last ? wall : advance(this.last);
    return this.last;
  }

  /**
   * A timestamp for an event that must also order after `after` (e.g. the state it replaces), so
   * a successor always orders after what it replaced. `after` pulls the clock only within the skew
   * bound, like any remote timestamp: an item written by a site an hour ahead gets this one write
   * stamped just after it, but the clock (and every later write, and the floor kept across
   * restarts) stays on this site's time.
   */
  tickAfter(after: Hlc): Hlc {
    if (this.withinSkew(after)) this.observeTrusted(after);
    const t = this.tick();
    return t > after ? t : advance(after);
  }

  /**
   * Receiving a remote timestamp never fails; it pulls the clock forward only within the skew
   * bound. Returns whether it did (false: beyond the bound, alarm raised).
   */
  observe(remote: Hlc): boolean {
    if (!this.withinSkew(remote)) {
      this.skewAlarms += 1;
      this.options.onSkew?.(hlcMs(remote) - this.options.wallMs());
      return false;
    }
    this.observeTrusted(remote);
    return true;
  }

  private withinSkew(h: Hlc): boolean {
    return hlcMs(h) - this.options.wallMs() <= this.options.skewMsMax;
  }

  current(): Hlc {
    return this.last;
  }

  private observeTrusted(h: Hlc): void {
    if (h > this.last) this.last = h;
  }
}

function advance(h: Hlc): Hlc {
  // On counter overflow, move to the next millisecond rather than wrap.
  return hlcCounter(h) === Number(counterMax) ? hlcOf(hlcMs(h) + 1, 0) : h + 1n;
}
