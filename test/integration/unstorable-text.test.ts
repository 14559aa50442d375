/**
 * Text jsonb cannot store — U+0000 and lone UTF-16 surrogates — and errors
 * whose properties cannot be read. A step's or a run's error is stored with
 * such characters replaced by U+FFFD (a failure must always be recordable);
 * a value (a step's result, a run's output or input, a value, a signal's
 * payload) that holds one is refused with ValidationError in the code, as a
 * BigInt is. Before, PostgreSQL refused the checkpoint that carried it: the
 * run's worker crashed on it, the run's lease ran out again and again (a
 * step allowed one attempt ran five times, a completed step ran again) and
 * the run was parked with a lease error instead of its own.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { z } from 'zod';
import { StepFailedError, ValidationError, WorkflowFailedError } from '../../src/errors.ts';
import { defineWorkflow } from '../../src/workflow/define.ts';
import { useEngine } from '../helpers/engine.ts';

const NUL = 'cannot parse record "ab\u0000cd"';
const LONE = 'half a pair \uD800 here';
const bodies = new Map<string, number>();
const count = (name: string) => bodies.set(name, (bodies.get(name) ?? 0) + 1);

/** An error whose message getter throws. */
function unreadable(): Error {
  const error = new Error('hidden');
  Object.defineProperty(error, 'message', { get() { throw new Error('getter boom'); } });
  return error;
}

const stepErrors = defineWorkflow({ name: 'unstorable-step-errors', input: z.object({ which: z.string() }) }, async (ctx, { which }) => {
  try {
    await ctx.step('throws', () => {
      count(`step-${which}`);
      throw which === 'nul' ? new Error(NUL) : which === 'lone' ? new Error(LONE) : unreadable();
    }, { retry: { maxAttempts: 1 } });
    return 'not reached';
  } catch (error) {
    assert.ok(error instanceof StepFailedError);
    return error.message;
  }
});

const runErrors = defineWorkflow({ name: 'unstorable-run-errors', input: z.object({ which: z.string() }) }, async (ctx, { which }) => {
  count(`run-${which}`);
  throw which === 'nul' ? new Error(NUL) : which === 'lone' ? new Error(LONE) : unreadable();
});

const values = defineWorkflow({ name: 'unstorable-values', input: z.object({ which: z.string() }) }, async (ctx, { which }) => {
  await ctx.step('charge', () => { count(`charge-${which}`); return 'charged'; });
  const bad = which === 'nul' ? NUL : LONE;
  const caught: string[] = [];
  try {
    await ctx.step('result', () => bad);
  } catch (error) {
    caught.push(`step: ${(error as Error).name} ${((error as StepFailedError).cause as Error | undefined)?.name}`);
  }
  try {
    await ctx.setValue('v', { bad });
  } catch (error) {
    caught.push(`value: ${(error as Error).name}`);
  }
  return caught;
});

const output = defineWorkflow({ name: 'unstorable-output', input: z.object({}) }, async () => NUL);

const fx = useEngine({ workflows: [stepErrors, runErrors, values, output] });

describe('text jsonb cannot store', () => {
  for (const which of ['nul', 'lone', 'getter']) {
    it(`a step error with ${which === 'getter' ? 'a message getter that throws' : `${which === 'nul' ? 'U+0000' : 'a lone surrogate'} in its message`} fails the step once, catchably, recorded`, async () => {
      const run = await fx.engine.client.start(stepErrors, { which });
      const message = await run.result({ timeout: '10s' });
      assert.equal(bodies.get(`step-${which}`), 1, 'the step ran once');
      const [step] = await fx.engine.client.history(run.id);
      assert.deepEqual([step?.status, step?.attempts], ['failed', 1]);
      const stored = (step?.error as { message: string }).message;
      if (which === 'getter') {
        assert.match(stored, /unreadable: getter boom/);
      } else {
        assert.equal(stored, (which === 'nul' ? NUL : LONE).replace(/\u0000|\uD800/, '\uFFFD'));
        assert.ok(message.includes('\uFFFD'), message);
      }
    });

    it(`a run that throws such an error (${which}) fails at once with it, not after its lease runs out`, async () => {
      const run = await fx.engine.client.start(runErrors, { which });
      await assert.rejects(run.result({ timeout: '10s' }), WorkflowFailedError);
      const row = await fx.engine.client.get(run.id);
      assert.deepEqual([row?.status, row?.attempt], ['failed', 1]);
      assert.equal(bodies.get(`run-${which}`), 1);
      assert.match((row?.error as { message: string }).message, which === 'getter' ? /unreadable: getter boom/ : /\uFFFD/);
    });
  }

  for (const which of ['nul', 'lone']) {
    it(`a step result or a value holding ${which === 'nul' ? 'U+0000' : 'a lone surrogate'} rejects with ValidationError in the code; the completed step does not run again`, async () => {
      const run = await fx.engine.client.start(values, { which });
      assert.deepEqual(await run.result({ timeout: '10s' }), ['step: StepFailedError ValidationError', 'value: ValidationError']);
      assert.equal(bodies.get(`charge-${which}`), 1, 'the completed step ran once');
      assert.deepEqual(await fx.engine.client.values(run.id), []);
    });
  }

  it('a run output holding U+0000 fails the run with ValidationError at once', async () => {
    const run = await fx.engine.client.start(output, {});
    await assert.rejects(run.result({ timeout: '10s' }), WorkflowFailedError);
    const row = await fx.engine.client.get(run.id);
    assert.deepEqual([row?.attempt, (row?.error as { name: string }).name], [1, 'ValidationError']);
  });

  it('an input or a signal payload holding one is refused with ValidationError and nothing is written', async () => {
    const before = Number((await fx.db.pool.query('select count(*) as n from trellis.runs')).rows[0].n);
    await assert.rejects(fx.engine.client.start(stepErrors, { which: NUL }), ValidationError);
    await assert.rejects(fx.engine.client.start(stepErrors, { which: LONE }), ValidationError);
    assert.equal(Number((await fx.db.pool.query('select count(*) as n from trellis.runs')).rows[0].n), before);
    const run = await fx.engine.client.start(stepErrors, { which: 'nul' });
    await assert.rejects(fx.engine.client.signal(run.id, 'go', { note: NUL }), ValidationError);
    assert.equal(Number((await fx.db.pool.query('select count(*) as n from trellis.signals where run_id = $1', [run.id])).rows[0].n), 0);
  });
});
