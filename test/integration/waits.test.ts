import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { z } from 'zod';
import { IllegalTransitionError, NotFoundError, ValidationError } from '../../src/errors.ts';
import { createTestEnv, type TestEnv } from '../../src/testing/env.ts';
import { createWorker } from '../../src/worker/worker.ts';
import { defineWorkflow } from '../../src/workflow/define.ts';
import { silentLogger } from '../../src/protocol/logger.ts';
import { defineSignal } from '../../src/workflow/signal.ts';
import { adminUrl } from '../helpers/db.ts';
import { waitFor } from '../helpers/wait.ts';

const DAY = 86_400_000;
const approved = defineSignal('approved', z.object({ by: z.string() }));
let afterSleep = 0;

const sleeper = defineWorkflow({ name: 'sleeper', input: z.object({ days: z.number() }) }, async (ctx, { days }) => {
  const before = ctx.now().getTime();
  await ctx.sleep('nap', `${days} days`);
  await ctx.step('after-sleep', () => ++afterSleep);
  return { slept: ctx.now().getTime() - before };
});

const waitsForDate = defineWorkflow({ name: 'until', input: z.object({ at: z.string() }) }, async (ctx, { at }) => {
  await ctx.sleepUntil('wake', new Date(at));
  return ctx.now().toISOString();
});

const approval = defineWorkflow({ name: 'approval', input: z.object({ timeout: z.string().optional() }) }, async (ctx, { timeout }) => {
  const first = await ctx.waitForSignal(approved, timeout ? { timeout: timeout as '1s' } : {});
  const second = await ctx.waitForSignal(approved, { timeout: '1 hour', name: 'second' });
  return { first, second };
});

// A payload from a sender that skipped the schema (SQL, another language)
// fails the wait with ValidationError; the workflow may catch it and wait again.
const picky = defineWorkflow({ name: 'picky', input: z.object({}) }, async (ctx) => {
  const rejected: string[] = [];
  for (;;) {
    try {
      const got = await ctx.waitForSignal(approved, { name: `approved-${rejected.length}` });
      if (!got.timedOut) return { by: got.payload.by, rejected };
    } catch (error) {
      if (!(error instanceof ValidationError)) throw error;
      rejected.push(error.code);
    }
  }
});

// The same wait, with its signals declared: SQL refuses what `picky` had to catch.
const declared = defineWorkflow({ name: 'declared', input: z.object({}), signals: [approved] }, async (ctx) => {
  const got = await ctx.waitForSignal(approved, { timeout: '1 day' });
  return got.timedOut ? null : got.payload.by;
});

const raced = defineWorkflow({ name: 'raced', input: z.object({}) }, async (ctx) => {
  const winner = await ctx.race({ signal: ctx.waitForSignal<string>('go'), timer: ctx.sleep('deadline', '1 day') });
  const next = await ctx.waitForSignal<string>('go');
  return { winner: winner.key, next: next.timedOut ? null : next.payload };
});

let env: TestEnv;
before(async () => {
  env = await createTestEnv({ workflows: [sleeper, waitsForDate, approval, picky, declared, raced], serverUrl: adminUrl() });
});
after(() => env.close());

describe('durable timers', () => {
  it('completes a 30-day sleep in well under a second of test time, releasing the worker while it waits', async () => {
    const started = performance.now();
    const run = await env.start(sleeper, { days: 30 });
    const waiting = await env.waitFor(run.id, 'waiting');
    assert.equal(waiting.leaseOwner, null, 'no worker holds a waiting run');
    // The worker frees the slot once its commit has returned, a moment after the row changed.
    await waitFor(() => env.worker.activeCount === 0, { what: 'the worker slot to be free', timeout: 5000 });
    const clockBefore = (await env.now()).getTime();
    await env.advance('30 days');
    const out = await run.result({ timeout: '10s' });
    assert.ok(out.slept >= 30 * DAY && out.slept < 30 * DAY + 60_000, `slept ${out.slept} ms of engine time`);
    assert.ok((await env.now()).getTime() - clockBefore >= 30 * DAY);
    const elapsed = performance.now() - started;
    assert.ok(elapsed < 5000, `test time ${elapsed.toFixed(0)} ms`);
    const nap = (await env.history(run.id)).find((s) => s.name === 'nap');
    assert.equal(nap?.status, 'completed');
  });

  it('does not fire early', async () => {
    const run = await env.start(sleeper, { days: 2 });
    await env.waitFor(run.id, 'waiting');
    await env.advance('1 day');
    await env.waitFor(run.id, 'waiting');
    assert.equal((await env.client.get(run.id))?.status, 'waiting');
    await env.advance('1 day');
    assert.ok((await run.result({ timeout: '10s' })).slept >= 2 * DAY);
  });

  it('sleepUntil wakes at the given date', async () => {
    const at = new Date((await env.now()).getTime() + 5 * DAY).toISOString();
    const run = await env.start(waitsForDate, { at });
    await env.waitFor(run.id, 'waiting');
    await env.advance('5 days');
    assert.ok(new Date(await run.result({ timeout: '10s' })).getTime() >= new Date(at).getTime());
  });

  it('fires once with three workers', async () => {
    const extra = [1, 2].map(() => createWorker({ pool: env.pool, workflows: [sleeper], pollInterval: 50, logger: silentLogger }));
    await Promise.all(extra.map((w) => w.start()));
    try {
      const before = afterSleep;
      const runs = await Promise.all([0, 1, 2, 3, 4].map(() => env.start(sleeper, { days: 1 })));
      for (const r of runs) await env.waitFor(r.id, 'waiting');
      await env.advance('1 day');
      for (const r of runs) await r.result({ timeout: '10s' });
      assert.equal(afterSleep - before, 5, 'each run continued exactly once');
      const { rows } = await env.pool.query(
        `select count(*)::int as n from trellis.steps where kind = 'sleep' and run_id = any($1::uuid[])`, [runs.map((r) => r.id)]);
      assert.equal(rows[0].n, 5);
    } finally {
      await Promise.all(extra.map((w) => w.stop()));
    }
  });
});

