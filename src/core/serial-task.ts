// A background task that never runs twice at once and never drops a request: a request made while it
// runs asks for one more run once it ends (however many came), so whatever that request was about
// (a void item kept, a cut learned) is looked at. Without it, a flag that makes a call during a run
// return at once loses the wakeup: the work waits for the next trigger, which may never come.

export class SerialTask {
  private running = false;
  private again = false;

  /** `onError` is told of a run that threw (the task stays usable; the next request runs again). */
  constructor(
    private readonly run: () => Promise<void>,
    private readonly onError: (err: unknown) => void,
  ) {}

  /** Runs the task now, or once more after the run in progress. */
  request(): void {
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = true;
    void this.loop();
  }

  /** Whether a run is in progress. */
  get busy(): boolean {
    return this.running;
  }

  private async loop(): Promise<void> {
    try {
      do {
        this.again = false;
        try {
          await this.run();
        } catch (err) {
          this.onError(err);
        }
      } while (this.again);
    } finally {
      this.running = false;
    }
  }
}
