/**
 * Retry policies for steps and workflows: constant or exponential backoff
 * with a cap and jitter, a maximum number of attempts, and errors that are
 * never retried.
 */
import { NonRetryableError, quoteValue, RetryAfterError, ValidationError } from '../errors.ts';
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
  maxAttempts?: number | undefined;
  /**
   * 'exponential' (default) or 'constant'.
   *
   * @example
   * const policy: trellis.RetryPolicy = { backoff: 'constant', initialDelay: '30s' };
   */
  backoff?: 'exponential' | 'constant' | undefined;
  /**
   * Delay before the second attempt (default 1s).
   *
   * @example
   * const policy: trellis.RetryPolicy = { initialDelay: '500ms' };
   */
  initialDelay?: Duration | undefined;
  /**
   * Growth per attempt for exponential backoff (default 2).
   *
   * @example
   * const policy: trellis.RetryPolicy = { backoff: 'exponential', factor: 4 };
   */
  factor?: number | undefined;
  /**
   * Upper bound of any delay (default 5 minutes, or `initialDelay` when that is longer).
   *
   * @example
   * const policy: trellis.RetryPolicy = { maxAttempts: 20, maxDelay: '1 hour' };
   */
  maxDelay?: Duration | undefined;
  /**
   * Randomise each delay by ± this fraction (0–1, default 0.2).
   *
   * @example
   * const policy: trellis.RetryPolicy = { jitter: 0 }; // exact delays
   */
  jitter?: number | undefined;
  /**
   * Steps only: stop retrying once the next attempt would begin more than
   * this long after the step's first attempt began (engine time, across
   * worker restarts and releases), whatever `maxAttempts` says: a budget for
   * the step with all its retries (ewf's step timeout). A retry that begins
   * late (its worker died, the run was paused) past it does not run: the
   * step fails with TimeoutError. The attempt under way is not cut short:
   * give it a `timeout` for that. An operator's resume of a parked step
   * starts a new budget.
   *
   * @example
   * const policy: trellis.RetryPolicy = { maxAttempts: 100, initialDelay: '30s', backoff: 'constant', maxElapsed: '10 minutes' };
   */
  maxElapsed?: Duration | undefined;
  /**
   * Return false to fail at once for this error.
   *
   * @example
   * const policy: trellis.RetryPolicy = { retryIf: (error) => !(error instanceof TypeError) };
   */
  retryIf?: ((error: unknown) => boolean) | undefined;
}

/** Every field of a retry policy but retryIf and maxElapsed (no default: none), each given: the defaults a policy is merged over. */
export type RetryDefaults = { [K in Exclude<keyof RetryPolicy, 'retryIf' | 'maxElapsed'>]-?: Exclude<RetryPolicy[K], undefined> };

export const DEFAULT_STEP_RETRY: RetryDefaults = {
  maxAttempts: 3,
  backoff: 'exponential',
  initialDelay: 1000,
  factor: 2,
  maxDelay: 300_000,
  jitter: 0.2,
};

/** The longest delay a retry can take: what the engine's release takes (`delay_ms`, 1000 years of 365 days). */
export const MAX_RETRY_DELAY_MS = 31_536_000_000_000;

/** 1000 years as a duration reads them (365.25 days each): the longest delay a policy may name; delays are clamped to the above. */
const THOUSAND_YEARS_MS = toMs('1000 years');

const POLICY_KEYS = new Set(['maxAttempts', 'backoff', 'initialDelay', 'factor', 'maxDelay', 'jitter', 'retryIf', 'maxElapsed']);

/**
 * `policy` if it is a retry policy, else ValidationError naming `what` and
 * the field: maxAttempts a whole number from 1, backoff 'exponential' or
 * 'constant', delays durations (at most 1000 years), factor a number from 1,
 * jitter from 0 to 1, retryIf a function, maxElapsed a duration (not in a
 * workflow's or hook's policy: `steps: false`), no other keys. Checked where a
 * policy is given (a definition, a step's options), so a bad one is never
 * met later, when a failed attempt asks it for the next delay.
 *
 * @example
 * checkRetryPolicy({ maxAttempts: 5, initialDelay: '2s' }, 'retry of step charge');
 */
