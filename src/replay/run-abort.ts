/**
 * The abort handle of one execution: the worker aborts it when it stops
 * executing the run (lease lost, shutdown, the run claimed again), and the
 * replay halts and aborts its step attempts. Its AbortSignal (`ctx.signal`)
 * is created only when read (lazy-abort.ts): an AbortController with the
 * replay's listener cost several µs a run and most workflows never look.
 */
import { LazyAbort } from './lazy-abort.ts';

export class RunAbort extends LazyAbort {
  /** The replay's reaction to the abort (set while it runs). */
  private listener: ((reason: unknown) => void) | undefined;

  /** Call `listener` once at the abort (undefined: no longer). */
  listen(listener: ((reason: unknown) => void) | undefined): void {
    this.listener = listener;
  }

  /**
   * A signal read before the abort fires at it after the listener (the
   * replay halts before the code hears of the abort): the listener is the
   * signal's first.
   */
  protected override created(signal: AbortSignal): void {
    signal.addEventListener('abort', () => this.listener?.(this.reason), { once: true });
  }

  /** Without a signal, the listener is called directly. */
  protected override aborting(reason: unknown, signalled: boolean): void {
    if (!signalled) this.listener?.(reason);
  }
}
