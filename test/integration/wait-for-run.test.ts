/**
 * `ctx.waitForRun` end to end (decision 0039): a run waits for the end of a
 * run it did not start and is woken by that end through trellis.run_watches,
 * with no timer (a run that only looked again on a timer, as a shared child
 * key's waiter did every 30 seconds, fails these tests' 20-second waits). Outputs, failures, cancellations, unknown
 * and malformed ids, many waiters, a time limit through ctx.race, a shared
 * child key and replays that throw what the first execution threw.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { z } from 'zod';
import { captureIo } from '../../src/cli/io.ts';
import { main } from '../../src/cli/main.ts';
import { ChildFailedError, TimeoutError, ValidationError } from '../../src/errors.ts';
import { createTestEnv, type TestEnv } from '../../src/testing/env.ts';
import { defineWorkflow } from '../../src/workflow/define.ts';
import { defineSignal } from '../../src/workflow/signal.ts';
import type { Duration } from '../../src/protocol/duration.ts';
import { waitFor } from '../helpers/wait.ts';

const go = defineSignal('go', z.object({ fail: z.boolean().default(false) }));

/** Waits for a signal, then completes or fails. */
const target = defineWorkflow({ name: 'wfr-target', input: z.object({ label: z.string() }), retry: { maxAttempts: 1 } }, async (ctx, { label }) => {
  const answer = await ctx.waitForSignal(go);
  if (!answer.timedOut && answer.payload.fail) throw new Error(`boom ${label}`);
  return { label, done: true };
});

/** Waits for another run; reports its output or the error it got. A sleep after the wait makes the report come from a replay. */
const waiter = defineWorkflow({ name: 'wfr-waiter', input: z.object({ runId: z.string(), name: z.string().optional() }) }, async (ctx, { runId, name }) => {
  let report: unknown;
  try {
    report = { output: await ctx.waitForRun(runId, { name }) };
  } catch (error) {
    report = error instanceof ChildFailedError
      ? { failed: error.message, code: (error.details.error as { code?: string } | null)?.code ?? null }
      : { other: error instanceof ValidationError ? `ValidationError: ${error.message}` : String(error) };
  }
  await ctx.sleep('after', '1 second');
  return report;
});

/** A time limit on the wait: whichever of the run's end and a sleep comes first. */
const limited = defineWorkflow({ name: 'wfr-limited', input: z.object({ runId: z.string() }) }, async (ctx, { runId }) => {
  const r = await ctx.race({ done: ctx.waitForRun(runId), late: ctx.sleep('limit', '1 hour') });
  return r.key;
});

/** A time limit as the wait's own option; the report comes from a replay (after the sleep). */
const timed = defineWorkflow({ name: 'wfr-timed', input: z.object({ runId: z.string(), timeout: z.string() }) }, async (ctx, { runId, timeout }) => {
  let report: unknown;
  try {
    report = { output: await ctx.waitForRun(runId, { timeout: timeout as Duration }) };
  } catch (error) {
    report = error instanceof TimeoutError ? { timedOut: error.message } : { other: `${(error as Error).name}: ${(error as Error).message}` };
  }
  await ctx.sleep('after', '1 second');
  return report;
});

/** Waits for itself: refused. */
const selfish = defineWorkflow({ name: 'wfr-self', input: z.object({}) }, async (ctx) => {
  try {
    await ctx.waitForRun(ctx.runId);
    return 'waited';
  } catch (error) {
    return error instanceof ValidationError ? error.message : String(error);
  }
});

/** Two parents that name one child key: the second is attached to the first's child. */
const shared = defineWorkflow({ name: 'wfr-shared-child', input: z.object({ label: z.string() }) }, async (ctx, { label }) =>
  ctx.child(target, { label }, { key: `shared-${label}`, onParentCancel: 'abandon' }));

let env: TestEnv;
before(async () => {
  env = await createTestEnv({ workflows: [target, waiter, limited, selfish, shared, timed] });
});
after(() => env.close());

const watches = async (runId: string) =>
  (await env.pool.query<{ waiter_id: string }>('select waiter_id::text from trellis.run_watches where run_id = $1 order by waiter_id', [runId])).rows
    .map((r) => r.waiter_id);