export function checkRetryPolicy(policy: unknown, what: string, { steps = true }: { steps?: boolean | undefined } = {}): RetryPolicy | undefined {
  if (policy === undefined) return undefined;
  if (typeof policy !== 'object' || policy === null || Array.isArray(policy)) {
    throw new ValidationError(`${what} must be an object, not ${quoteValue(policy)}`);
  }
  const p = policy as Record<string, unknown>;
  for (const key of Object.keys(p)) {
    if (!POLICY_KEYS.has(key)) throw new ValidationError(`${what}: unknown option ${quoteValue(key)}`);
  }
  const bad = (field: string, rule: string) => new ValidationError(`${what}: ${field} must be ${rule}, not ${quoteValue(p[field])}`);
  if (p.maxAttempts !== undefined && !(Number.isSafeInteger(p.maxAttempts) && (p.maxAttempts as number) >= 1)) throw bad('maxAttempts', 'a whole number from 1');
  if (p.backoff !== undefined && p.backoff !== 'exponential' && p.backoff !== 'constant') throw bad('backoff', "'exponential' or 'constant'");
  for (const field of ['initialDelay', 'maxDelay'] as const) {
    if (p[field] !== undefined && toMs(p[field] as Duration, `${what}: ${field}`) > THOUSAND_YEARS_MS) throw bad(field, 'at most 1000 years');
  }
  if (p.factor !== undefined && !(typeof p.factor === 'number' && Number.isFinite(p.factor) && p.factor >= 1)) throw bad('factor', 'a number from 1');
  if (p.jitter !== undefined && !(typeof p.jitter === 'number' && p.jitter >= 0 && p.jitter <= 1)) throw bad('jitter', 'a number from 0 to 1');
  if (p.retryIf !== undefined && typeof p.retryIf !== 'function') throw bad('retryIf', 'a function');
  if (p.maxElapsed !== undefined) {
    if (!steps) throw new ValidationError(`${what}: maxElapsed bounds a step's retries; a workflow's or a hook's policy takes maxAttempts`);
    const ms = toMs(p.maxElapsed as Duration, `${what}: maxElapsed`);
    if (ms <= 0 || ms > THOUSAND_YEARS_MS) throw bad('maxElapsed', 'a duration longer than 0 and at most 1000 years');
  }
  return policy as RetryPolicy;
}

/** True if `error` must not be retried (NonRetryableError, or one marked `nonRetryable`). */
export function isNonRetryable(error: unknown): boolean {
  return error instanceof NonRetryableError
    || (typeof error === 'object' && error !== null && (error as { nonRetryable?: unknown }).nonRetryable === true);
}

/**
 * The delay before attempt `attempt + 1`, or null when the policy says stop.
 * `random` is injected so the computation is testable. `elapsedMs`: how long
 * ago the first attempt began, for the policy's `maxElapsed` (a step's).
 */
export function nextDelay(
  policy: RetryPolicy | undefined,
  attempt: number,
  error: unknown,
  defaults: RetryDefaults = DEFAULT_STEP_RETRY,
  random: () => number = Math.random,
  elapsedMs?: number,
): number | null {
  const delay = delayBefore(policy, attempt, error, defaults, random);
  if (delay === null || policy?.maxElapsed === undefined || elapsedMs === undefined) return delay;
  // The next attempt would begin past the budget: stop now rather than wait for nothing.
  return elapsedMs + delay > toMs(policy.maxElapsed, 'maxElapsed') ? null : delay;
}

function delayBefore(
  policy: RetryPolicy | undefined,
  attempt: number,
  error: unknown,
  defaults: RetryDefaults,
  random: () => number,
): number | null {
  // A field given as undefined keeps its default (a spread would copy the
  // undefined over it: maxAttempts undefined retried for ever).
  const p = { ...defaults };
  for (const [key, value] of Object.entries(policy ?? {})) if (value !== undefined && key in p) (p as Record<string, unknown>)[key] = value;
  if (isNonRetryable(error)) return null;
  if (policy?.retryIf && !askRetryIf(policy.retryIf, error)) return null;
  if (attempt >= p.maxAttempts) return null;
  if (error instanceof RetryAfterError) {
    // As asked, within what a release can take (NaN: at once).
    return Math.min(MAX_RETRY_DELAY_MS, Math.max(0, Math.round(error.retryAfterMs) || 0));
  }
  const initial = toMs(p.initialDelay, 'initialDelay');
  // An explicit initialDelay above the default cap raises the cap with it; an explicit maxDelay wins.
  const cap = policy?.maxDelay !== undefined ? toMs(policy.maxDelay, 'maxDelay') : Math.max(toMs(p.maxDelay, 'maxDelay'), initial);
  // Bounded before the jitter: a large factor's power is Infinity, and Infinity × 0 jitter is NaN.
  const base = Math.min(p.backoff === 'constant' ? initial : initial * p.factor ** (attempt - 1), 2 * MAX_RETRY_DELAY_MS);
  const jitter = Math.min(Math.max(p.jitter, 0), 1);
  const spread = base * jitter * (random() * 2 - 1);
  return Math.round(Math.min(cap, MAX_RETRY_DELAY_MS, Math.max(0, base + spread)));
}

/** A `retryIf` that throws says "do not retry": the attempt's own error fails the call. */
function askRetryIf(retryIf: (error: unknown) => boolean, error: unknown): boolean {
  try {
    return retryIf(error);
  } catch {
    return false;
  }
}
