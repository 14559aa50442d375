/**
 * The abort handle of one step attempt. Its AbortSignal is created only when
 * the step body reads `signal` (an AbortController and its listeners cost
 * ~15 µs a step, and most bodies never look): aborting before that just
 * records the reason, and a signal read later is born aborted.
 */
export class StepAbort {
  private controller: AbortController | undefined;
  private rejectRace: ((reason: unknown) => void) | undefined;
  aborted = false;
  reason: unknown;

  get signal(): AbortSignal {
    if (!this.controller) {
      this.controller = new AbortController();
      if (this.aborted) this.controller.abort(this.reason);
    }
    return this.controller.signal;
  }

  /** Abort once: the signal (if read) fires and `race` rejects with `reason`. */
  abort(reason: unknown): void {
    if (this.aborted) return;
    this.aborted = true;
    this.reason = reason;
    this.controller?.abort(reason);
    this.rejectRace?.(reason);
  }

  /** `promise`, or a rejection with the abort reason if the attempt is aborted first. */
  race<T>(promise: Promise<T>): Promise<T> {
    if (this.aborted) return Promise.reject(this.reason);
    return new Promise<T>((resolve, reject) => {
      this.rejectRace = reject;
      promise.then(resolve, reject);
    });
  }
}
