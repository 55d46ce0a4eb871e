// The one backoff helper every retry loop shares: exponential with full jitter, bounded, seeded
// through the injected Random so simulations replay.
import type { Random } from './env.js';

export class Backoff {
  private attempt = 0;

  constructor(
    private readonly random: Random,
    private readonly minMs: number,
    private readonly maxMs: number,
  ) {}

  /** The delay before the next attempt: uniform in [min, min * 2^attempt], capped at max. */
  next(): number {
    const ceiling = Math.min(this.maxMs, this.minMs * 2 ** Math.min(this.attempt, 20));
    this.attempt += 1;
    return this.minMs + this.random.next() * (ceiling - this.minMs);
  }

  reset(): void {
    this.attempt = 0;
  }
}
