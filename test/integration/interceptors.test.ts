import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { z } from 'zod';
import { ValidationError } from '../../src/errors.ts';
import { createTestEnv, type TestEnv } from '../../src/testing/env.ts';
import { defineWorkflow } from '../../src/workflow/define.ts';
import type { WorkflowInterceptors } from '../../src/workflow/run-control.ts';

const calls: string[] = [];
const interceptors: WorkflowInterceptors = {
  beforeWorkflow: async ({ attempt, input }) => {
    await new Promise((resolve) => setTimeout(resolve, 5)); // an async hook must not look like a stuck workflow
    calls.push(`before workflow #${attempt} ${JSON.stringify(input)}`);
  },
  afterWorkflow: (_run, error, output) => { calls.push(`after workflow ${error ? 'failed' : JSON.stringify(output)}`); },
  beforeStep: ({ step, stepAttempt }) => { calls.push(`before ${step} #${stepAttempt}`); },
  afterStep: ({ step }, error) => { calls.push(`after ${step}${error ? ' (failed)' : ''}`); },
};

const audited = defineWorkflow({ name: 'audited', input: z.object({ n: z.number() }), interceptors }, async (ctx, { n }) => {
  const a = await ctx.step('load', () => n + 1);
  const b = await ctx.step('flaky', ({ attempt }) => {
    calls.push(`flaky body #${attempt}`);
    if (attempt === 1) throw new Error('first attempt fails');
    return a * 2;
  }, { retry: { maxAttempts: 2, initialDelay: '1 minute', jitter: 0 } });
  await ctx.sleep('cool-off', '1 hour');
  ctx.now(); // a recorded value is not a step: no hooks
  return ctx.step('save', () => b + 1);
});

const throwingHooks = defineWorkflow({ name: 'throwing-hooks', input: z.object({}),
  interceptors: { beforeStep: () => { throw new Error('hook bug'); }, afterWorkflow: () => { throw new Error('hook bug'); } } },
async (ctx) => ctx.step('work', () => 'done'));

describe('in-process interceptors of a code workflow', () => {
  let env: TestEnv;
  before(async () => {
    env = await createTestEnv({ workflows: [audited, throwingHooks] });
  });
  after(async () => env?.close());

  it('are called in a stable order: workflow, then each step attempt that runs, never for replayed steps', async () => {
    calls.length = 0;
    assert.equal(await env.runToEnd(audited, { n: 1 }), 5);
    assert.deepEqual(calls, [
      'before workflow #1 {"n":1}',
      'before load #1', 'after load',
      'before flaky #1', 'flaky body #1', 'after flaky (failed)',
      // the retry is a new execution: load is replayed (no hooks)
      'before workflow #2 {"n":1}',
      'before flaky #2', 'flaky body #2', 'after flaky',
      // the sleep ends the execution; the next one replays load and flaky
      'before workflow #3 {"n":1}',
      'before save #1', 'after save',
      'after workflow 5',
    ]);
  });

  it('a hook that throws is logged and does not fail the run', async () => {
    assert.equal(await env.runToEnd(throwingHooks, {}), 'done');
  });

  it('refuses an unknown hook or a hook that is not a function', () => {
    assert.throws(() => defineWorkflow({ name: 'x', input: z.object({}), interceptors: { beforeRun: () => {} } as never }, async () => 1), ValidationError);
    assert.throws(() => defineWorkflow({ name: 'x', input: z.object({}), interceptors: { afterStep: 'log' } as never }, async () => 1), ValidationError);
  });
});
