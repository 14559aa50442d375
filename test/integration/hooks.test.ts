/**
 * Durable lifecycle hooks (src/worker/hooks/loop.ts, sql/710_hooks.sql):
 * each hook runs once per event with the run's data; a hook that keeps
 * failing (an Error, a non-Error, or one that never returns) is retried,
 * then parked in SQL, and the worker keeps working; trellis.hook_retry
 * delivers a parked one again.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { z } from 'zod';
import { defineWorkflow } from '../../src/workflow/define.ts';
import type { HookEvent } from '../../src/workflow/hooks.ts';
import { waitFor } from '../helpers/wait.ts';
import { deferred, startEngine, useEngine } from '../helpers/engine.ts';

const seen: HookEvent[] = [];
let flakyCalls = 0;
let failUntil = Infinity;

const ends = defineWorkflow({
  name: 'hook-ends', input: z.object({ end: z.enum(['complete', 'fail', 'wait']) }),
  hooks: {
    onComplete: (e) => void seen.push(e),
    onFail: (e) => void seen.push(e),
    onCancel: (e) => void seen.push(e),
    onPause: (e) => void seen.push(e),
  },
}, async (ctx, { end }) => {
  if (end === 'fail') throw new Error('it broke');
  if (end === 'wait') await ctx.waitForSignal('never');
  return { done: true };
});

const flaky = defineWorkflow({
  name: 'hook-flaky', input: z.object({}),
  hooks: {
    retry: { maxAttempts: 3, initialDelay: 10, jitter: 0 },
    onComplete: () => {
      flakyCalls += 1;
      if (flakyCalls <= failUntil) throw new Error(`attempt ${flakyCalls} failed`);
    },
  },
}, async () => 1);

const strange = defineWorkflow({
  name: 'hook-strange', input: z.object({ how: z.enum(['string', 'hang']) }),
  hooks: {
    retry: { maxAttempts: 2, initialDelay: 10, jitter: 0 },
    timeout: 200,
    onComplete: (e) => {
      // eslint-disable-next-line no-throw-literal
      if ((e.input as { how: string }).how === 'string') throw 'not an Error';
      return new Promise(() => {});
    },
  },
}, async () => 1);

const plain = defineWorkflow({ name: 'hook-none', input: z.object({}) }, async () => 2);

// A slow hook with a short timeout, served beside one with a long timeout.
let slowEntered = deferred();
let slowGate = deferred();
const slowShort = defineWorkflow({
  name: 'hook-slow-short', input: z.object({}),
  hooks: { timeout: '5s', onComplete: async () => { slowEntered.resolve(); await slowGate.promise; } },
}, async () => 3);
const longTimeout = defineWorkflow({ name: 'hook-long-timeout', input: z.object({}), hooks: { timeout: '2 hours', onComplete: () => {} } }, async () => 4);

// A hook that heeds its signal, on a worker of its own (the test stops it).
const heedEntered = new Set<string>();
const heeding = defineWorkflow({
  name: 'hook-heeds-signal', input: z.object({ returns: z.boolean() }),
  hooks: {
    retry: { maxAttempts: 5, initialDelay: 10, jitter: 0 },
    // Heeds the signal and returns (a fetch's caught AbortError), or throws.
    onComplete: (e) => new Promise((resolve, reject) => {
      heedEntered.add(e.runId);
      e.signal.addEventListener('abort', () => ((e.input as { returns?: boolean }).returns ? resolve(undefined) : reject(e.signal.reason)), { once: true });
    }),
  },
}, async () => 5);

const fx = useEngine({ workflows: [ends, flaky, strange, plain, slowShort, longTimeout], hookDelivery: { interval: 20 } });

const deliveries = async (workflow: string) =>
  (await fx.db.pool.query('select id, status, attempts, hook, last_error from trellis.hook_deliveries where workflow = $1', [workflow])).rows;

describe('lifecycle hooks', () => {
  it('run once per end with the run\'s data: onComplete, onFail, onCancel, onPause', async () => {
    const done = await fx.engine.client.start(ends, { end: 'complete' }, { key: 'k-complete' });
    const failed = await fx.engine.client.start(ends, { end: 'fail' });
    const cancelled = await fx.engine.client.start(ends, { end: 'wait' });
    const paused = await fx.engine.client.start(ends, { end: 'wait' });
    await done.result();
    await assert.rejects(failed.result());
    await waitFor(async () => (await fx.engine.client.get(paused.id))?.status === 'waiting' && (await fx.engine.client.get(cancelled.id))?.status === 'waiting',
      { what: 'both waiting' });
    await fx.engine.client.pause(paused.id);
    await fx.engine.client.cancel(cancelled.id);
    await waitFor(() => seen.length >= 4, { what: 'four hooks' });
    await waitFor(async () => (await deliveries('hook-ends')).length === 0, { what: 'deliveries deleted' });
    const byRun = new Map(seen.map((e) => [e.runId, e]));
    assert.equal(seen.length, 4, 'each once');
    assert.deepEqual({ hook: byRun.get(done.id)?.hook, output: byRun.get(done.id)?.output, key: byRun.get(done.id)?.key },
      { hook: 'onComplete', output: { done: true }, key: 'k-complete' });
    assert.equal(byRun.get(failed.id)?.hook, 'onFail');
    assert.match(String((byRun.get(failed.id)?.error as { message?: string | undefined })?.message), /it broke/);
    assert.equal(byRun.get(cancelled.id)?.hook, 'onCancel');
    assert.equal(byRun.get(paused.id)?.hook, 'onPause');
    assert.equal(byRun.get(done.id)?.attempt, 1);
  });

  it('a workflow without hooks gets no deliveries', async () => {
    await (await fx.engine.client.start(plain, {})).result();
    assert.deepEqual(await deliveries('hook-none'), []);
  });

  it('a hook failing every attempt is parked in SQL, and trellis.hook_retry delivers it again', async () => {
    flakyCalls = 0;
    failUntil = 3;
    const run = await fx.engine.client.start(flaky, {});
    await run.result();
    const [parked] = await waitFor(async () => {
      const rows = await deliveries('hook-flaky');
      return rows[0]?.status === 'parked' ? rows : undefined;
    }, { what: 'the delivery parked' });
    assert.equal(flakyCalls, 3, 'three attempts, then parked');
    assert.equal(parked.attempts, 3);
    assert.match(parked.last_error.message, /attempt 3 failed/);
    await fx.db.pool.query('select trellis.hook_retry($1)', [parked.id]);
    await waitFor(async () => (await deliveries('hook-flaky')).length === 0, { what: 'delivered after the retry' });
    assert.equal(flakyCalls, 4);
    await assert.rejects(fx.db.pool.query('select trellis.hook_retry($1)', [parked.id]), { code: 'TR002' });
  });

  it('a hook that throws a non-Error or never returns is retried, then parked; the worker keeps running runs', async () => {
    const thrower = await fx.engine.client.start(strange, { how: 'string' });
    const hanger = await fx.engine.client.start(strange, { how: 'hang' });
    await thrower.result();
    await hanger.result();
    await waitFor(async () => {
      const rows = await deliveries('hook-strange');
      return rows.length === 2 && rows.every((r) => r.status === 'parked');
    }, { what: 'both parked', timeout: 30_000 });
    const rows = await deliveries('hook-strange');
    const errors = rows.map((r) => r.last_error.message as string).sort();
    assert.match(errors[0]!, /not an Error/);
    assert.match(errors[1]!, /did not return within 200 ms/);
    assert.ok(rows.every((r) => r.attempts === 2));
    // The worker is fine.
    assert.equal(await (await fx.engine.client.start(plain, {})).result(), 2);
    assert.ok(fx.engine.worker.stats.hooks.parked >= 2);
  });

  it('a delivery\'s lease is its own hook\'s timeout plus 30 s, not the longest of the workflows its worker serves', async () => {
    slowEntered = deferred();
    slowGate = deferred();
    await fx.engine.client.start(slowShort, {});
    await slowEntered.promise;
    try {
      const { rows } = await fx.db.pool.query(`select extract(epoch from lease_expires_at - trellis.now())::float8 as left_s
                                                 from trellis.hook_deliveries where workflow = 'hook-slow-short' and status = 'running'`);
      assert.equal(rows.length, 1);
      assert.ok(rows[0].left_s > 20 && rows[0].left_s <= 35, `lease ${rows[0].left_s} s (5 s timeout + 30 s; the other workflow's is 2 hours)`);
    } finally {
      slowGate.resolve();
    }
    await waitFor(async () => (await deliveries('hook-slow-short')).length === 0, { what: 'the slow hook delivered' });
  });

  it('a graceful stop aborts the signal of a hook still running, and a hook that heeds it has its delivery due again (not held by the stopped worker)', async () => {
    for (const returns of [false, true]) {
      const own = await startEngine(fx.db, { workflows: [heeding], hookDelivery: { interval: 20 } });
      let runId = '';
      try {
        runId = (await own.client.start(heeding, { returns })).id;
        await waitFor(() => heedEntered.has(runId), { what: 'its hook running' });
      } finally {
        await own.stop();
      }
      // Thrown or returned after the abort: not delivered, due again.
      const rows = (await fx.db.pool.query(`select status, lease_owner from trellis.hook_deliveries where run_id = $1`, [runId])).rows;
      assert.deepEqual(rows, [{ status: 'pending', lease_owner: null }], `the hook ${returns ? 'returned' : 'threw'}`);
    }
  });
});
