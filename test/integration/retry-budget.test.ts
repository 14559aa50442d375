/**
 * A step's retry budget (`retry.maxElapsed`) on the test kit's virtual
 * clock: no attempt begins past it, counted from the first attempt across
 * the releases between attempts (each retry is a new execution, maybe on
 * another worker), with `pauseAfter` the run is parked instead, and an
 * operator's resume starts a new budget; a template step takes it too.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { z } from 'zod';
import { StepFailedError, ValidationError } from '../../src/errors.ts';
import { connectTemplates } from '../../src/templates/client.ts';
import { templateWorkflow } from '../../src/templates/compile.ts';
import { createStepRegistry } from '../../src/templates/registry.ts';
import { createTestEnv, type TestEnv } from '../../src/testing/env.ts';
import { defineWorkflow } from '../../src/workflow/define.ts';
import { waitFor } from '../helpers/wait.ts';

// Every minute, for at most five and a half: attempts at 0, 1, … 5 minutes.
const budget = { maxAttempts: 100, backoff: 'constant', initialDelay: '1 minute', jitter: 0, maxElapsed: '5 minutes 30 seconds' } as const;
const begun: number[] = [];

const poll = defineWorkflow({ name: 'budget-poll', input: z.object({}) }, async (ctx) => {
  try {
    await ctx.step('settlement', () => {
      begun.push(Date.now());
      throw new Error('not settled yet');
    }, { retry: budget });
    return 'settled';
  } catch (error) {
    return `${(error as Error).name} after ${(error as StepFailedError).attempts}`;
  }
});

let lateBodies = 0;
const late = defineWorkflow({ name: 'budget-late', input: z.object({}) }, async (ctx) => {
  try {
    await ctx.step('settlement', () => {
      lateBodies++;
      throw new Error('not settled yet');
    }, { retry: { maxAttempts: 100, backoff: 'constant', initialDelay: '1 minute', jitter: 0, maxElapsed: '5 minutes' } });
    return 'settled';
  } catch (error) {
    return `${(error as Error).name} after ${(error as StepFailedError).attempts}: ${(error as Error).message}`;
  }
});

let parkedAttempts = 0;
const parked = defineWorkflow({ name: 'budget-parked', input: z.object({}), pauseAfter: 50 }, async (ctx) =>
  ctx.step('settlement', () => {
    parkedAttempts++;
    throw new Error('not settled yet');
  }, { retry: budget }));

const registry = createStepRegistry().registerStep('flaky', () => {
  throw new Error('down');
});

let env: TestEnv;
before(async () => {
  env = await createTestEnv({ workflows: [poll, parked, late, templateWorkflow('budgeted', registry)] });
});
after(() => env.close());

describe('retry.maxElapsed', () => {
  it('fails the step once the next attempt would begin past the budget: 6 attempts of a minute each in 5.5 minutes', async () => {
    assert.equal(await env.runToEnd(poll, {}, { timeout: '60s' }), 'StepFailedError after 6');
    const steps = await env.pool.query<{ attempts: number; status: string }>(
      `select attempts, status from trellis.steps where name = 'settlement' and run_id = (select id from trellis.runs where workflow = 'budget-poll')`);
    assert.deepEqual(steps.rows, [{ attempts: 6, status: 'failed' }]);
  });

  it('a retry that would begin past the budget (the run was paused through it) does not run its body: the step fails', async () => {
    const run = await env.client.start(late, {});
    await waitFor(async () => lateBodies === 1 && (await env.client.get(run.id))?.status === 'pending', { what: 'the first attempt failed, its retry due in a minute' });
    await env.client.pause(run.id, 'held over the budget');
    await env.advance('10 minutes');
    await env.client.resume(run.id);
    assert.match(await run.result({ timeout: '20s' }) as string,
      /^StepFailedError after 1: step "settlement" failed after 1 attempt\(s\): step "settlement": its retry budget \(maxElapsed 5 minutes\) ran out before attempt 2 could begin$/);
    assert.equal(lateBodies, 1, 'the late attempt did not run');
  });

  it('with pauseAfter parks the run when the budget runs out; a resume starts a new budget', async () => {
    const run = await env.client.start(parked, {});
    await env.drive(run, { timeout: '60s' }).catch(() => undefined);
    await env.waitFor(run, 'paused');
    assert.equal(parkedAttempts, 6);
    await env.client.resume(run.id);
    await env.drive(run, { timeout: '60s' }).catch(() => undefined);
    await env.waitFor(run, 'paused');
    assert.equal(parkedAttempts, 12, 'six more attempts after the resume');
  });

  it('a template step takes it; a workflow\'s own retry policy refuses it', async () => {
    const templates = connectTemplates(env.client, registry);
    await templates.set('budgeted', { steps: [{ name: 'flaky', retry: budget, onFailure: 'continue' }] });
    const run = await templates.start('budgeted', {});
    const done = await env.drive(run, { timeout: '60s' });
    assert.deepEqual((done.output as { failed: string[] }).failed, ['flaky']);
    const { rows } = await env.pool.query<{ attempts: number }>('select attempts from trellis.steps where run_id = $1 and name = $2', [run.id, 'flaky']);
    assert.deepEqual(rows, [{ attempts: 6 }]);
    assert.throws(() => defineWorkflow({ name: 'wf-budget', input: z.object({}), retry: { maxElapsed: '1 hour' } }, async () => 1),
      (e: unknown) => e instanceof ValidationError && /maxElapsed bounds a step's retries/.test(e.message));
  });
});
