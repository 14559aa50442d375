/**
 * The abort handle of one execution: the worker aborts it when it stops
 * executing the run (lease lost, shutdown, the run claimed again), and the
 * replay halts and aborts its step attempts. Its AbortSignal (`ctx.signal`)
 * is created only when read, as a step's is (step-abort.ts): an
 * AbortController with the replay's listener cost several µs a run and most
 * workflows never look.
 */
export class RunAbort {
  private controller: AbortController | undefined;
  /** The replay's reaction to the abort (set while it runs). */
  private listener: ((reason: unknown) => void) | undefined;
  aborted = false;
  reason: unknown;

  /**
   * The signal of the execution. Read after the abort, it is born aborted
   * with the reason; read before, it fires at the abort, after the listener
   * (the replay halts before the code hears of the abort).
   */
  get signal(): AbortSignal {
    if (!this.controller) {
      const controller = new AbortController();
      if (this.aborted) controller.abort(this.reason);
      else controller.signal.addEventListener('abort', () => this.listener?.(this.reason), { once: true });
      this.controller = controller;
    }
    return this.controller.signal;
  }

  /** Call `listener` once at the abort (undefined: no longer). */
  listen(listener: ((reason: unknown) => void) | undefined): void {
    this.listener = listener;
  }

  /** Abort once: the listener runs, then the signal (if read) fires; `aborted` and `reason` are set first. */
  abort(reason: unknown): void {
    if (this.aborted) return;
    this.aborted = true;
    this.reason = reason;
    if (this.controller) this.controller.abort(reason);
    else this.listener?.(reason);
  }
}
