/**
 * `resumeAfter` end to end on the test kit's virtual clock (decision 0038): a
 * run its code parked (pauseAfter) is resumed by the workers' resumes duty
 * once its time has come, with a fresh count of attempts; an operator's
 * pause holds it; env.drive moves the clock to the resume; machines take it
 * too; bad options are refused.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { z } from 'zod';
import { captureIo } from '../../src/cli/io.ts';
import { main } from '../../src/cli/main.ts';
import { ValidationError } from '../../src/errors.ts';
import { defineStateMachine } from '../../src/state-machine/define.ts';
import { createTestEnv, type TestEnv } from '../../src/testing/env.ts';
import { defineWorkflow } from '../../src/workflow/define.ts';
import { createWorker } from '../../src/worker/worker.ts';
import { waitFor } from '../helpers/wait.ts';

let partnerDown = true;
let calls = 0;
const push = defineWorkflow({ name: 'ra-push', input: z.object({}), pauseAfter: 2, resumeAfter: '1 hour' }, async (ctx) =>
  ctx.step('push', () => {
    calls++;
    if (partnerDown) throw new Error('partner down');
    return `pushed after ${calls} calls`;
  }, { retry: { maxAttempts: 5, initialDelay: '1s', jitter: 0 } }));

let failuresLeft = 0;
const flaky = defineWorkflow({ name: 'ra-flaky', input: z.object({}), pauseAfter: 1, resumeAfter: '30 minutes' }, async (ctx) =>
  ctx.step('call', () => {
    if (failuresLeft-- > 0) throw new Error('not yet');
    return 'ok';
  }));

let cappedCalls = 0;
const capped = defineWorkflow({ name: 'ra-capped', input: z.object({}), pauseAfter: 1, resumeAfter: '1 hour', maxResumes: 2 }, async (ctx) =>
  ctx.step('call', () => {
    cappedCalls++;
    throw new Error('still broken');
  }));

let env: TestEnv;
before(async () => {
  env = await createTestEnv({ workflows: [push, flaky, capped], resumes: { interval: '50ms' } });
});
after(() => env.close());

describe('resumeAfter', () => {
  it('a parked run is resumed by the resumes duty once its time has come, and runs on with a fresh count', async () => {
    partnerDown = true;
    calls = 0;
    const run = await env.client.start(push, {});
    await env.waitFor(run, 'paused', { timeout: '20s' });
    assert.equal(calls, 2, 'parked after pauseAfter attempts');
    const parked = await env.client.get(run.id);
    const ahead = parked!.resumeAt!.getTime() - (await env.now()).getTime();
    assert.ok(ahead > 3_500_000 && ahead <= 3_600_000, `resumeAt ${ahead} ms ahead`);
    // Still down an hour later: resumed (by the worker's duty: the clock moved in SQL, not by the test kit), parked again.
    await env.pool.query(`select trellis.clock_advance('1 hour')`);
    await waitFor(async () => calls >= 4 && (await env.client.get(run.id))?.status === 'paused',
      { what: 'the run resumed by the duty and parked again' });
    assert.ok(env.worker.stats.resumed >= 1, 'the worker\'s duty resumed it');
    partnerDown = false;
    await env.pool.query(`select trellis.clock_advance('1 hour')`);
    assert.equal(await run.result({ timeout: '20s' }), 'pushed after 5 calls');
  });

  it('maxResumes: resumed automatically that many times, then parked for an operator, whose resume starts the count again', async () => {
    cappedCalls = 0;
    const run = await env.client.start(capped, {});
    await env.waitFor(run, 'paused', { timeout: '20s' });
    const state = async () => {
      const r = await env.client.get(run.id);
      return [r?.status, r?.autoResumes, r?.resumeAt !== null];
    };
    assert.deepEqual(await state(), ['paused', 0, true]);
    for (const n of [1, 2]) {
      await env.pool.query(`select trellis.clock_advance('1 hour')`);
      await waitFor(async () => cappedCalls === n + 1 && (await env.client.get(run.id))?.status === 'paused',
        { what: `automatic resume ${n} and the park after it` });
    }
    assert.deepEqual(await state(), ['paused', 2, false], 'the second automatic resume was the last: no resume_at');
    const io = captureIo({ DATABASE_URL: env.url });
    assert.equal(await main(['show', run.id], io), 0, io.stderr);
    assert.match(io.stdout, /^resumes {3}none due {2}\(2 automatic so far\)$/m, 'trellis show says so');
    await env.pool.query(`select trellis.clock_advance('3 hours')`);
    assert.equal(await env.pool.query(`select trellis.run_resume_due()`).then((r) => r.rows[0].run_resume_due), 0);
    assert.deepEqual([await state(), cappedCalls], [['paused', 2, false], 3]);
    // An operator's resume starts the count again: parked with a resume time once more.
    await env.client.resume(run.id);
    await waitFor(async () => cappedCalls === 4 && (await env.client.get(run.id))?.status === 'paused', { what: 'the park after the operator\'s resume' });
    assert.deepEqual(await state(), ['paused', 0, true]);
    await env.client.cancel(run.id);
  });

  it('an operator\'s pause of a parked run holds it past its resume time', async () => {
    partnerDown = true;
    const run = await env.client.start(push, {});
    await env.waitFor(run, 'paused', { timeout: '20s' });
    assert.ok((await env.client.get(run.id))?.resumeAt);
    await env.client.pause(run.id, 'investigating');
    assert.equal((await env.client.get(run.id))?.resumeAt, null);
    await env.advance('2 hours');
    assert.equal((await env.client.get(run.id))?.status, 'paused');
    await env.client.cancel(run.id);
  });

  it('env.drive moves the clock to a parked run\'s resume and resumes it', async () => {
    failuresLeft = 1;
    const t0 = (await env.now()).getTime();
    const done = await env.drive(await env.client.start(flaky, {}), { timeout: '30s' });
    assert.equal(done.status, 'completed');
    assert.ok((await env.now()).getTime() - t0 >= 1_800_000, 'the clock moved past the 30 minutes');
  });

  it('machines take it; bad values and options are refused', () => {
    const machine = defineStateMachine({ name: 'ra-machine', status: z.enum(['new', 'done']), object: z.object({}) })
      .step('new', () => 'done', 'done').pauseAfterErrors(2).resumeAfter('15 minutes', { maxResumes: 4 }).build();
    assert.deepEqual([machine.workflow.resumeAfterMs, machine.workflow.maxResumes], [900_000, 4]);
    for (const bad of [0, 1.5, -1, '3', 2_000_000]) {
      assert.throws(() => defineWorkflow({ name: 'bad', input: z.object({}), resumeAfter: '1 hour', maxResumes: bad as never }, async () => 1),
        (e: unknown) => e instanceof ValidationError && /maxResumes must be a whole number/.test(e.message), String(bad));
    }
    assert.throws(() => defineWorkflow({ name: 'bad', input: z.object({}), maxResumes: 3 }, async () => 1), /maxResumes needs resumeAfter/);
    assert.throws(() => defineWorkflow({ name: 'bad', input: z.object({}), resumeAfter: '1 hour', maxResumes: Number.NaN }, async () => 1), /not NaN/);
    const builder = () => defineStateMachine({ name: 'ra-machine', status: z.enum(['new', 'done']), object: z.object({}) }).step('new', () => 'done', 'done');
    for (const bad of [null, 'x', [], { maxResume: 3 }]) {
      assert.throws(() => builder().resumeAfter('1 hour', bad as never), (e: unknown) => e instanceof ValidationError && /resumeAfter's options/.test(e.message), JSON.stringify(bad));
    }
    for (const bad of [0, 'soon', '2000 years', -1]) {
      assert.throws(() => defineWorkflow({ name: 'bad', input: z.object({}), resumeAfter: bad as never }, async () => 1),
        (e: unknown) => e instanceof ValidationError && /resumeAfter/.test(e.message), String(bad));
    }
    assert.throws(() => createWorker({ pool: env.pool, workflows: [push], resumes: true as never }), /resumes must be false or an object/);
    assert.throws(() => createWorker({ pool: env.pool, workflows: [push], resumes: { batch: 0 } }), /resumes.batch/);
  });
});
