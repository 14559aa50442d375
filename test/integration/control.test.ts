import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { z } from 'zod';
import { CancelledError, IllegalTransitionError, NonRetryableError, WorkflowFailedError } from '../../src/errors.ts';
import { createTestEnv, type TestEnv } from '../../src/testing/env.ts';
import { createWorker } from '../../src/worker/worker.ts';
import { defineWorkflow } from '../../src/workflow/define.ts';
import { silentLogger } from '../../src/protocol/logger.ts';
import { adminUrl } from '../helpers/db.ts';
import { deferred } from '../helpers/engine.ts';
import { waitFor } from '../helpers/wait.ts';

const nap = defineWorkflow({ name: 'nap', input: z.object({ id: z.number() }) }, async (ctx) => {
  await ctx.sleep('long', '30 days');
  return 'rested';
});
const parent = defineWorkflow({ name: 'parent', input: z.object({}) }, async (ctx) =>
  Promise.all([ctx.child(nap, { id: 1 }), ctx.child(nap, { id: 2 })]));

const stepStarted = deferred();
const stepAborted = deferred<{ reason: unknown; at: number }>();
const busy = defineWorkflow({ name: 'busy', input: z.object({}) }, async (ctx) => {
  try {
    await ctx.step('long-call', ({ signal }) => new Promise((_, reject) => {
      stepStarted.resolve();
      signal.addEventListener('abort', () => {
        stepAborted.resolve({ reason: signal.reason, at: performance.now() });
        reject(signal.reason);
      });
    }));
    return 'finished';
  } finally {
    // Compensation runs even though the run is being cancelled.
    await ctx.nonCancellable(() => ctx.step('compensate', () => 'refunded'));
  }
});

let flaky = 0;
const parked = defineWorkflow({ name: 'parked', input: z.object({}), pauseAfter: 2 }, async (ctx) =>
  ctx.step('flaky', () => {
    if (++flaky < 3) throw new Error(`flake ${flaky}`);
    return 'third time lucky';
  }, { retry: { maxAttempts: 10, initialDelay: 10 } }));

let fixed = false;
let prepared = 0;
const retryable = defineWorkflow({ name: 'retryable', input: z.object({}) }, async (ctx) => {
  await ctx.step('prepare', () => ++prepared);
  return ctx.step('commit', () => {
    if (!fixed) throw new NonRetryableError('bug');
    return 'committed';
  });
});

const quick = defineWorkflow({ name: 'quick', input: z.object({}) }, async (ctx) => ctx.step('go', () => 'ran'));
let backedOff = 0;
const backoff1h = defineWorkflow({ name: 'backoff-1h', input: z.object({}) }, async (ctx) =>
  ctx.step('flaky', () => {
    if (++backedOff < 2) throw new Error('try again in an hour');
    return 'second time';
  }, { retry: { maxAttempts: 3, backoff: 'constant', initialDelay: 3_600_000, jitter: 0 } }));
const listens = defineWorkflow({ name: 'listens', input: z.object({}) }, async (ctx) => (await ctx.waitForSignal<string>('hello')).timedOut);

let env: TestEnv;
before(async () => {
  env = await createTestEnv({ workflows: [nap, parent, busy, parked, retryable, quick, backoff1h, listens], serverUrl: adminUrl() });
});
after(() => env.close());

describe('cancellation', () => {
  it('cancels a parent with two sleeping children: all end cancelled', async () => {
    const run = await env.start(parent, {});
    await waitFor(async () => {
      const { rows } = await env.pool.query(`select count(*)::int as n from trellis.runs where parent_run_id = $1 and status = 'waiting'`, [run.id]);
      return rows[0].n === 2;
    }, { what: 'two sleeping children' });
    await env.waitFor(run.id, 'waiting');
    await env.client.cancel(run.id, 'customer changed their mind');
    await assert.rejects(run.result({ timeout: '10s' }), CancelledError);
    const ended = await env.client.get(run.id);
    assert.deepEqual([ended?.status, (ended?.error as { message?: string | undefined }).message], ['cancelled', 'customer changed their mind'],
      'the run keeps the reason given to cancel after its worker ended it');
    const { rows } = await env.pool.query('select id, status from trellis.runs where parent_run_id = $1', [run.id]);
    assert.deepEqual(rows.map((r) => r.status), ['cancelled', 'cancelled']);
    // An interrupted wait keeps the status it had in the finished run (workflows.md).
    const sleeps = await env.history(rows[0].id);
    assert.deepEqual(sleeps.map((s) => [s.kind, s.name, s.status]), [['sleep', 'long', 'waiting']]);
  });

  it('aborts a running step within a second and lets cleanup run in a non-cancellable scope', async () => {
    const run = await env.start(busy, {});
    await stepStarted.promise;
    const requested = performance.now();
    assert.equal(await env.client.cancel(run.id), 'running');
    const { reason, at } = await stepAborted.promise;
    assert.ok(reason instanceof CancelledError);
    assert.ok(at - requested < 1000, `aborted after ${(at - requested).toFixed(0)} ms`);
    await assert.rejects(run.result({ timeout: '10s' }), CancelledError);
    const steps = await env.history(run.id);
    assert.deepEqual(steps.map((s) => [s.name, s.status]), [['long-call', 'failed'], ['compensate', 'completed']]);
    assert.equal((await env.client.get(run.id))?.status, 'cancelled');
  });

  it('ends a run that never started at once, and refuses to cancel a finished run', async () => {
    const later = await env.start(nap, { id: 9 }, { runAt: new Date(Date.now() + 3_600_000) });
    assert.equal(await env.client.cancel(later.id), 'cancelled');
    assert.equal(await env.client.cancel(later.id), 'cancelled', 'cancelling again is a no-op');
    const done = await env.start(retryable, {});
    fixed = true;
    await done.result({ timeout: '10s' });
    await assert.rejects(env.client.cancel(done.id), IllegalTransitionError);
    const sql = await env.pool.query(`select trellis.run_cancel($1) as status`, [(await env.start(nap, { id: 10 }, { runAt: new Date(Date.now() + 3_600_000) })).id]);
    assert.equal(sql.rows[0].status, 'cancelled');
  });
});

