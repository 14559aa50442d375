/**
 * The test kit's clock moving while an execution runs: a timer recorded
 * before the move is due at its recorded time, not one delay after the
 * commit (the wait op carries the deadline, not a delay from the claim's
 * estimate of the clock).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { z } from 'zod';
import { createTestEnv, type TestEnv } from '../../src/testing/env.ts';
import { defineWorkflow } from '../../src/workflow/define.ts';
import { adminUrl } from '../helpers/db.ts';
import { deferred } from '../helpers/engine.ts';

let executions = 0;
const held = deferred();
const entered = deferred();
const poked = defineWorkflow({
  name: 'poked',
  input: z.object({}),
  interceptors: {
    // The second execution (woken by the signal) waits here, after its claim
    // read the clock, until the test has moved it.
    beforeWorkflow: async () => {
      if (++executions !== 2) return;
      entered.resolve();
      await held.promise;
    },
  },
}, async (ctx) => {
  const nap = ctx.sleep('nap', '10 minutes');
  await ctx.waitForSignal('poke');
  await nap;
  return 'rested';
});

let env: TestEnv;
before(async () => {
  // A lease longer than the move: the execution keeps its run through it.
  env = await createTestEnv({ workflows: [poked], leaseDuration: '1 hour', serverUrl: adminUrl() });
});
after(() => env.close());

describe('the virtual clock moved during an execution', () => {
  it('a sleep recorded before the move and passed by it is due at once when the execution parks', async () => {
    const run = await env.start(poked, {});
    await env.waitFor(run.id, 'waiting');
    await env.signal(run, 'poke', null);
    await entered.promise;
    await env.advance('11 minutes');
    held.resolve();
    assert.equal(await run.result({ timeout: '20s' }), 'rested');
    // Woken by the signal, parked past the nap's time, woken at once: three executions.
    assert.equal(executions, 3);
  });
});
