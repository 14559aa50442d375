import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { z } from 'zod';
import { defineWorkflow } from '../../src/workflow/define.ts';
import { NonRetryableError, StepFailedError, WorkflowFailedError } from '../../src/errors.ts';
import { type Engine, startEngine, useEngine } from '../helpers/engine.ts';

const calls = new Map<string, number>();
const bump = (k: string) => calls.set(k, (calls.get(k) ?? 0) + 1);

const threeSteps = defineWorkflow({ name: 'three-steps', input: z.object({ n: z.number() }) }, async (ctx, { n }) => {
  const a = await ctx.step('add', () => n + 1);
  const b = await ctx.step('double', () => a * 2);
  const c = await ctx.step('square', () => b * b);
  return { a, b, c };
});

// Fails its second step once (retry backoff 20ms), which forces a replay from
// the top on the next claim: earlier steps and recorded values must be reused.
const replayed = defineWorkflow({ name: 'replayed', input: z.object({ id: z.string() }) }, async (ctx, { id }) => {
  const first = await ctx.step('first', () => {
    bump(`${id}:first`);
    return 'one';
  });
  const when = ctx.now().toISOString();
  const rnd = ctx.random();
  const uid = ctx.uuid();
  const looped: number[] = [];
  for (let i = 0; i < 3; i++) looped.push(await ctx.step('loop', () => (bump(`${id}:loop`), i)));
  const parallel = await Promise.all(['x', 'y', 'z'].map((k) => ctx.step(`par-${k}`, () => (bump(`${id}:par`), k))));
  const flaky = await ctx.step('flaky', ({ attempt }) => {
    bump(`${id}:flaky`);
    if (attempt === 1) throw new Error('transient');
    return attempt;
  }, { retry: { initialDelay: 20, maxAttempts: 3 } });
  return { first, when, rnd, uid, looped, parallel, flaky, attempt: ctx.attempt };
});

const failing = defineWorkflow({ name: 'failing', input: z.object({ mode: z.enum(['nonretryable', 'exhaust', 'caught']) }) },
  async (ctx, { mode }) => {
    if (mode === 'caught') {
      try {
        await ctx.step('bad', () => {
          throw new NonRetryableError('nope');
        });
      } catch (error) {
        return { caught: error instanceof StepFailedError ? error.step : 'other' };
      }
    }
    return ctx.step('bad', () => {
      bump(`failing:${mode}`);
      throw mode === 'nonretryable' ? new NonRetryableError('card declined') : new Error('always');
    }, { retry: { maxAttempts: 2, initialDelay: 10 } });
  });

const fx = useEngine({ workflows: [threeSteps, replayed, failing] });

