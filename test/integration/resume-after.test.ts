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

let env: TestEnv;
before(async () => {
  env = await createTestEnv({ workflows: [push, flaky], resumes: { interval: '50ms' } });
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
      .step('new', () => 'done', 'done').pauseAfterErrors(2).resumeAfter('15 minutes').build();
    assert.equal(machine.workflow.resumeAfterMs, 900_000);
    for (const bad of [0, 'soon', '2000 years', -1]) {
      assert.throws(() => defineWorkflow({ name: 'bad', input: z.object({}), resumeAfter: bad as never }, async () => 1),
        (e: unknown) => e instanceof ValidationError && /resumeAfter/.test(e.message), String(bad));
    }
    assert.throws(() => createWorker({ pool: env.pool, workflows: [push], resumes: true as never }), /resumes must be false or an object/);
    assert.throws(() => createWorker({ pool: env.pool, workflows: [push], resumes: { batch: 0 } }), /resumes.batch/);
  });
});
