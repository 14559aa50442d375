/**
 * max_payload_bytes lowered while a worker runs (it read the limit when it
 * started): a write its own check let through is refused by the database;
 * the worker reads the limit again and executes the run again at once,
 * which then decides with the new limit. Before, the execution crashed on
 * every claim until the lease ran out, and the run was parked as a poison
 * pill after max_lease_expiries (found by the metadata audit).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { z } from 'zod';
import { createTestEnv, type TestEnv } from '../../src/testing/env.ts';
import { defineWorkflow } from '../../src/workflow/define.ts';

const outcome = (p: () => Promise<unknown>) => p().then(() => 'ok', (e: unknown) => (e as Error).constructor.name);

const big = defineWorkflow({ name: 'pl-big', input: z.object({}) }, async (ctx) => {
  await ctx.waitForSignal('go');
  return {
    metadata: await outcome(() => ctx.setMetadata({ a: 'x'.repeat(1500) })),
    step: await outcome(() => ctx.step('make', () => 'y'.repeat(1500), { retry: { maxAttempts: 1 } })),
  };
});

let env: TestEnv;
before(async () => {
  env = await createTestEnv({ workflows: [big], leaseDuration: 30_000 });
});
after(async () => {
  await env.pool.query(`select trellis.setting_set('max_payload_bytes', '1048576')`);
  await env.close();
});

describe('max_payload_bytes lowered under a running worker', () => {
  it('a write over the new limit makes the worker read it again and execute the run again at once, deciding with it', async () => {
    const run = await env.client.start(big, {});
    await env.waitFor(run, 'waiting', { timeout: '20s' });
    await env.pool.query(`select trellis.setting_set('max_payload_bytes', '1000')`);
    await env.client.signal(run.id, 'go', null);
    // Well within the 30 s lease: it did not wait for the lease to run out.
    assert.deepEqual(await run.result({ timeout: '15s' }), { metadata: 'PayloadTooLargeError', step: 'StepFailedError' });
    const { rows: [row] } = await env.pool.query('select lease_expiries from trellis.runs where id = $1', [run.id]);
    assert.equal(row.lease_expiries, 0);
    assert.deepEqual((await env.client.history(run.id)).map((s) => [s.kind, s.status]),
      [['signal', 'completed'], ['metadata', 'failed'], ['step', 'failed']]);
  });
});
