/**
 * Workflow code that misuses ctx (audit): durable calls made inside a step's
 * body, a failing step never awaited, a cancel reason that is not text. Each
 * gets a clear, typed answer; none hangs the run or ends the worker.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { z } from 'zod';
import { StepFailedError, ValidationError } from '../../src/errors.ts';
import type { WorkflowContext } from '../../src/workflow/context.ts';
import { defineWorkflow } from '../../src/workflow/define.ts';
import { useEngine } from '../helpers/engine.ts';

const INSIDE: Record<string, (ctx: WorkflowContext) => unknown> = {
  sleep: (ctx) => ctx.sleep('pause', '1s'),
  step: (ctx) => ctx.step('inner', () => 1),
  signal: (ctx) => ctx.waitForSignal('go', { timeout: '1s' }),
  now: (ctx) => ctx.now(),
  value: (ctx) => ctx.setValue('k', 1),
  continueAsNew: (ctx) => ctx.continueAsNew({ which: 'again' }),
};
let bodies = 0;

const inside = defineWorkflow({ name: 'misuse-inside-step', input: z.object({ which: z.string() }) }, async (ctx, { which }) => {
  try {
    await ctx.step('outer', async () => {
      bodies++;
      await INSIDE[which]!(ctx);
      return 'no';
    });
    return 'not refused';
  } catch (error) {
    assert.ok(error instanceof StepFailedError);
    return error.message;
  }
});

let background = 0;
const unawaited = defineWorkflow({ name: 'misuse-unawaited', input: z.object({}) }, async (ctx) => {
  void ctx.step('background', () => { background++; throw new Error('background boom'); }, { retry: { maxAttempts: 1 } });
  await ctx.step('after', () => new Promise((resolve) => setTimeout(resolve, 100)));
  return 'returned';
});

const waiter = defineWorkflow({ name: 'misuse-waiter', input: z.object({}) }, async (ctx) => {
  await ctx.waitForSignal('never');
});

/** Every durable call with a misspelt option, each caught: the name of the refused option, or 'taken'. */
const misspelt = defineWorkflow({ name: 'misuse-misspelt', input: z.object({}) }, async (ctx) => {
  const tried = async (call: () => Promise<unknown>) => call().then(() => 'taken', (e: unknown) => (e instanceof ValidationError ? /unknown option\(s\) (\w+)/.exec(e.message)?.[1] : String(e)));
  const out = [
    await tried(() => ctx.step('s', () => 1, { retyr: { maxAttempts: 2 } } as never)),
    await tried(() => ctx.transaction('t', async () => 1, { isolaton: 'serializable' } as never)),
    await tried(() => ctx.waitForSignal('go', { timeuot: '1s' } as never)),
    await tried(() => ctx.child(unawaited, {}, { kye: 'x' } as never)),
    await tried(() => ctx.waitForRun('00000000-0000-4000-8000-000000000000', { timout: '1s' } as never)),
    await tried(() => ctx.continueAsNew({}, { keepHistroy: true } as never)),
  ];
  // Nothing above took a call number: the first durable call is #0.
  await ctx.step('after', () => 'ok');
  return out;
});

const fx = useEngine({ workflows: [inside, unawaited, waiter, misspelt] });

describe('ctx misused', () => {
  for (const which of Object.keys(INSIDE)) {
    it(`ctx.${which} inside a step's body fails the step for good with a ValidationError that says so, at once`, async () => {
      bodies = 0;
      const run = await fx.engine.client.start(inside, { which });
      const message = await run.result({ timeout: '10s' });
      assert.match(message, /was called inside the body of step "outer": durable calls/);
      assert.equal(bodies, 1, 'not retried');
      const [outer] = await fx.engine.client.history(run.id);
      assert.deepEqual([outer?.name, outer?.status, (outer?.error as { name: string }).name], ['outer', 'failed', 'ValidationError']);
    });
  }

  it('a failing step the workflow never awaits is recorded failed; the worker (this process) goes on', async () => {
    const run = await fx.engine.client.start(unawaited, {});
    assert.equal(await run.result({ timeout: '10s' }), 'returned');
    assert.equal(background, 1);
    const history = await fx.engine.client.history(run.id);
    assert.deepEqual(history.map((h) => [h.name, h.status]), [['background', 'failed'], ['after', 'completed']]);
  });

  it('a durable call or client call with an option it does not take is refused with ValidationError, recording or changing nothing', async () => {
    const run = await fx.engine.client.start(misspelt, {});
    assert.deepEqual(await run.result({ timeout: '20s' }), ['retyr', 'isolaton', 'timeuot', 'kye', 'timout', 'keepHistroy']);
    const history = await fx.engine.client.history(run.id);
    assert.deepEqual(history.map((h) => [h.seq, h.name]), [[0, 'after']]);
    const c = fx.engine.client;
    for (const [what, call] of [
      ['list', () => c.list({ workfow: 'misuse-misspelt' } as never)],
      ['result', () => c.result(run.id, { timeuot: '1s' } as never)],
      ['signal', () => c.signal(run.id, 'go', null, { idd: 'x' } as never)],
      ['events', async () => c.events({ kind: ['completed'] } as never).next()],
    ] as const) {
      await assert.rejects((call as () => Promise<unknown>)(), (e: unknown) => e instanceof ValidationError && /unknown option/.test(e.message), what);
    }
  });

  it('cancel and pause refuse a reason that is not text, and change nothing', async () => {
    const run = await fx.engine.client.start(waiter, {});
    await assert.rejects(fx.engine.client.cancel(run.id, { a: 1 } as never), ValidationError);
    await assert.rejects(fx.engine.client.pause(run.id, 42 as never), ValidationError);
    const row = await fx.engine.client.get(run.id);
    assert.equal(row?.cancelRequestedAt ?? null, null);
    await fx.engine.client.cancel(run.id, 'done with it');
  });

  it('a missing or malformed run, workflow or signal is a ValidationError from every client call, never a TypeError', async () => {
    const { client } = fx.engine;
    const run = await client.start(waiter, {});
    for (const ref of [undefined, null, 42, {}, { workflow: 7, key: 'k' }]) {
      await assert.rejects(client.signal(ref as never, 'go', 1), ValidationError, `signal to ${JSON.stringify(ref)}`);
      await assert.rejects(client.cancel(ref as never), ValidationError, `cancel of ${JSON.stringify(ref)}`);
      await assert.rejects(client.fork(ref as never), ValidationError, `fork of ${JSON.stringify(ref)}`);
    }
    for (const workflow of [undefined, null, 42, {}]) {
      await assert.rejects(client.start(workflow as never, {}), ValidationError, `start of ${JSON.stringify(workflow)}`);
      await assert.rejects(client.startMany(workflow as never, [{ input: {} }]), ValidationError, `startMany of ${JSON.stringify(workflow)}`);
      await assert.rejects(client.schedules.set('s', { cron: '0 * * * *', workflow } as never), ValidationError);
    }
    for (const signal of [undefined, null, 42, {}]) await assert.rejects(client.signal(run.id, signal as never, 1 as never), ValidationError);
    assert.equal((await client.get(run.id))?.cancelRequestedAt ?? null, null, 'nothing reached the run');
    await client.cancel(run.id);
  });
});