describe('pause, resume and dead letter', () => {
  it('pauses a waiting run and resumes it where it was', async () => {
    const run = await env.start(nap, { id: 3 });
    await env.waitFor(run.id, 'waiting');
    assert.equal(await env.client.pause(run.id, 'maintenance'), 'paused');
    await env.advance('30 days');
    await env.waitFor(run.id, 'paused');
    assert.equal((await env.client.get(run.id))?.status, 'paused', 'a paused run stays parked past its timer');
    assert.equal(await env.client.resume(run.id), 'pending');
    assert.equal(await run.result({ timeout: '10s' }), 'rested');
    await assert.rejects(env.client.resume(run.id), IllegalTransitionError);
  });

  it('keeps runAt through pause and resume: the run is due only when its time comes', async () => {
    const at = new Date((await env.now()).getTime() + 3_600_000);
    const run = await env.start(quick, {}, { runAt: at });
    assert.equal(await env.client.pause(run.id), 'paused');
    assert.equal(await env.client.resume(run.id), 'pending');
    const row = await env.client.get(run.id);
    assert.equal(row?.runAt?.getTime(), at.getTime(), 'resume kept the start time');
    assert.equal(row?.attempt, 0);
    await env.advance('1 hour');
    assert.equal(await run.result({ timeout: '10s' }), 'ran');
  });

  it('keeps the rest of a 1-hour retry backoff through pause and resume', async () => {
    const run = await env.start(backoff1h, {});
    await waitFor(async () => (await env.history(run.id)).some((s) => s.status === 'retrying'), { what: 'the first attempt failed' });
    const due = (await env.waitFor(run.id, 'pending')).runAt as Date;
    assert.ok(due.getTime() - (await env.now()).getTime() > 3_000_000, 'released with an hour of backoff');
    assert.equal(await env.client.pause(run.id), 'paused');
    await env.advance('10 minutes');
    assert.equal(await env.client.resume(run.id), 'pending');
    assert.equal((await env.client.get(run.id))?.runAt?.getTime(), due.getTime(), 'the backoff is kept, not cut short');
    await env.advance('50 minutes');
    assert.equal(await run.result({ timeout: '10s' }), 'second time');
    assert.equal(backedOff, 2);
  });

  it('reports runAt null (not Infinity) for a run waiting with no timer', async () => {
    const run = await env.start(listens, {});
    const row = await env.waitFor(run.id, 'waiting');
    assert.equal(row.runAt, null);
    await env.signal(run, 'hello', 'hi');
    assert.equal(await run.result({ timeout: '10s' }), false);
  });

  it('parks a run after N consecutive failed attempts, keeping the error, then resumes it to completion', async () => {
    const run = await env.start(parked, {});
    const row = await env.waitFor(run.id, 'paused');
    assert.match(JSON.stringify(row.error), /flake 2/);
    assert.equal(flaky, 2);
    await env.client.resume(run.id);
    assert.equal(await run.result({ timeout: '10s' }), 'third time lucky');
    const [step] = await env.history(run.id);
    assert.equal(step?.attempts, 3);
  });

  it('retries a failed run from its failed step without re-running completed steps', async () => {
    fixed = false;
    const before = prepared;
    const run = await env.start(retryable, {});
    await assert.rejects(run.result({ timeout: '10s' }), WorkflowFailedError);
    fixed = true;
    assert.equal(await env.client.retry(run.id), 'pending');
    assert.equal(await run.result({ timeout: '10s' }), 'committed');
    assert.equal(prepared - before, 1, 'prepare ran once');
    await assert.rejects(env.client.retry(run.id), IllegalTransitionError);
  });
});

