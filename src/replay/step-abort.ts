/**
 * The abort handle of one step attempt. Its AbortSignal is created only when
 * the step body reads `signal` (lazy-abort.ts: an AbortController and its
 * listeners cost ~15 µs a step, and most bodies never look): aborting
 * before that just records the reason, and a signal read later is born
 * aborted.
 */
import { LazyAbort } from './lazy-abort.ts';

export class StepAbort extends LazyAbort {
  private rejectRace: ((reason: unknown) => void) | undefined;

  /** After the signal (if read) fired, `race` rejects with `reason`. */
  protected override aborting(reason: unknown): void {
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