describe('ctx.waitForRun', () => {
  it('waits without a timer for a run the client started, and gets its output when it ends', async () => {
    const t = await env.client.start(target, { label: 'a' });
    const w = await env.client.start(waiter, { runId: t.id });
    await env.waitFor(w, 'waiting', { timeout: '20s' });
    assert.equal((await env.client.get(w.id))?.runAt, null, 'no timer: the watch wakes it');
    assert.deepEqual(await watches(t.id), [w.id]);
    await env.client.signal(t.id, go, {});
    // Woken and asleep in 'after': within waitFor's 20 s, where a look on a
    // timer came every 30 s.
    await waitFor(async () => (await env.pool.query(`select 1 from trellis.steps where run_id = $1 and name = 'after'`, [w.id])).rowCount === 1,
      { what: 'the waiter woken by the end of the run it waits for' });
    assert.deepEqual(await watches(t.id), [], 'the watch ended with the run');
    const done = await env.drive(w, { timeout: '20s' });
    assert.deepEqual(done.output, { output: { label: 'a', done: true } });
  });

  it('trellis show names the awaited run on the waiter\'s call and lists the waiters of the awaited run', async () => {
    const t = await env.client.start(target, { label: 'cli' });
    const w = await env.client.start(waiter, { runId: t.id, name: 'payment' });
    await env.waitFor(w, 'waiting', { timeout: '20s' });
    const show = async (id: string) => {
      const io = captureIo({ DATABASE_URL: env.url });
      assert.equal(await main(['show', id], io), 0, io.stderr);
      return io.stdout;
    };
    assert.match(await show(w.id), new RegExp(`child\\s+payment\\s+waiting.*→ ${t.id} \\(waiting for it\\)`));
    assert.match(await show(t.id), new RegExp(`waited on by \\(1\\)\\n.*\\n${w.id}\\s+wfr-waiter\\s+waiting`));
    await env.client.signal(t.id, go, {});
    assert.deepEqual((await env.drive(w, { timeout: '20s' })).output, { output: { label: 'cli', done: true } });
    assert.doesNotMatch(await show(t.id), /waited on by/);
  });

  it('throws the run\'s failure or cancellation as ChildFailedError, the same message on replay', async () => {
    const failing = await env.client.start(target, { label: 'b' });
    const cancelled = await env.client.start(target, { label: 'c' });
    const w1 = await env.client.start(waiter, { runId: failing.id });
    const w2 = await env.client.start(waiter, { runId: cancelled.id });
    await env.waitFor(w1, 'waiting', { timeout: '20s' });
    await env.waitFor(w2, 'waiting', { timeout: '20s' });
    await env.client.signal(failing.id, go, { fail: true });
    await env.client.cancel(cancelled.id, 'no longer needed');
    const [d1, d2] = await Promise.all([env.drive(w1, { timeout: '20s' }), env.drive(w2, { timeout: '20s' })]);
    assert.deepEqual(d1.output, { failed: `run ${failing.id} failed: boom b`, code: null });
    assert.deepEqual(d2.output, { failed: `run ${cancelled.id} was cancelled: no longer needed`, code: 'cancelled' });
  });

  it('returns at once for a run already ended, and fails for an unknown id (not_found), a malformed id or its own', async () => {
    const t = await env.client.start(target, { label: 'd' });
    await env.client.signal(t.id, go, {});
    assert.deepEqual(await t.result({ timeout: '20s' }), { label: 'd', done: true });
    const ended = await env.drive(await env.client.start(waiter, { runId: t.id }), { timeout: '20s' });
    assert.deepEqual(ended.output, { output: { label: 'd', done: true } });
    const unknown = randomUUID();
    const missing = await env.drive(await env.client.start(waiter, { runId: unknown }), { timeout: '20s' });
    assert.deepEqual(missing.output, { failed: `run ${unknown} does not exist`, code: 'not_found' });
    const malformed = await env.drive(await env.client.start(waiter, { runId: 'x\'; drop table trellis.runs; --' }), { timeout: '20s' });
    assert.match((malformed.output as { other: string }).other, /^ValidationError: ctx\.waitForRun needs a run id \(a UUID\)/);
    const self = await env.drive(await env.client.start(selfish, {}), { timeout: '20s' });
    assert.match(self.output as string, /cannot wait for its own end/);
  });

  it('wakes every run waiting on one run', async () => {
    const t = await env.client.start(target, { label: 'e' });
    const ws = await Promise.all(Array.from({ length: 12 }, () => env.client.start(waiter, { runId: t.id })));
    for (const w of ws) await env.waitFor(w, 'waiting', { timeout: '20s' });
    assert.equal((await watches(t.id)).length, 12);
    await env.client.signal(t.id, go, {});
    const done = await Promise.all(ws.map((w) => env.drive(w, { timeout: '20s' })));
    for (const d of done) assert.deepEqual(d.output, { output: { label: 'e', done: true } });
  });

  it('takes a time limit through ctx.race; the run that ends later wakes nobody', async () => {
    const t = await env.client.start(target, { label: 'f' });
    const w = await env.client.start(limited, { runId: t.id });
    await env.waitFor(w, 'waiting', { timeout: '20s' });
    const done = await env.drive(w, { timeout: '20s' });
    assert.equal(done.output, 'late');
    await env.client.signal(t.id, go, {});
    assert.deepEqual(await t.result({ timeout: '20s' }), { label: 'f', done: true });
    assert.deepEqual(await watches(t.id), []);
    assert.equal((await env.client.get(w.id))?.status, 'completed');
  });

  it('takes a timeout option: TimeoutError when the run has not ended by then (the same on replay); the run goes on', async () => {
    const t = await env.client.start(target, { label: 'tt' });
    const w = await env.client.start(timed, { runId: t.id, timeout: '1 hour' });
    await env.waitFor(w, 'waiting', { timeout: '20s' });
    // Waiting with its time limit recorded, and a timer for it.
    const [waiting] = (await env.pool.query<{ until: string | null; timer: boolean }>(
      `select s.output->>'until' as until, r.run_at is not null as timer from trellis.steps s join trellis.runs r on r.id = s.run_id
        where s.run_id = $1 and s.kind = 'child'`, [w.id])).rows;
    assert.ok(waiting?.until && waiting.timer, 'the wait records its time limit and the run has a timer');
    const done = await env.drive(w, { timeout: '20s' });
    assert.deepEqual(done.output, { timedOut: `run ${t.id} did not end within the wait's timeout` });
    const { rows } = await env.pool.query<{ status: string; code: string; child: string }>(
      `select status, error->>'code' as code, output->>'child' as child from trellis.steps where run_id = $1 and kind = 'child'`, [w.id]);
    assert.deepEqual(rows.map((r) => [r.status, r.code, r.child]), [['failed', 'timeout', t.id]]);
    // The awaited run goes on and ends; the finished waiter is left alone.
    await env.client.signal(t.id, go, {});
    assert.deepEqual(await t.result({ timeout: '20s' }), { label: 'tt', done: true });
    assert.deepEqual(await watches(t.id), []);
    assert.equal((await env.client.get(w.id))?.status, 'completed');
  });

  it('a run that ends within the timeout is returned; a bad timeout is a ValidationError that records nothing', async () => {
    const t = await env.client.start(target, { label: 'tu' });
    const w = await env.client.start(timed, { runId: t.id, timeout: '1 hour' });
    await env.waitFor(w, 'waiting', { timeout: '20s' });
    await env.client.signal(t.id, go, {});
    assert.deepEqual((await env.drive(w, { timeout: '20s' })).output, { output: { label: 'tu', done: true } });
    const bad = await env.client.start(timed, { runId: t.id, timeout: 'soon' });
    const out = (await env.drive(bad, { timeout: '20s' })).output as { other: string };
    assert.match(out.other, /^ValidationError: .*timeout/);
    const { rows } = await env.pool.query(`select kind from trellis.steps where run_id = $1 order by seq`, [bad.id]);
    assert.deepEqual(rows.map((r) => r.kind), ['sleep']);
  });

  it('wakes a parent attached to another parent\'s child by its key when the child ends, with no timer', async () => {
    const p1 = await env.client.start(shared, { label: 'g' });
    await env.waitFor(p1, 'waiting', { timeout: '20s' });
    const p2 = await env.client.start(shared, { label: 'g' });
    await env.waitFor(p2, 'waiting', { timeout: '20s' });
    assert.equal((await env.client.get(p2.id))?.runAt, null, 'no 30-second look: the watch wakes it');
    const child = (await env.pool.query<{ id: string }>(`select id::text from trellis.runs where workflow = 'wfr-target' and key = 'shared-g'`)).rows[0]!.id;
    assert.deepEqual(await watches(child), [p2.id]);
    await env.client.signal(child, go, {});
    assert.deepEqual(await p1.result({ timeout: '20s' }), { label: 'g', done: true });
    assert.deepEqual(await p2.result({ timeout: '20s' }), { label: 'g', done: true });
  });

  it('refuses a replay that waits for another run at the same call (non-determinism)', async () => {
    const a = await env.client.start(target, { label: 'h' });
    const b = await env.client.start(target, { label: 'i' });
    const w = await env.client.start(waiter, { runId: a.id, name: 'the-run' });
    await env.waitFor(w, 'waiting', { timeout: '20s' });
    // The call's record now names another run (ended), as a code change
    // between deploys would; a signal wakes it to replay.
    await env.client.signal(b.id, go, {});
    await b.result({ timeout: '20s' });
    await env.pool.query(`update trellis.steps set output = jsonb_build_object('child', $2::uuid) where run_id = $1 and kind = 'child'`, [w.id, b.id]);
    await env.client.signal(w.id, 'poke', {});
    const done = await env.waitFor(w, 'failed', { timeout: '20s' });
    assert.match((done.error as { message?: string } | null)?.message ?? '', /waits for run .* but the history has it waiting for run/);
  });
});
