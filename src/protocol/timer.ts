/**
 * A timer for any duration a user may give. Node's `setTimeout` holds at
 * most 2^31 - 1 ms (24.8 days): a longer delay fires after 1 ms instead,
 * with only a warning. Every in-process timer whose delay comes from a
 * user's duration (a step's or a hook's timeout, `result()`'s timeout, a
 * worker's stop timeout) goes through `longTimeout`, which waits in steps.
 */

/** The longest delay `setTimeout` takes as it is. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * Call `fn` once after `ms` milliseconds, however long that is; returns a
 * function that cancels it. With `unref`, the timer does not keep the
 * process alive.
 *
 * @example
 * const cancel = longTimeout(() => controller.abort(), toMs('30 days'));
 */
export function longTimeout(fn: () => void, ms: number, unref = false): () => void {
  let timer: NodeJS.Timeout | undefined;
  const until = Date.now() + ms;
  const arm = (left: number) => {
    timer = setTimeout(() => {
      const rest = until - Date.now();
      if (rest > 0) arm(rest);
      else fn();
    }, Math.min(Math.max(0, left), MAX_TIMER_MS));
    if (unref) timer.unref();
  };
  arm(ms);
  return () => clearTimeout(timer);
}

/**
 * Wait until every promise of `promises` settled, or `ms` passed, whichever
 * comes first: true if they all settled in time. The timer is cleared
 * either way.
 *
 * @example
 * if (!(await settledWithin(inFlight, 5000))) for (const c of controllers) c.abort();
 */
export async function settledWithin(promises: Iterable<Promise<unknown>>, ms: number): Promise<boolean> {
  let cancel: (() => void) | undefined;
  try {
    return await Promise.race([
      Promise.allSettled(promises).then(() => true),
      new Promise<boolean>((resolve) => {
        cancel = longTimeout(() => resolve(false), ms);
      }),
    ]);
  } finally {
    cancel?.();
  }
}
