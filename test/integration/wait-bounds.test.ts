/**
 * Waits bounded to times a timer can be set for (outside audit): a finite
 * but huge sleep, signal-wait timeout or waitForRun timeout, and a
 * sleepUntil past year 9999, are a ValidationError in the code that records
 * nothing (before, the worker process crashed when the run parked, and the
 * run crashed every worker that claimed it); a wait recorded with such a
 * time before the bound parks at the last time a wait can hold instead of
 * crashing the worker.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { z } from 'zod';
import { ValidationError } from '../../src/errors.ts';
import { createTestEnv, type TestEnv } from '../../src/testing/env.ts';
import { defineWorkflow } from '../../src/workflow/define.ts';
import { waitFor } from '../helpers/wait.ts';

const huge = defineWorkflow({ name: 'wb-huge', input: z.object({ other: z.string() }) }, async (ctx, { other }) => {
  const refused: string[] = [];
  const attempt = async (what: string, wait: () => Promise<unknown>) => {
    try {
      await wait();
      refused.push(`${what}: waited`);
    } catch (error) {
      refused.push(`${what}: ${error instanceof ValidationError ? 'ValidationError' : String(error)}`);
    }
  };
  await attempt('sleep', () => ctx.sleep('forever', 1e20));
  await attempt('sleep in years', () => ctx.sleep('long', '100000 years'));
  await attempt('sleepUntil', () => ctx.sleepUntil('far', new Date(Date.UTC(10000, 0, 1))));
  await attempt('signal', () => ctx.waitForSignal('never', { timeout: 1e20 }));
  await attempt('run', () => ctx.waitForRun(other, { timeout: 1e20 }));
  // Recorded nothing: the next call is call 0.
  await ctx.step('after', () => 'ok');
  return refused;
});

const napper = defineWorkflow({ name: 'wb-nap', input: z.object({}) }, async (ctx) => {
  await ctx.sleep('nap', '1 hour');
  return 'woke';
});

let env: TestEnv;
before(async () => {
  env = await createTestEnv({ workflows: [huge, napper] });
});
after(() => env.close());

describe('wait bounds', () => {
  it('a wait past year 9999 is a ValidationError that records nothing; the worker goes on', async () => {
    const other = await env.client.start(napper, {});
    const run = await env.client.start(huge, { other: other.id });
    assert.deepEqual(await run.result({ timeout: '20s' }), [
      'sleep: ValidationError', 'sleep in years: ValidationError', 'sleepUntil: ValidationError', 'signal: ValidationError', 'run: ValidationError',
    ]);
    const { rows } = await env.pool.query(`select seq, name from trellis.steps where run_id = $1 order by seq`, [run.id]);
    assert.deepEqual(rows, [{ seq: 0, name: 'after' }]);
    await env.client.cancel(other.id);
  });

  it('a wait recorded with a time past the bound parks at the last time a wait can hold', async () => {
    const run = await env.client.start(napper, {});
    await env.waitFor(run, 'waiting', { timeout: '20s' });
    // As a wait recorded before the bound would be.
    await env.pool.query(`update trellis.steps set output = '{"until": 1e20}' where run_id = $1 and kind = 'sleep'`, [run.id]);
    await env.client.signal(run.id, 'poke', {});
    // Woken, replayed and parked again (not failed, not crashed).
    await waitFor(async () => {
      const r = await env.client.get(run.id);
      return r?.status === 'waiting' && r.runAt?.getUTCFullYear() === 9999;
    }, { what: 'the run to park again at the end of year 9999' });
    const { rows } = await env.pool.query(`select count(*)::int as n from trellis.steps where run_id = $1 and kind = 'signal'`, [run.id]);
    assert.equal(rows[0].n, 0);
    await env.client.cancel(run.id);
  });
});