describe('a workflow run', () => {
  it('runs three steps to completion and records each once', async () => {
    const run = await fx.engine.client.start(threeSteps, { n: 2 });
    assert.deepEqual(await run.result({ timeout: '10s' }), { a: 3, b: 6, c: 36 });
    const history = await fx.engine.client.history(run.id);
    assert.deepEqual(history.map((s) => [s.seq, s.name, s.status, s.attempts, s.output]), [
      [0, 'add', 'completed', 1, 3],
      [1, 'double', 'completed', 1, 6],
      [2, 'square', 'completed', 1, 36],
    ]);
    const got = await fx.engine.client.get(run.id);
    assert.equal(got?.status, 'completed');
    assert.equal(got?.attempt, 1);
    assert.ok(got?.finishedAt instanceof Date);
  });

  it('replays from the top after a durable retry without re-running completed steps', async () => {
    const run = await fx.engine.client.start(replayed, { id: 'r1' });
    const out = await run.result({ timeout: '10s' });
    assert.equal(out.first, 'one');
    assert.deepEqual(out.looped, [0, 1, 2]);
    assert.deepEqual(out.parallel, ['x', 'y', 'z']);
    assert.equal(out.flaky, 2);
    assert.equal(out.attempt, 2, 'the retry was a second claim of the run');
    assert.equal(calls.get('r1:first'), 1);
    assert.equal(calls.get('r1:loop'), 3);
    assert.equal(calls.get('r1:par'), 3);
    assert.equal(calls.get('r1:flaky'), 2);
    const history = await fx.engine.client.history(run.id);
    const byName = (n: string) => history.find((s) => s.name === n);
    assert.equal(new Date(byName('now')?.output as number).toISOString(), out.when, 'now() replayed');
    assert.equal(byName('random')?.output, out.rnd, 'random() replayed');
    assert.equal(byName('uuid')?.output, out.uid, 'uuid() replayed');
    assert.equal(byName('flaky')?.attempts, 2);
  });

  it('fails a step at once on NonRetryableError and fails the run with the step error', async () => {
    const run = await fx.engine.client.start(failing, { mode: 'nonretryable' });
    await assert.rejects(run.result({ timeout: '10s' }), (e: unknown) => {
      assert.ok(e instanceof WorkflowFailedError);
      assert.match(e.message, /card declined/);
      return true;
    });
    assert.equal(calls.get('failing:nonretryable'), 1);
    const [step] = await fx.engine.client.history(run.id);
    assert.equal(step?.status, 'failed');
    assert.equal(step?.attempts, 1);
    const row = await fx.engine.client.get(run.id);
    assert.equal(row?.status, 'failed');
    assert.equal((row?.error as { code: string }).code, 'step_failed');
  });

  it('retries a step up to maxAttempts, then fails it', async () => {
    const run = await fx.engine.client.start(failing, { mode: 'exhaust' });
    await assert.rejects(run.result({ timeout: '10s' }), WorkflowFailedError);
    assert.equal(calls.get('failing:exhaust'), 2);
    const [step] = await fx.engine.client.history(run.id);
    assert.equal(step?.attempts, 2);
  });

  it('lets the workflow catch a failed step', async () => {
    const run = await fx.engine.client.start(failing, { mode: 'caught' });
    assert.deepEqual(await run.result({ timeout: '10s' }), { caught: 'bad' });
  });
});

describe('ctx.sideEffect', () => {
  const observed: string[] = [];
  // A side effect, then a step that fails once: the durable retry replays the
  // function from the top, where the side effect must return its recorded value.
  const minting = defineWorkflow({ name: 'minting', input: z.object({ id: z.string() }) }, async (ctx, { id }) => {
    const token = await ctx.sideEffect('mint-token', () => {
      bump(`${id}:mint`);
      return `token-${crypto.randomUUID()}`;
    });
    const unnamed = await ctx.sideEffect(() => (bump(`${id}:unnamed`), Math.random()));
    observed.push(token);
    const seenByRetry = await ctx.step('flaky', ({ attempt }) => {
      bump(`${id}:flaky`);
      if (attempt === 1) throw new Error('transient');
      return token;
    }, { retry: { initialDelay: 20, maxAttempts: 3 } });
    return { token, unnamed, seenByRetry, attempt: ctx.attempt };
  });
  let sideEngine: Engine;
  before(async () => {
    sideEngine = await startEngine(fx.db, { workflows: [minting] });
  });
  after(() => sideEngine.stop());

  it('runs the function once and replays its recorded value after a durable retry', async () => {
    const run = await sideEngine.client.start(minting, { id: 's1' });
    const out = await run.result({ timeout: '10s' });
    assert.equal(out.attempt, 2, 'the retry was a second claim, so the function was replayed');
    assert.equal(calls.get('s1:flaky'), 2);
    assert.equal(calls.get('s1:mint'), 1);
    assert.equal(calls.get('s1:unnamed'), 1);
    assert.equal(observed.length, 2, 'the workflow body ran twice');
    assert.deepEqual(observed, [out.token, out.token]);
    assert.equal(out.seenByRetry, out.token);
    const history = await sideEngine.client.history(run.id);
    const mint = history.find((s) => s.name === 'mint-token');
    assert.equal(mint?.kind, 'side_effect');
    assert.equal(mint?.output, out.token);
    assert.equal(mint?.attempts, 1);
    assert.equal(history.filter((s) => s.kind === 'side_effect').length, 2);
  });
});
