/**
 * What a failed step attempt leads to: retry later, fail the call, or park
 * the run (the dead letter). Pure: no I/O, no clock; randomness (the retry
 * jitter) comes from `random`. attempt.ts does what it says.
 */
import { CancelledError, isTrellisError } from '../errors.ts';
import type { StepKind } from '../protocol/history.ts';
import { DEFAULT_STEP_RETRY, nextDelay, type RetryPolicy } from '../workflow/retry.ts';
import { isParkRunRequest } from '../workflow/run-control.ts';

/** A failed attempt, as the decision needs it. */
export interface FailedAttempt {
  error: unknown;
  kind: StepKind;
  /** The step's attempt number (1, 2, …, never reset). */
  attempt: number;
  /** Attempts made before an operator resumed the step from the dead letter; policies count from there. */
  base: number;
  retry: RetryPolicy | undefined;
  /** The definition's `pauseAfter`. */
  pauseAfter: number | undefined;
  /** A cancel request reached the run. */
  cancelRequested: boolean;
  /** How long ago (engine time) the step's first counted attempt began, for the policy's maxElapsed. */
  elapsedMs?: number | undefined;
}

export type AttemptDecision =
  /** Try again after `delayMs` (the run is released meanwhile). */
  | { action: 'retry'; delayMs: number }
  /** Record the call failed; `cancelled`: the error is the run's cancellation (rethrown as is). */
  | { action: 'fail'; cancelled: boolean }
  /** Park the run with the error (pauseAfter reached, the policy ran out first, or the step asked to). */
  | { action: 'park' };

export function decideAttempt(f: FailedAttempt, random: () => number = Math.random): AttemptDecision {
  const { error, kind } = f;
  const cancelled = error instanceof CancelledError && f.cancelRequested;
  // Errors that say "do not retry": the run's cancellation, bad input, a payload over the limit.
  const final = cancelled || (isTrellisError(error) && (error.code === 'validation' || error.code === 'payload_too_large'));
  // A side effect runs at most once.
  const policy = kind === 'side_effect' ? { maxAttempts: 1 } : f.retry;
  const counted = f.attempt - f.base;
  const delay = final ? null : nextDelay(policy, counted, error, DEFAULT_STEP_RETRY, random, f.elapsedMs);
  // The dead letter: after pauseAfter consecutive failed attempts, or when
  // the retry policy ran out first, park the run with the error instead of
  // retrying or failing. Errors that say "do not retry" (non-retryable,
  // validation, cancellation) and side effects fail as usual.
  const retryable = !final && kind !== 'side_effect' && nextDelay({ ...policy, maxAttempts: Infinity }, counted, error, DEFAULT_STEP_RETRY, random) !== null;
  if (isParkRunRequest(error) || (f.pauseAfter !== undefined && retryable && (delay === null || counted >= f.pauseAfter))) return { action: 'park' };
  if (delay === null) return { action: 'fail', cancelled };
  return { action: 'retry', delayMs: delay };
}