describe('signals', () => {
  it('buffers a signal sent before the wait', async () => {
    const run = await env.start(approval, {});
    assert.equal(await env.client.signal(run.id, approved, { by: 'ada' }), true);
    assert.equal(await env.client.signal(run.id, approved, { by: 'bob' }), true);
    const out = await run.result({ timeout: '10s' });
    assert.deepEqual(out.first, { timedOut: false, payload: { by: 'ada' }, signalId: null });
    assert.deepEqual(out.second, { timedOut: false, payload: { by: 'bob' }, signalId: null });
  });

  it('consumes a signal delivered three times with one id once', async () => {
    const run = await env.start(approval, {}, { key: 'dedupe' });
    await env.waitFor(run.id, 'waiting');
    const sent = [];
    for (let i = 0; i < 3; i++) sent.push(await env.client.signal({ workflow: approval, key: 'dedupe' }, approved, { by: 'ada' }, { id: 'mail-1' }));
    assert.deepEqual(sent, [true, false, false]);
    await waitFor(async () => (await env.history(run.id)).some((s) => s.name === 'second' && s.status === 'waiting'),
      { what: 'the second wait' }); // it has nothing to consume
    await env.waitFor(run.id, 'waiting');
    await env.advance('1 hour');
    const out = await run.result({ timeout: '10s' });
    assert.equal(out.first.timedOut, false);
    assert.deepEqual(out.second, { timedOut: true });
    const { rows } = await env.pool.query('select count(*)::int as n from trellis.signals where run_id = $1', [run.id]);
    assert.equal(rows[0].n, 1);
  });

  it('returns a timeout result when no signal arrives in time', async () => {
    const run = await env.start(approval, { timeout: '2 days' });
    await env.waitFor(run.id, 'waiting');
    await env.advance('2 days');
    await waitFor(async () => (await env.history(run.id)).some((s) => s.name === 'second' && s.status === 'waiting'),
      { what: 'the second wait' });
    await env.waitFor(run.id, 'waiting');
    await env.advance('1 hour');
    assert.deepEqual(await run.result({ timeout: '10s' }), { first: { timedOut: true }, second: { timedOut: true } });
  });

  it('refuses bad signals with typed errors and writes nothing', async () => {
    const run = await env.start(approval, {});
    await assert.rejects(env.client.signal(run.id, approved, { by: 42 } as never), ValidationError);
    await assert.rejects(env.client.signal(crypto.randomUUID(), approved, { by: 'x' }), NotFoundError);
    await assert.rejects(env.client.signal(run.id, `bad'name`, {}), ValidationError);
    await assert.rejects(env.client.signal({ workflow: approval, key: 'no-such-key' }, approved, { by: 'x' }), NotFoundError);
    const { rows } = await env.pool.query('select count(*)::int as n from trellis.signals where run_id = $1', [run.id]);
    assert.equal(rows[0].n, 0);
    await env.client.cancel(run.id);
    await env.waitFor(run.id, 'cancelled');
    await assert.rejects(env.client.signal(run.id, approved, { by: 'late' }), IllegalTransitionError);
  });

  it('fails the wait with ValidationError on a payload that breaks the schema; the workflow catches it and gets the next, valid one', async () => {
    const run = await env.start(picky, {});
    await env.pool.query(`select trellis.signal_send($1, 'approved', '{"by": 42}')`, [run.id]);
    await env.pool.query(`select trellis.signal_send($1, 'approved', '{"by":"ada"}')`, [run.id]);
    assert.deepEqual(await run.result({ timeout: '10s' }), { by: 'ada', rejected: ['validation'] });
    const history = (await env.history(run.id)).filter((s) => s.kind === 'signal').map((s) => s.status);
    assert.deepEqual(history, ['failed', 'completed'], 'the bad signal was consumed once, recorded as a failed wait');
  });

  it('declared signals: a send from SQL or by name that the version does not declare, or whose payload breaks the schema, is refused before it is buffered', async () => {
    const run = await env.start(declared, {});
    await waitFor(async () => (await env.client.get(run.id))?.status === 'waiting', { what: 'the run to wait' });
    const [row] = (await env.pool.query(`select signal_schemas from trellis.workflows where name = 'declared'`)).rows;
    assert.deepEqual(row.signal_schemas, { approved: { type: 'object', properties: { by: { type: 'string' } }, required: ['by'] } });
    await assert.rejects(env.pool.query(`select trellis.signal_send($1, 'approved', '{"by": 42}')`, [run.id]),
      /payload of signal approved does not match its schema: \$\.by: expected string, got number/);
    await assert.rejects(env.client.signal(run.id, 'approved', { by: 42 }), ValidationError);
    await assert.rejects(env.client.signal(run.id, 'typo', { by: 'ada' }), /declared version 1 does not wait for signal typo \(it declares: approved\)/);
    const { rows } = await env.pool.query('select count(*)::int as n from trellis.signals where run_id = $1', [run.id]);
    assert.equal(rows[0].n, 0, 'nothing buffered');
    assert.equal((await env.client.get(run.id))?.status, 'waiting', 'not woken');
    await env.pool.query(`select trellis.signal_send($1, 'approved', '{"by":"ada"}')`, [run.id]);
    assert.equal(await run.result({ timeout: '10s' }), 'ada');
  });

  it('can be sent from SQL with trellis.signal_send', async () => {
    const run = await env.start(approval, {});
    await env.pool.query(`select trellis.signal_send($1, 'approved', '{"by":"psql"}')`, [run.id]);
    await env.pool.query(`select trellis.signal_send($1, 'approved', '{"by":"psql2"}', 'sql-2')`, [run.id]);
    const out = await run.result({ timeout: '10s' });
    assert.deepEqual([out.first, out.second].map((r) => r.timedOut ? null : r.payload), [{ by: 'psql' }, { by: 'psql2' }]);
  });
});

