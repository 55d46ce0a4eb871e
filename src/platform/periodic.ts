// A task that runs every `intervalMs` of the injected clock, one round at a time (the next round is
// scheduled when the previous one ends, so rounds never overlap), and stops cleanly.
import type { Logger, TimerHandle, Timers } from './env.js';

export class Periodic {
  private timer: TimerHandle | undefined;
  private round: Promise<unknown> | undefined;
  private stopped = false;

  constructor(
    private readonly timers: Timers,
    private readonly log: Logger,
    readonly id: string,
    private readonly intervalMs: number,
    private readonly runOnce: () => Promise<unknown>,
  ) {}

  start(): void {
    const tick = () => {
      if (this.stopped) return;
      this.round = this.runOnce().catch((e: unknown) => this.log.warn({ task: this.id, err: (e as Error).message }, 'periodic task failed'));
      void this.round.then(() => {
        if (!this.stopped) this.timer = this.timers.after(this.intervalMs, tick);
      });
    };
    this.timer = this.timers.after(this.intervalMs, tick);
  }

  /** Cancels the next round and waits for the one in progress. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.timer?.cancel();
    await this.round;
  }
}
