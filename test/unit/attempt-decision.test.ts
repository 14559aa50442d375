/**
 * The retry / park / fail decision for a failed step attempt
 * (src/replay/attempt-decision.ts): a pure function, so every branch is
 * checked here without a database or a clock.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CancelledError, NonRetryableError, PayloadTooLargeError, RetryAfterError, ValidationError } from '../../src/errors.ts';
import { decideAttempt, type FailedAttempt } from '../../src/replay/attempt-decision.ts';
import { ParkRunRequest } from '../../src/workflow/run-control.ts';

const noJitter = () => 0.5; // (random * 2 - 1) = 0: the delay is the backoff itself
const failed = (over: Partial<FailedAttempt> = {}): FailedAttempt => ({
  error: new Error('boom'), kind: 'step', attempt: 1, base: 0,
  retry: { maxAttempts: 3, backoff: 'exponential', initialDelay: 100, factor: 2 },
  pauseAfter: undefined, cancelRequested: false, ...over,
});

describe('decideAttempt', () => {
  it('retries a retryable error while attempts remain, with the policy backoff', () => {
    assert.deepEqual(decideAttempt(failed(), noJitter), { action: 'retry', delayMs: 100 });
    assert.deepEqual(decideAttempt(failed({ attempt: 2 }), noJitter), { action: 'retry', delayMs: 200 });
  });

  it('retries after the hint of a RetryAfterError', () => {
    assert.deepEqual(decideAttempt(failed({ error: new RetryAfterError('later', 1234) }), noJitter), { action: 'retry', delayMs: 1234 });
  });

  it('fails when the policy ran out of attempts', () => {
    assert.deepEqual(decideAttempt(failed({ attempt: 3 }), noJitter), { action: 'fail', cancelled: false });
  });

  it('counts attempts from the resume (base) after the dead letter', () => {
    assert.deepEqual(decideAttempt(failed({ attempt: 4, base: 3 }), noJitter), { action: 'retry', delayMs: 100 });
  });

  it('fails at once on a NonRetryableError, a ValidationError and a payload over the limit', () => {
    for (const error of [new NonRetryableError('no'), new ValidationError('bad'), new PayloadTooLargeError('big')]) {
      assert.deepEqual(decideAttempt(failed({ error }), noJitter), { action: 'fail', cancelled: false }, error.name);
    }
  });

  it('fails a side effect after its one attempt, whatever the policy', () => {
    assert.deepEqual(decideAttempt(failed({ kind: 'side_effect', retry: { maxAttempts: 10 } }), noJitter), { action: 'fail', cancelled: false });
  });

  it('fails with the cancellation itself when the run was cancelled, never parking it', () => {
    const error = new CancelledError('run cancelled');
    assert.deepEqual(decideAttempt(failed({ error, cancelRequested: true, pauseAfter: 1 }), noJitter), { action: 'fail', cancelled: true });
    // A CancelledError without a cancel request (a step's own) is an ordinary error.
    assert.deepEqual(decideAttempt(failed({ error }), noJitter), { action: 'retry', delayMs: 100 });
  });

  it('parks after pauseAfter failed attempts of a retryable error', () => {
    assert.deepEqual(decideAttempt(failed({ pauseAfter: 2, attempt: 1 }), noJitter), { action: 'retry', delayMs: 100 });
    assert.deepEqual(decideAttempt(failed({ pauseAfter: 2, attempt: 2 }), noJitter), { action: 'park' });
  });

  it('parks instead of failing when the policy runs out first and pauseAfter is set', () => {
    assert.deepEqual(decideAttempt(failed({ pauseAfter: 10, attempt: 3 }), noJitter), { action: 'park' });
  });

  it('does not park what may not be retried: non-retryable errors and side effects fail', () => {
    assert.deepEqual(decideAttempt(failed({ pauseAfter: 1, error: new NonRetryableError('no') }), noJitter), { action: 'fail', cancelled: false });
    assert.deepEqual(decideAttempt(failed({ pauseAfter: 1, kind: 'side_effect' }), noJitter), { action: 'fail', cancelled: false });
  });

  it('parks a step that asks for it (ParkRunRequest), without pauseAfter', () => {
    assert.deepEqual(decideAttempt(failed({ error: new ParkRunRequest('needs a human') }), noJitter), { action: 'park' });
  });

  it('stops retrying once the next attempt would begin past maxElapsed (fails, or parks with pauseAfter)', () => {
    const retry = { maxAttempts: 100, backoff: 'constant' as const, initialDelay: 60_000, maxElapsed: '5 minutes' as const };
    assert.deepEqual(decideAttempt(failed({ retry, attempt: 4, elapsedMs: 180_000 }), noJitter), { action: 'retry', delayMs: 60_000 });
    assert.deepEqual(decideAttempt(failed({ retry, attempt: 5, elapsedMs: 240_000 }), noJitter), { action: 'retry', delayMs: 60_000 }, 'begins exactly at 5 minutes');
    assert.deepEqual(decideAttempt(failed({ retry, attempt: 6, elapsedMs: 240_001 }), noJitter), { action: 'fail', cancelled: false });
    assert.deepEqual(decideAttempt(failed({ retry, attempt: 6, elapsedMs: 300_000, pauseAfter: 50 }), noJitter), { action: 'park' });
    // A RetryAfterError's delay counts too; without an elapsed time (no budget recorded) the policy alone decides.
    assert.deepEqual(decideAttempt(failed({ retry, error: new RetryAfterError('later', 200_000), elapsedMs: 120_000 }), noJitter),
      { action: 'fail', cancelled: false });
    assert.deepEqual(decideAttempt(failed({ retry, attempt: 6 }), noJitter), { action: 'retry', delayMs: 60_000 });
  });

  it('spreads the delay by the jitter drawn from random', () => {
    const policy = { maxAttempts: 3, initialDelay: 1000, jitter: 0.5 };
    assert.deepEqual(decideAttempt(failed({ retry: policy }), () => 0), { action: 'retry', delayMs: 500 });
    assert.deepEqual(decideAttempt(failed({ retry: policy }), () => 1), { action: 'retry', delayMs: 1500 });
  });
});
