import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { z } from 'zod';
import { ChildFailedError, NonRetryableError } from '../../src/errors.ts';
import { createTestEnv, type TestEnv } from '../../src/testing/env.ts';
import { createWorker } from '../../src/worker/worker.ts';
import { defineActivity, defineWorkflow } from '../../src/workflow/define.ts';
import { silentLogger } from '../../src/protocol/logger.ts';
import { adminUrl } from '../helpers/db.ts';
import { waitFor } from '../helpers/wait.ts';

const square = defineWorkflow({ name: 'square', input: z.object({ n: z.number() }) }, async (ctx, { n }) => {
  if (n < 0) await ctx.step('refuse', () => { throw new NonRetryableError(`negative: ${n}`); });
  await ctx.sleep('think', '1 hour');
  return ctx.step('square', () => n * n);
});

const fanOut = defineWorkflow({ name: 'fan-out', input: z.object({ ns: z.array(z.number()) }) }, async (ctx, { ns }) => {
  const results = await Promise.all(ns.map((n) => ctx.child(square, { n }).then((v) => v, (e: unknown) =>
    e instanceof ChildFailedError ? `failed: ${e.message.includes('negative') ? 'negative' : e.message}` : 'other')));
  return results;
});

// An activity runs on the 'gpu' queue, served by another worker.
const render = defineActivity({ name: 'render', queue: 'gpu', input: z.object({ scene: z.string() }) },
  async ({ scene }) => ({ image: `${scene}.png`, pid: process.pid }));
const renderJob = defineWorkflow({ name: 'render-job', input: z.object({ scene: z.string() }) }, async (ctx, { scene }) => {
  const out = await ctx.child(render, { scene });
  return out.image;
});

// Counts down by continuing as new; the history of each execution is fresh.
const countdown = defineWorkflow({ name: 'countdown', input: z.object({ n: z.number(), keep: z.boolean().default(false) }) },
  async (ctx, { n, keep }) => {
    const seen = await ctx.step('tick', () => n);
    if (seen > 0) return ctx.continueAsNew({ n: n - 1, keep }, { keepHistory: keep });
    return 'liftoff';
  });
const countdownParent = defineWorkflow({ name: 'countdown-parent', input: z.object({}) }, async (ctx) =>
  ctx.child(countdown, { n: 3, keep: false }));

// Starts a child it never awaits and returns at once: the child is started all the same.
const note = defineWorkflow({ name: 'note', input: z.object({ text: z.string() }) }, async (ctx, { text }) => {
  await ctx.sleep('later', '1 minute');
  return ctx.step('write', () => `noted ${text}`);
});
const fireAndForget = defineWorkflow({ name: 'fire-and-forget', input: z.object({ close: z.enum(['cancel', 'abandon']) }) }, async (ctx, { close }) => {
  void ctx.child(note, { text: close }, { onParentCancel: close });
  return 'returned at once';
});

let env: TestEnv;
before(async () => {
  env = await createTestEnv({ workflows: [square, fanOut, renderJob, countdown, countdownParent, note, fireAndForget], serverUrl: adminUrl() });
});
after(() => env.close());

describe('child workflows', () => {
  it('runs children in parallel and joins their results, the parent holding no worker while it waits', async () => {
    const run = await env.start(fanOut, { ns: [2, 3, -1] });
    await waitFor(async () => {
      const { rows } = await env.pool.query(`select count(*)::int as n from trellis.runs where parent_run_id = $1 and status = 'waiting'`, [run.id]);
      return rows[0].n === 2;
    }, { what: 'two sleeping children' });
    const parent = await env.waitFor(run.id, 'waiting');
    assert.equal(parent.leaseOwner, null);
    await env.advance('1 hour');
    assert.deepEqual(await run.result({ timeout: '10s' }), [4, 9, 'failed: negative']);
    const { rows } = await env.pool.query('select status, parent_seq from trellis.runs where parent_run_id = $1 order by parent_seq', [run.id]);
    assert.deepEqual(rows.map((r) => r.status), ['completed', 'completed', 'failed']);
  });

  it('executes an activity on a worker serving its queue and wakes the caller on its own queue', async () => {
    const gpu = createWorker({ pool: env.pool, workflows: [render], pollInterval: 50, logger: silentLogger });
    await gpu.start();
    try {
      const run = await env.start(renderJob, { scene: 'forest' });
      assert.equal(await run.result({ timeout: '10s' }), 'forest.png');
      await waitFor(() => gpu.stats.completed === 1, { what: 'the gpu worker to count the activity it ran', timeout: 5000 });
      const { rows } = await env.pool.query(`select queue from trellis.runs where parent_run_id = $1`, [run.id]);
      assert.deepEqual(rows.map((r) => r.queue), ['gpu']);
      assert.equal((await env.client.get(run.id))?.queue, 'default');
    } finally {
      await gpu.stop();
    }
  });
});

describe('a child the code does not await', () => {
  it('is started before the run ends: abandoned, it outlives its parent; else the end cancels it', async () => {
    const abandoned = await env.start(fireAndForget, { close: 'abandon' });
    assert.equal(await abandoned.result({ timeout: '10s' }), 'returned at once');
    const cancelled = await env.start(fireAndForget, { close: 'cancel' });
    assert.equal(await cancelled.result({ timeout: '10s' }), 'returned at once');
    const childOf = async (parent: string) =>
      (await env.pool.query<{ id: string; status: string }>('select id, status from trellis.runs where parent_run_id = $1', [parent])).rows;
    const [kept] = await childOf(abandoned.id);
    assert.ok(kept, 'the abandoned child was started');
    await waitFor(async () => (await childOf(cancelled.id))[0]?.status === 'cancelled', { what: "the parent's end cancelling its child" });
    await env.waitFor(kept.id, 'waiting');
    await env.advance('1 minute');
    assert.equal(await env.client.result(kept.id, { timeout: '10s' }), 'noted abandon');
  });
});

describe('continueAsNew', () => {
  it('keeps the run id and key, starts a fresh history each time, and returns the final result', async () => {
    const run = await env.start(countdown, { n: 3, keep: false }, { key: 'launch' });
    assert.equal(await run.result({ timeout: '10s' }), 'liftoff');
    const row = await env.client.get(run.id);
    assert.equal(row?.key, 'launch');
    const { rows } = await env.pool.query('select execution, name, output from trellis.steps where run_id = $1', [run.id]);
    assert.deepEqual(rows, [{ execution: 4, name: 'tick', output: 0 }], 'old executions removed');
  });

  it('keeps old executions when asked', async () => {
    const run = await env.start(countdown, { n: 2, keep: true });
    assert.equal(await run.result({ timeout: '10s' }), 'liftoff');
    const { rows } = await env.pool.query('select execution, output from trellis.steps where run_id = $1 order by execution', [run.id]);
    assert.deepEqual(rows, [{ execution: 1, output: 2 }, { execution: 2, output: 1 }, { execution: 3, output: 0 }]);
  });

  it('gives a parent waiting on a child that continues as new the final result', async () => {
    const run = await env.start(countdownParent, {});
    assert.equal(await run.result({ timeout: '10s' }), 'liftoff');
  });
});