describe('limits', () => {
  it('fails a run that outgrows the history limit with a typed error, writing nothing past it', async () => {
    await env.pool.query(`select trellis.setting_set('max_history_steps', '5')`);
    const loop = defineWorkflow({ name: 'loop', input: z.object({}) }, async (ctx) => {
      for (let i = 0; i < 20; i++) await ctx.step('tick', () => i);
      return 'done';
    });
    const worker = createWorker({ pool: env.pool, workflows: [loop], pollInterval: 50, logger: silentLogger });
    await worker.start();
    try {
      const run = await env.start(loop, {});
      await assert.rejects(run.result({ timeout: '10s' }), /history limit of 5/);
      const row = await env.client.get(run.id);
      assert.equal((row?.error as { code: string }).code, 'history_limit');
      assert.equal((await env.history(run.id)).length, 5);
    } finally {
      await worker.stop();
      await env.pool.query(`select trellis.setting_set('max_history_steps', '10000')`);
    }
  });
});

describe('retry after a failure the workflow caught', () => {
  it('re-runs from the failed step: a saga whose compensation ran completes with history charge, ship (no refund)', async () => {
    let shipFixed = false;
    let charges = 0;
    let refunds = 0;
    const saga = defineWorkflow({ name: 'saga-retry', input: z.object({}) }, async (ctx) => {
      await ctx.step('charge', () => ++charges);
      try {
        await ctx.step('ship', () => {
          if (!shipFixed) throw new NonRetryableError('no stock');
          return 'shipped';
        });
      } catch (error) {
        await ctx.step('refund', () => ++refunds);
        throw error;
      }
      return 'done';
    });
    const worker = createWorker({ pool: env.pool, workflows: [saga], pollInterval: 50, logger: silentLogger });
    await worker.start();
    try {
      const run = await env.start(saga, {});
      await assert.rejects(run.result({ timeout: '10s' }), WorkflowFailedError);
      assert.deepEqual((await env.history(run.id)).map((s) => [s.name, s.status]), [['charge', 'completed'], ['ship', 'failed'], ['refund', 'completed']]);
      shipFixed = true;
      assert.equal(await env.client.retry(run.id), 'pending');
      assert.equal(await run.result({ timeout: '10s' }), 'done');
      assert.deepEqual((await env.history(run.id)).map((s) => [s.name, s.status]), [['charge', 'completed'], ['ship', 'completed']]);
      assert.deepEqual([charges, refunds], [1, 1], 'the charge ran once; the refund only in the failed attempt');
    } finally {
      await worker.stop();
    }
  });
});

describe('cancellation during a step retry backoff', () => {
  it('ends the run cancelled promptly when the cancel commits while the failed attempt is being released with a 1-hour backoff', async () => {
    const backoff = defineWorkflow({ name: 'cancel-backoff', input: z.object({}) }, async (ctx) =>
      ctx.step('flaky', async ({ runId }) => {
        // The cancel commits only after this attempt has failed and asked for
        // its release, so the execution cannot see it: SQL must.
        const tx = await env.pool.connect();
        await tx.query('begin');
        await tx.query('select trellis.run_cancel($1)', [runId]);
        setTimeout(() => void tx.query('commit').finally(() => tx.release()), 300);
        throw new Error('flaky');
      }, { retry: { maxAttempts: 3, initialDelay: '1 hour', jitter: 0 } }));
    const worker = createWorker({ pool: env.pool, workflows: [backoff], pollInterval: 50, logger: silentLogger });
    await worker.start();
    try {
      const started = performance.now();
      const run = await env.start(backoff, {});
      await assert.rejects(run.result({ timeout: '8s' }), CancelledError);
      assert.ok(performance.now() - started < 8000);
      const steps = await env.history(run.id);
      assert.equal(steps[0]?.attempts, 1, 'no second attempt ran');
    } finally {
      await worker.stop();
    }
  });
});

describe('pauseAfter at the retry limit', () => {
  it('parks after the final attempt instead of failing, and after each resume the step gets a fresh count of attempts', async () => {
    let broken = true;
    let calls = 0;
    const deadLetter = defineWorkflow({ name: 'dead-letter-final', input: z.object({}), pauseAfter: 3 }, async (ctx) =>
      ctx.step('fragile', () => {
        calls++;
        if (broken) throw new Error(`broken ${calls}`);
        return 'fixed';
      }, { retry: { initialDelay: 10, jitter: 0 } })); // default maxAttempts: 3 = pauseAfter
    const worker = createWorker({ pool: env.pool, workflows: [deadLetter], pollInterval: 50, logger: silentLogger });
    await worker.start();
    try {
      const run = await env.start(deadLetter, {});
      let row = await env.waitFor(run.id, 'paused');
      assert.match(JSON.stringify(row.error), /broken 3/);
      assert.equal(calls, 3);
      await env.client.resume(run.id); // still broken: three more attempts, then parked again
      await waitFor(async () => calls === 6 && (await env.client.get(run.id))?.status === 'paused', { what: 'the second park' });
      row = await env.waitFor(run.id, 'paused');
      assert.match(JSON.stringify(row.error), /broken 6/);
      broken = false;
      await env.client.resume(run.id);
      assert.equal(await run.result({ timeout: '10s' }), 'fixed');
      const [step] = await env.history(run.id);
      assert.deepEqual([step?.status, step?.attempts], ['completed', 7]);
    } finally {
      await worker.stop();
    }
  });
});
