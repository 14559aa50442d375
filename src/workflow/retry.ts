/**
 * Retry policies for steps and workflows: constant or exponential backoff
 * with a cap and jitter, a maximum number of attempts, and errors that are
 * never retried.
 */
import { NonRetryableError, RetryAfterError } from '../errors.ts';
import { type Duration, toMs } from '../protocol/duration.ts';

/**
 * How a failed step (or workflow attempt) is retried.
 *
 * @example
 * await ctx.step('sync', () => fetchJson('https://crm.example/sync'), {
 *   retry: { maxAttempts: 8, backoff: 'exponential', initialDelay: '2s', factor: 3, maxDelay: '10 minutes', jitter: 0.1 },
 * });
 */
export interface RetryPolicy {
  /**
   * Total attempts including the first (default 3 for steps, 1 for workflows).
   *
   * @example
   * const policy: trellis.RetryPolicy = { maxAttempts: 5 };
   */
  maxAttempts?: number;
  /**
   * 'exponential' (default) or 'constant'.
   *
   * @example
   * const policy: trellis.RetryPolicy = { backoff: 'constant', initialDelay: '30s' };
   */
  backoff?: 'exponential' | 'constant';
  /**
   * Delay before the second attempt (default 1s).
   *
   * @example
   * const policy: trellis.RetryPolicy = { initialDelay: '500ms' };
   */
  initialDelay?: Duration;
  /**
   * Growth per attempt for exponential backoff (default 2).
   *
   * @example
   * const policy: trellis.RetryPolicy = { backoff: 'exponential', factor: 4 };
   */
  factor?: number;
  /**
   * Upper bound of any delay (default 5 minutes, or `initialDelay` when that is longer).
   *
   * @example
   * const policy: trellis.RetryPolicy = { maxAttempts: 20, maxDelay: '1 hour' };
   */
  maxDelay?: Duration;
  /**
   * Randomise each delay by ± this fraction (0–1, default 0.2).
   *
   * @example
   * const policy: trellis.RetryPolicy = { jitter: 0 }; // exact delays
   */
  jitter?: number;
  /**
   * Return false to fail at once for this error.
   *
   * @example
   * const policy: trellis.RetryPolicy = { retryIf: (error) => !(error instanceof TypeError) };
   */
  retryIf?: (error: unknown) => boolean;
}

export const DEFAULT_STEP_RETRY: Required<Omit<RetryPolicy, 'retryIf'>> = {
  maxAttempts: 3,
  backoff: 'exponential',
  initialDelay: 1000,
  factor: 2,
  maxDelay: 300_000,
  jitter: 0.2,
};

/** True if `error` must not be retried (NonRetryableError, or one marked `nonRetryable`). */
export function isNonRetryable(error: unknown): boolean {
  return error instanceof NonRetryableError
    || (typeof error === 'object' && error !== null && (error as { nonRetryable?: unknown }).nonRetryable === true);
}

/**
 * The delay before attempt `attempt + 1`, or null when the policy says stop.
 * `random` is injected so the computation is testable.
 */
export function nextDelay(
  policy: RetryPolicy | undefined,
  attempt: number,
  error: unknown,
  defaults: Required<Omit<RetryPolicy, 'retryIf'>> = DEFAULT_STEP_RETRY,
  random: () => number = Math.random,
): number | null {
  const p = { ...defaults, ...policy };
  if (isNonRetryable(error)) return null;
  if (policy?.retryIf && !policy.retryIf(error)) return null;
  if (attempt >= p.maxAttempts) return null;
  if (error instanceof RetryAfterError) return Math.max(0, Math.round(error.retryAfterMs));
  const initial = toMs(p.initialDelay, 'initialDelay');
  // An explicit initialDelay above the default cap raises the cap with it; an explicit maxDelay wins.
  const cap = policy?.maxDelay !== undefined ? toMs(policy.maxDelay, 'maxDelay') : Math.max(toMs(p.maxDelay, 'maxDelay'), initial);
  const base = p.backoff === 'constant' ? initial : initial * p.factor ** (attempt - 1);
  const jitter = Math.min(Math.max(p.jitter, 0), 1);
  const spread = base * jitter * (random() * 2 - 1);
  return Math.round(Math.min(cap, Math.max(0, base + spread)));
}
