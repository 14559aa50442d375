/**
 * Timeouts of any length, and none of 0 (the audit of 6 December): a step's
 * per-attempt timeout of 25 days or more, and result()'s, ended at once
 * (Node's setTimeout holds at most 2^31 - 1 ms); a timeout of 0 ended every
 * attempt before it began; a hooks.timeout of a day or more made every hook
 * claim of the worker fail (the delivery lease is the timeout plus 30 s, at
 * most a day), for every workflow it served.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { z } from 'zod';
import { createClient } from '../../src/client/client.ts';
import { ValidationError } from '../../src/errors.ts';
import type { Duration } from '../../src/protocol/duration.ts';
import { silentLogger } from '../../src/protocol/logger.ts';
import { createWorker, type Worker } from '../../src/worker/worker.ts';
import { defineWorkflow } from '../../src/workflow/define.ts';
import { freshDatabase, type TestDatabase } from '../helpers/db.ts';
import { deferred } from '../helpers/engine.ts';
import { waitFor } from '../helpers/wait.ts';

let gate = deferred();
const slowish = defineWorkflow({ name: 'long-timeouts', input: z.object({ timeout: z.union([z.string(), z.number()]) }) }, async (ctx, { timeout }) => {
  let zero = 'accepted';
  try {
    await ctx.step('zero', () => 'ran', { timeout: 0 });
  } catch (error) {
    zero = `${(error as Error).constructor.name}: ${(error as Error).message}`;
  }
  const waited = await ctx.step('gated', async () => { await gate.promise; return 'done'; }, { timeout: timeout as Duration });
  return { zero, waited };
});

let db: TestDatabase;
let worker: Worker;
before(async () => {
  db = await freshDatabase();
  worker = createWorker({ pool: db.pool, workflows: [slowish], pollInterval: 50, logger: silentLogger });
  await worker.start();
});
after(async () => {
  gate.resolve();
  await worker?.stop({ timeout: '30 days' });
  await db?.close();
});

describe('timeouts of any length', () => {
  it('a step timeout and a result() timeout of 30 days and 7 years wait; a step timeout of 0 is refused and records nothing', async () => {
    const client = createClient({ pool: db.pool, logger: silentLogger });
    try {
      for (const timeout of ['30 days', '7 years', 2 ** 31 + 1]) {
        gate = deferred();
        const run = await client.start(slowish, { timeout });
        const result = run.result({ timeout: '30 days' });
        // The step is in its attempt (the gate holds it) before the gate opens.
        await waitFor(async () => (await client.history(run.id)).some((s) => s.name === 'gated' && s.status === 'running'),
          { what: `step gated running (timeout ${timeout})` });
        gate.resolve();
        assert.deepEqual(await result, { zero: 'ValidationError: timeout of step zero must be longer than 0, not 0', waited: 'done' }, String(timeout));
        assert.deepEqual((await client.history(run.id)).map((s) => s.name), ['gated'], 'the refused step recorded nothing');
      }
    } finally {
      await client.close();
    }
  });

  it('hooks.timeout is refused at definition unless from 1 ms to 12 hours', () => {
    for (const timeout of ['1 day', '13 hours', 0, 'soon']) {
      assert.throws(() => defineWorkflow({ name: 'hooked', input: z.object({}), hooks: { onComplete: () => undefined, timeout: timeout as never } }, async () => 1),
        ValidationError, String(timeout));
    }
    assert.ok(defineWorkflow({ name: 'hooked', input: z.object({}), hooks: { onComplete: () => undefined, timeout: '12 hours' } }, async () => 1));
  });
});
