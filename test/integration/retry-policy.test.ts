/**
 * A retry policy is checked where it is given (audit: a bad one was met only
 * when a failed attempt asked it for a delay, and the run failed as "stuck"
 * with its step left `running`, or with a malformed checkpoint op).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { z } from 'zod';
import { RetryAfterError, StepFailedError, ValidationError } from '../../src/errors.ts';
import { defineStateMachine } from '../../src/state-machine/define.ts';
import { defineActivity, defineWorkflow } from '../../src/workflow/define.ts';
import type { RetryPolicy } from '../../src/workflow/retry.ts';
import { useEngine } from '../helpers/engine.ts';
import { waitFor } from '../helpers/wait.ts';

const BAD: Record<string, unknown> = {
  'negative initialDelay': { initialDelay: -1 },
  'maxAttempts 0': { maxAttempts: 0 },
  'maxAttempts 1.5': { maxAttempts: 1.5 },
  'factor 0': { factor: 0 },
  'an unknown option': { retries: 3 },
};
let bodies = 0;

const steps = defineWorkflow({ name: 'retry-policy-steps', input: z.object({ which: z.string() }) }, async (ctx, { which }) => {
  try {
    await ctx.step('s', () => { bodies++; throw new Error('x'); }, { retry: BAD[which] as RetryPolicy });
    return 'not reached';
  } catch (error) {
    return `${(error as Error).name}: ${(error as Error).message}`;
  }
});

let attempts = 0;
const odd = defineWorkflow({ name: 'retry-policy-odd', input: z.object({ which: z.string() }) }, async (ctx, { which }) => {
  try {
    await ctx.step('s', () => {
      attempts++;
      if (which === 'nan' && attempts === 1) throw new RetryAfterError('later', Number.NaN);
      if (which === 'nan') return 'second attempt';
      throw new Error('the real error');
    }, { retry: { maxAttempts: 3, retryIf: which === 'throwing' ? () => { throw new Error('bug in retryIf'); } : undefined } });
    return 'done';
  } catch (error) {
    return `${(error as Error).name} after ${(error as StepFailedError).attempts}: ${(error as Error).message}`;
  }
});

const far = defineWorkflow({ name: 'retry-policy-far', input: z.object({}) }, async (ctx) =>
  ctx.step('s', () => { throw new RetryAfterError('come back much later', 1e16); }, { retry: { maxAttempts: 2 } }));

const fx = useEngine({ workflows: [steps, odd, far] });

describe('retry policies', () => {
  for (const which of Object.keys(BAD)) {
    it(`a step given a policy with ${which} rejects with ValidationError, catchably, and its body never runs`, async () => {
      bodies = 0;
      const run = await fx.engine.client.start(steps, { which });
      assert.match(await run.result({ timeout: '10s' }), /^ValidationError: retry of step s: /);
      assert.equal(bodies, 0);
    });
  }

  it('a definition with such a policy is refused at once: workflow, activity, machine, hooks', () => {
    const input = z.object({});
    assert.throws(() => defineWorkflow({ name: 'bad-retry', input, retry: { maxAttempts: 0 } }, async () => 1), ValidationError);
    assert.throws(() => defineActivity({ name: 'bad-retry-activity', queue: 'q', input, retry: { initialDelay: -5 } }, () => 1), ValidationError);
    assert.throws(() => defineStateMachine({ name: 'bad-retry-machine', status: z.enum(['a']), object: input, retry: { jitter: 3 } }), ValidationError);
    assert.throws(() => defineWorkflow({ name: 'bad-retry-hooks', input, hooks: { onComplete: () => undefined, retry: { factor: -1 } } }, async () => 1),
      ValidationError);
  });

  it('a retryIf that throws fails the step for good with its own error, catchably', async () => {
    const run = await fx.engine.client.start(odd, { which: 'throwing' });
    assert.match(await run.result({ timeout: '10s' }), /^StepFailedError after 1: .*the real error/);
  });

  it('a RetryAfterError of NaN retries at once', async () => {
    attempts = 0;
    const run = await fx.engine.client.start(odd, { which: 'nan' });
    assert.equal(await run.result({ timeout: '10s' }), 'done');
  });

  it('a RetryAfterError far beyond 1000 years releases the run for 1000 years instead of failing it as malformed', async () => {
    const run = await fx.engine.client.start(far, {});
    const row = await waitFor(async () => {
      const { rows } = await fx.db.pool.query(
        `select r.status, extract(epoch from r.run_at - now()) / 86400 / 365 as years, s.status as step
           from trellis.runs r join trellis.steps s on s.bucket = r.bucket and s.run_id = r.id where r.id = $1`, [run.id]);
      return rows[0]?.step === 'retrying' && rows[0].status === 'pending' ? rows[0] : undefined;
    }, { what: 'the run released for its retry' });
    assert.ok(Number(row.years) > 999 && Number(row.years) <= 1000, `released for ${row.years} years`);
  });
});
