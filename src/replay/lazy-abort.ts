/**
 * An abort handle whose AbortSignal is created only when read: an
 * AbortController (and its listeners) costs several µs, and most runs and
 * steps never look at their signal. Aborting before the signal exists only
 * records the reason; a signal read later is born aborted. Subclasses say
 * what else an abort does (run-abort.ts, step-abort.ts).
 */
export abstract class LazyAbort {
  private controller: AbortController | undefined;
  aborted = false;
  reason: unknown;

  /** The signal: fires at the abort if read before it, is born aborted if read after. */
  get signal(): AbortSignal {
    if (!this.controller) {
      const controller = new AbortController();
      if (this.aborted) controller.abort(this.reason);
      else this.created(controller.signal);
      this.controller = controller;
    }
    return this.controller.signal;
  }

  /** Abort once: `aborted` and `reason` are set, the signal (if read) fires, then `aborting` runs. */
  abort(reason: unknown): void {
    if (this.aborted) return;
    this.aborted = true;
    this.reason = reason;
    const signalled = this.controller !== undefined;
    this.controller?.abort(reason);
    this.aborting(reason, signalled);
  }

  /** The signal was just created, not yet aborted: its first listeners go here. */
  protected created(_signal: AbortSignal): void {}

  /** After the abort set its fields and fired the signal (`signalled`: there was one). */
  protected abstract aborting(reason: unknown, signalled: boolean): void;
}
