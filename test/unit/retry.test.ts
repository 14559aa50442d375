import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { NonRetryableError, RetryAfterError, ValidationError } from '../../src/errors.ts';
import { toMs } from '../../src/protocol/duration.ts';
import { checkRetryPolicy, DEFAULT_STEP_RETRY, MAX_RETRY_DELAY_MS, nextDelay } from '../../src/workflow/retry.ts';

describe('durations', () => {
  it('parses numbers and human strings to milliseconds', () => {
    assert.equal(toMs(250), 250);
    assert.equal(toMs('30s'), 30_000);
    assert.equal(toMs('5 minutes'), 300_000);
    assert.equal(toMs('1 day'), 86_400_000);
    assert.equal(toMs('1.5h'), 5_400_000);
  });
  it('refuses anything else with ValidationError', () => {
    for (const bad of [-1, Number.NaN, '10 parsecs', 'soon', '', '5', Infinity]) {
      assert.throws(() => toMs(bad as never), ValidationError, String(bad));
    }
  });
});

describe('nextDelay', () => {
  const half = () => 0.5; // no jitter spread
  it('treats a field given as undefined as not given (the default applies; maxAttempts undefined retried for ever)', () => {
    const given = { maxAttempts: undefined, initialDelay: undefined, factor: undefined, maxDelay: undefined, jitter: undefined, backoff: undefined };
    const attempts = Array.from({ length: DEFAULT_STEP_RETRY.maxAttempts + 1 }, (_, i) => i + 1);
    assert.deepEqual(attempts.map((a) => nextDelay(given, a, new Error('x'), undefined, half)), attempts.map((a) => nextDelay({}, a, new Error('x'), undefined, half)));
    assert.equal(nextDelay(given, DEFAULT_STEP_RETRY.maxAttempts, new Error('x'), undefined, half), null);
  });
  it('grows exponentially from the initial delay up to the cap', () => {
    const policy = { maxAttempts: 10, initialDelay: 100, factor: 2, maxDelay: 1000 };
    assert.deepEqual([1, 2, 3, 4, 5].map((a) => nextDelay(policy, a, new Error('x'), undefined, half)), [100, 200, 400, 800, 1000]);
  });
  it('keeps a constant delay for constant backoff', () => {
    const policy = { maxAttempts: 5, backoff: 'constant' as const, initialDelay: '2s' as const };
    assert.deepEqual([1, 2, 3].map((a) => nextDelay(policy, a, new Error('x'), undefined, half)), [2000, 2000, 2000]);
  });
  it('spreads delays by the jitter fraction', () => {
    const policy = { maxAttempts: 5, initialDelay: 1000, jitter: 0.2 };
    assert.equal(nextDelay(policy, 1, new Error('x'), undefined, () => 0), 800);
    assert.equal(nextDelay(policy, 1, new Error('x'), undefined, () => 1), 1200);
  });
  it('stops after maxAttempts, on NonRetryableError and when retryIf says no', () => {
    assert.equal(nextDelay({ maxAttempts: 3 }, 3, new Error('x')), null);
    assert.equal(nextDelay({ maxAttempts: 3 }, 1, new NonRetryableError('no')), null);
    assert.equal(nextDelay({ maxAttempts: 3, retryIf: (e) => (e as Error).message !== 'fatal' }, 1, new Error('fatal')), null);
    assert.notEqual(nextDelay({ maxAttempts: 3 }, 2, new Error('x')), null);
  });
  it('honours a RetryAfterError hint, rounded to whole milliseconds', () => {
    assert.equal(nextDelay({ maxAttempts: 3 }, 1, new RetryAfterError('429', 1500.6)), 1501);
  });
});

describe('nextDelay caps', () => {
  it('lets an initialDelay longer than the default cap through, and an explicit maxDelay still caps it', () => {
    const noJitter = () => 0.5;
    assert.equal(nextDelay({ initialDelay: '1 hour', jitter: 0 }, 1, new Error('x'), undefined, noJitter), 3_600_000);
    assert.equal(nextDelay({ initialDelay: '1 hour', maxDelay: '10 minutes', jitter: 0 }, 1, new Error('x'), undefined, noJitter), 600_000);
    assert.equal(nextDelay({ jitter: 0 }, 10, new Error('x'), { ...DEFAULT_STEP_RETRY, maxAttempts: 20 }, noJitter), 300_000, 'the default cap');
  });
});

describe('checkRetryPolicy', () => {
  it('takes a policy as documented, and nothing', () => {
    assert.equal(checkRetryPolicy(undefined, 'p'), undefined);
    const policy = { maxAttempts: 5, backoff: 'constant', initialDelay: '2s', factor: 3, maxDelay: '1 hour', jitter: 0, retryIf: () => true };
    assert.equal(checkRetryPolicy(policy, 'p'), policy);
  });
  for (const [field, bad] of [
    ['maxAttempts', 0], ['maxAttempts', 1.5], ['maxAttempts', -1], ['maxAttempts', Infinity], ['maxAttempts', '3'],
    ['backoff', 'linear'], ['initialDelay', -1], ['initialDelay', 'soon'], ['maxDelay', '1001 years'],
    ['factor', 0.5], ['factor', Number.NaN], ['jitter', 2], ['jitter', -0.1], ['retryIf', true], ['retries', 3],
    ['maxElapsed', 0], ['maxElapsed', '0s'], ['maxElapsed', 'a while'], ['maxElapsed', '1001 years'], ['maxElapsed', -5],
  ] as const) {
    it(`refuses ${field}: ${String(bad)} with ValidationError naming it`, () => {
      assert.throws(() => checkRetryPolicy({ [field]: bad }, 'retry of step s'), (e: Error) => e instanceof ValidationError && e.message.includes(field));
    });
  }
  it('takes maxElapsed for a step\'s policy and refuses it for a workflow\'s or a hook\'s', () => {
    assert.deepEqual(checkRetryPolicy({ maxElapsed: '10 minutes' }, 'p'), { maxElapsed: '10 minutes' });
    assert.throws(() => checkRetryPolicy({ maxElapsed: '10 minutes' }, 'workflow w: retry', { steps: false }),
      (e: Error) => e instanceof ValidationError && /maxElapsed bounds a step's retries/.test(e.message));
  });
  it('refuses what is not an object', () => {
    for (const bad of [null, 3, 'often', [1]]) assert.throws(() => checkRetryPolicy(bad, 'p'), ValidationError);
  });
});

describe('nextDelay with odd answers', () => {
  it('a retryIf that throws stops the retries', () => {
    assert.equal(nextDelay({ maxAttempts: 3, retryIf: () => { throw new Error('bug in retryIf'); } }, 1, new Error('x')), null);
  });
  it('a RetryAfterError delay is kept within 1000 years, and NaN means at once', () => {
    assert.equal(nextDelay({ maxAttempts: 3 }, 1, new RetryAfterError('later', 1e16)), MAX_RETRY_DELAY_MS);
    assert.equal(nextDelay({ maxAttempts: 3 }, 1, new RetryAfterError('later', Infinity)), MAX_RETRY_DELAY_MS);
    assert.equal(nextDelay({ maxAttempts: 3 }, 1, new RetryAfterError('later', Number.NaN)), 0);
  });
  it('an exponential backoff with a maxDelay of 1000 years stays within it', () => {
    assert.equal(nextDelay({ maxAttempts: 500, factor: 10, maxDelay: '1000 years', jitter: 0 }, 400, new Error('x')), MAX_RETRY_DELAY_MS);
  });
});
