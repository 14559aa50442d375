import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { z } from 'zod';
import { ValidationError } from '../../src/errors.ts';
import { createTestEnv, type TestEnv } from '../../src/testing/env.ts';
import { defineWorkflow } from '../../src/workflow/define.ts';
import type { WorkflowInterceptors } from '../../src/workflow/run-control.ts';
import { createClient } from '../../src/client/client.ts';
import { silentLogger } from '../../src/protocol/logger.ts';
import { createWorker } from '../../src/worker/worker.ts';
import { useFreshDatabase } from '../helpers/database-fixture.ts';
import { deferred, startEngine } from '../helpers/engine.ts';
import { waitFor } from '../helpers/wait.ts';

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

describe('an in-process hook that never returns', () => {
  const fx = useFreshDatabase();
  let entered = deferred();
  const stuckHook = defineWorkflow({
    name: 'stuck-hook',
    input: z.object({}),
    interceptors: {
      beforeWorkflow: () => {
        entered.resolve();
        return new Promise(() => {}); // never settles, heeds no signal
      },
    },
  }, async (ctx) => ctx.step('work', () => 'done'));

  it('does not hold up a cancellation: the code goes on without it and the run ends cancelled', { timeout: 60_000 }, async () => {
    entered = deferred();
    const engine = await startEngine(fx.db, { workflows: [stuckHook] });
    try {
      const run = await engine.client.start(stuckHook, {});
      await entered.promise;
      await engine.client.cancel(run.id, 'no longer needed');
      await waitFor(async () => (await engine.client.get(run.id))?.status === 'cancelled', { what: 'the run cancelled', timeout: 20_000 });
    } finally {
      await engine.stop();
    }
  });

  it('does not hold up the worker\'s stop: it returns within its timeout, and the run\'s lease is given back', { timeout: 60_000 }, async () => {
    entered = deferred();
    const worker = createWorker({ pool: fx.db.pool, workflows: [stuckHook], logger: silentLogger });
    await worker.start();
    const client = createClient({ pool: fx.db.pool, logger: silentLogger, handoff: false });
    try {
      const run = await client.start(stuckHook, {});
      await entered.promise;
      const stopped = await Promise.race([worker.stop({ timeout: '1s' }).then(() => 'stopped'), new Promise((r) => setTimeout(() => r('still stopping'), 15_000))]);
      assert.equal(stopped, 'stopped');
      const after = await client.get(run.id);
      assert.equal(after?.status, 'pending', 'given back for another worker');
    } finally {
      await worker.stop();
      await client.close();
    }
  });
});

describe('afterStep of an attempt that times out', () => {
  const fx = useFreshDatabase();
  const seen: string[] = [];
  let gate = deferred();
  const timed = defineWorkflow({
    name: 'timed-step-hooks',
    input: z.object({}),
    interceptors: {
      afterStep: ({ step }, error) => { seen.push(`after ${step}${error ? ` (${(error as Error).name})` : ''}`); },
      afterWorkflow: (_run, error) => { seen.push(`after workflow${error ? ' (failed)' : ''}`); },
    },
  }, async (ctx) => ctx.step('slow', async () => { await gate.promise; return 'late'; }, { timeout: 300, retry: { maxAttempts: 1 } }));

  it('gets the TimeoutError when the attempt times out, before afterWorkflow, and never a late success', { timeout: 60_000 }, async () => {
    gate = deferred();
    const engine = await startEngine(fx.db, { workflows: [timed] });
    try {
      const run = await engine.client.start(timed, {});
      await assert.rejects(run.result({ timeout: '20s' }));
      assert.deepEqual(seen, ['after slow (TimeoutError)', 'after workflow (failed)']);
      gate.resolve();
      for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve));
      assert.deepEqual(seen, ['after slow (TimeoutError)', 'after workflow (failed)']);
    } finally {
      await engine.stop();
    }
  });
});
