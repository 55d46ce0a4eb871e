// The holder's side of a lease (ARCHITECTURE.md, "Leases"):
//
//   none ──majority granted (epoch e, sentAt)──► held(e) ──renewed──► held(e')
//     ▲                                             │
//     └──── L passed since sentAt (monotonic OR wall), or an event-loop stall > L/4 ────┘
//
// A lease is `(epoch, sentAt)`: it starts when the request that won it was *sent* (every voter's
// grant is later than that), and is used only while both the monotonic and the wall time since
// sentAt are below leaseMs: a VM pause or suspend stops the monotonic clock but not the wall clock,
// and a wall clock stepped back cannot stretch it either. The holder notes every tick of its own
// timer; when the last tick is older than L/4 plus the tick interval, the event loop (or the whole
// VM) stalled, and the lease is not used until a renewal sent after the stall comes back.
import type { Clock } from '../platform/env.js';

export interface HeldLease {
  epoch: number;
  sentAtMonoMs: number;
  sentAtWallMs: number;
}

export class LeaseHolder {
  private lease: HeldLease | undefined;
  private lastTickMs: number;

  constructor(
    private readonly clock: Clock,
    private readonly leaseMs: number,
    private readonly tickMs: number,
  ) {
    this.lastTickMs = clock.monotonicMs();
  }

  /** Called by the holder's periodic timer. */
  tick(): void {
    const now = this.clock.monotonicMs();
    if (this.stalled(now)) this.lease = undefined;
    this.lastTickMs = now;
  }

  private stalled(now: number): boolean {
    return now - this.lastTickMs > this.leaseMs / 4 + this.tickMs;
  }

  /** A majority granted the request sent at (mono, wall) for `epoch`. */
  granted(epoch: number, sentAtMonoMs: number, sentAtWallMs: number): void {
    // a grant for a request sent before a stall says nothing after it
    if (sentAtMonoMs < this.lastTickMs - this.leaseMs / 4 - this.tickMs) return;
    if (this.lease !== undefined && (this.lease.epoch > epoch || (this.lease.epoch === epoch && this.lease.sentAtMonoMs >= sentAtMonoMs))) return;
    this.lease = { epoch, sentAtMonoMs, sentAtWallMs };
  }

  drop(): void {
    this.lease = undefined;
  }

  /** ms the lease is still certainly valid for (0: none), and its epoch. */
  remaining(): { epoch: number; ms: number } | undefined {
    const l = this.lease;
    if (l === undefined) return undefined;
    const mono = this.clock.monotonicMs();
    if (this.stalled(mono)) return undefined;
    const ms = Math.min(this.leaseMs - (mono - l.sentAtMonoMs), this.leaseMs - (this.clock.wallMs() - l.sentAtWallMs));
    // a wall clock stepped back makes wall elapsed negative: never trust more than the monotonic time
    return ms > 0 && this.clock.wallMs() >= l.sentAtWallMs ? { epoch: l.epoch, ms } : undefined;
  }
}