describe('race', () => {
  it('picks the first of a signal and a timer, and the losing wait consumes nothing later', async () => {
    const run = await env.start(raced, {});
    await env.waitFor(run.id, 'waiting');
    await env.advance('1 day');
    await waitFor(async () => (await env.history(run.id)).some((s) => s.kind === 'race' && s.status === 'completed'),
      { what: 'the race decided' }); // the timer won; now waiting on the next signal
    await env.client.signal(run.id, 'go', 'after');
    assert.deepEqual(await run.result({ timeout: '10s' }), { winner: 'timer', next: 'after' });
  });

  it('is won by a signal that arrives first, and the replay keeps that winner', async () => {
    const run = await env.start(raced, {});
    await env.waitFor(run.id, 'waiting');
    await env.client.signal(run.id, 'go', 'first');
    await waitFor(async () => (await env.history(run.id)).some((s) => s.kind === 'race' && s.status === 'completed'),
      { what: 'the race decided' });
    await env.waitFor(run.id, 'waiting');
    await env.advance('2 days'); // the lost timer is now due: it must not change the recorded winner
    await env.client.signal(run.id, 'go', 'second');
    assert.deepEqual(await run.result({ timeout: '10s' }), { winner: 'signal', next: 'second' });
  });
});

describe('continue-as-new with keepHistory', () => {
  it('does not spin when a child left waiting by an old execution finishes: the run stays waiting, then ends on its signal', async () => {
    const kid = defineWorkflow({ name: 'kah-kid', input: z.object({}) }, async (ctx) => {
      await ctx.sleep('k', '1 hour');
      return 'kid done';
    });
    const loop = defineWorkflow({ name: 'kah-loop', input: z.object({ n: z.number() }) }, async (ctx, { n }) => {
      if (n === 0) {
        void ctx.child(kid, {}).catch(() => undefined); // started, never awaited
        await ctx.step('after-start', () => 1);
        return ctx.continueAsNew({ n: 1 }, { keepHistory: true });
      }
      const go = await ctx.waitForSignal<string>('go');
      return go.timedOut ? 'timed out' : go.payload;
    });
    const worker = createWorker({ pool: env.pool, workflows: [kid, loop], pollInterval: 50, logger: silentLogger });
    await worker.start();
    try {
      const run = await env.start(loop, { n: 0 });
      await waitFor(async () => (await env.client.get(run.id))?.status === 'waiting' && (await env.pool.query(
        `select execution from trellis.runs where id = $1`, [run.id])).rows[0].execution === 2, { what: 'execution 2 waiting' });
      const { rows: [kidRow] } = await env.pool.query(`select id from trellis.runs where parent_run_id = $1`, [run.id]);
      const waitsBefore = worker.stats.wait;
      await env.advance('1 hour');
      await env.waitFor(kidRow.id, 'completed');
      await new Promise((r) => setTimeout(r, 1000));
      assert.equal((await env.client.get(run.id))?.status, 'waiting');
      assert.ok(worker.stats.wait - waitsBefore <= 1, `parked ${worker.stats.wait - waitsBefore} times after the child finished`);
      await env.client.signal(run.id, 'go', 'finally');
      assert.equal(await run.result({ timeout: '10s' }), 'finally');
    } finally {
      await worker.stop();
    }
  });
});
