/**
 * Run deadlines end to end (decision 0031): `deadline` and `timeLimit` on
 * client.start and ctx.child, the worker's deadlines duty, the test kit's
 * advance and drive, and bad options refused before anything is written.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { z } from 'zod';
import { CancelledError, ValidationError } from '../../src/errors.ts';
import { createTestEnv, type TestEnv } from '../../src/testing/env.ts';
import { createWorker } from '../../src/worker/worker.ts';
import { defineWorkflow } from '../../src/workflow/define.ts';
import { ChildFailedError } from '../../src/errors.ts';
import { adminUrl } from '../helpers/db.ts';
import { waitFor } from '../helpers/wait.ts';

const cleanups: string[] = [];
/** Waits for a signal nobody sends; records its cleanup, which runs when it is cancelled. */
const awaitsApproval = defineWorkflow({ name: 'awaits-approval', input: z.object({ id: z.string() }) }, async (ctx, input) => {
  try {
    await ctx.waitForSignal('approved');
    return 'approved';
  } finally {
    await ctx.nonCancellable(() => ctx.step('cleanup', () => {
      cleanups.push(input.id);
      return 'cleaned';
    }));
  }
});
/** Gives its child 15 minutes and copes when it runs out. */
const impatient = defineWorkflow({ name: 'impatient', input: z.object({ id: z.string() }) }, async (ctx, input) => {
  try {
    return await ctx.child(awaitsApproval, { id: input.id }, { timeLimit: '15 minutes' });
  } catch (error) {
    if (error instanceof ChildFailedError) return `gave up: ${error.message}`;
    throw error;
  }
});

/** Sleeps 10 minutes per execution and continues as new, forever. */
const poller = defineWorkflow({ name: 'poller', input: z.object({ round: z.number() }) }, async (ctx, { round }) => {
  await ctx.sleep('interval', '10 minutes');
  return ctx.continueAsNew({ round: round + 1 });
});

/** Reports ctx.deadline in its first execution (a step) and after a sleep (a claim's replay). */
const knowsDeadline = defineWorkflow({ name: 'knows-deadline', input: z.object({}) }, async (ctx) => {
  const first = await ctx.step('first', () => ctx.deadline?.toISOString() ?? null);
  await ctx.sleep('nap', '1 minute');
  return { first, later: ctx.deadline?.toISOString() ?? null };
});

/** What the code saw of its cancellation: the step signal's abort reason and the CancelledError's message. */
const seen: { run: string; where: string; message: string }[] = [];
let stepStarted: (() => void) | undefined;
/** A step that runs until its signal aborts (the NOTIFY path), or a wait (the claim path). */
const reasonAware = defineWorkflow({ name: 'reason-aware', input: z.object({ step: z.boolean() }) }, async (ctx, { step }) => {
  try {
    if (step) {
      await ctx.step('until-aborted', ({ signal }) => new Promise<never>((_, reject) => {
        signal.addEventListener('abort', () => {
          seen.push({ run: ctx.runId, where: 'step signal', message: (signal.reason as Error).message });
          reject(signal.reason);
        });
        stepStarted?.();
      }), { retry: { maxAttempts: 1 } });
    } else {
      await ctx.waitForSignal('never');
    }
    return 'done';
  } catch (error) {
    seen.push({ run: ctx.runId, where: 'code', message: (error as Error).message });
    throw error;
  }
});

let env: TestEnv;
before(async () => {
  // A lease longer than any advance here: a test that moves the clock 2 hours
  // while a step runs would otherwise also expire that run's lease, and a
  // claim taking it back replays its code a second time (testing.md).
  env = await createTestEnv({ workflows: [awaitsApproval, impatient, poller, knowsDeadline, reasonAware], serverUrl: adminUrl(),
    deadlines: { interval: '50ms' }, leaseDuration: '1 day' });
});
after(() => env.close());

const runCount = async (): Promise<number> => (await env.pool.query<{ n: number }>('select count(*)::int as n from trellis.runs')).rows[0]!.n;

describe('run deadlines', () => {
  it('a started run past its timeLimit gets CancelledError at its wait; its cleanup runs', async () => {
    const run = await env.start(awaitsApproval, { id: 'a' }, { timeLimit: '1 hour' });
    const waiting = await env.waitFor(run, 'waiting');
    assert.equal(waiting.deadline!.getTime() - waiting.createdAt.getTime(), 3_600_000);
    await env.advance('59 minutes');
    assert.equal((await env.client.get(run.id))!.status, 'waiting');
    await env.advance('2 minutes');
    await assert.rejects(run.result(), (e: unknown) => e instanceof CancelledError);
    const done = (await env.client.get(run.id))!;
    assert.equal(done.status, 'cancelled');
    assert.match((done.error as { message: string }).message, /^deadline .* passed$/);
    assert.ok(cleanups.includes('a'), 'the workflow saw CancelledError and ran its cleanup');
  });

  it('the worker\'s deadlines duty cancels an overdue run by itself', async () => {
    const before = env.worker.stats.overdue;
    const run = await env.start(awaitsApproval, { id: 'b' }, { deadline: new Date((await env.now()).getTime() + 5_000) });
    await env.waitFor(run, 'waiting');
    // The waiting run would also wake at its deadline and cancel itself at its wait (the first test's path),
    // racing the duty under load: its own wake moved a day on, the duty is the one path left.
    await env.pool.query(`update trellis.runs set run_at = trellis.now() + interval '1 day' where id = $1`, [run.id]);
    await assert.rejects(run.result({ timeout: '30s' }), (e: unknown) => e instanceof CancelledError);
    assert.ok(env.worker.stats.overdue > before, 'cancelled by this worker\'s duty');
  });

  it('a run that never started ends cancelled at once, without running any code', async () => {
    const run = await env.client.start('awaits-approval', { id: 'c' }, { queue: 'nobody-serves-this', timeLimit: '10 minutes' });
    await env.advance('11 minutes');
    const done = (await env.client.get(run.id))!;
    assert.equal(done.status, 'cancelled');
    assert.equal(done.attempt, 0);
    assert.ok(!cleanups.includes('c'));
  });

  it('a child\'s timeLimit cancels the child; the parent gets ChildFailedError and goes on (runToEnd drives to the deadline)', async () => {
    const out = await env.runToEnd(impatient, { id: 'd' });
    assert.match(out, /^gave up: child run .* was cancelled: deadline .* passed$/);
    const { rows } = await env.pool.query<{ status: string; deadline_ms: number }>(
      `select status, extract(epoch from deadline_at - created_at) * 1000 as deadline_ms from trellis.runs
        where parent_run_id is not null and input->>'id' = 'd'`);
    assert.deepEqual(rows.map((r) => [r.status, Number(r.deadline_ms)]), [['cancelled', 900_000]]);
  });

  it('a deadline holds through continue-as-new: the run keeps it from execution to execution', async () => {
    const run = await env.start(poller, { round: 0 }, { timeLimit: '25 minutes' });
    for (let i = 0; i < 3; i++) {
      const { execution } = await env.waitFor(run, 'waiting');
      await env.advance('10 minutes');
      // The timer fired: the next execution began (or the deadline ended the run).
      await waitFor(async () => {
        const now = (await env.client.get(run.id))!;
        return now.status === 'cancelled' || now.execution > execution;
      }, { what: `execution ${execution} to continue as new` });
    }
    const done = await env.waitFor(run.id, 'cancelled');
    assert.ok(done.execution >= 3, `execution ${done.execution}`);
    assert.match((done.error as { message: string }).message, /^deadline .* passed$/);
  });

  it('a paused run past its deadline is cancelled too', async () => {
    const run = await env.start(awaitsApproval, { id: 'p' }, { timeLimit: '1 hour' });
    await env.waitFor(run, 'waiting');
    await env.client.pause(run.id);
    await env.waitFor(run, 'paused');
    await env.advance('2 hours');
    const done = await env.waitFor(run.id, 'cancelled');
    assert.match((done.error as { message: string }).message, /^deadline .* passed$/);
    assert.ok(cleanups.includes('p'), 'its cleanup ran');
  });

  it('the code and a running step\'s signal see the deadline\'s reason, not a generic one (NOTIFY and claim paths)', async () => {
    const started = new Promise<void>((resolve) => { stepStarted = resolve; });
    const running = await env.start(reasonAware, { step: true }, { timeLimit: '1 hour' });
    await started;
    await env.advance('2 hours');
    await assert.rejects(running.result({ timeout: '20s' }), CancelledError);
    const waiting = await env.start(reasonAware, { step: false }, { timeLimit: '1 hour' });
    await env.waitFor(waiting, 'waiting');
    await env.advance('2 hours');
    await assert.rejects(waiting.result({ timeout: '20s' }), CancelledError);
    const of = (run: string) => seen.filter((s) => s.run === run).map((s) => `${s.where}: ${s.message.replace(/\d{4}-\S+Z/, '<time>')}`);
    assert.deepEqual(of(running.id), ['step signal: deadline <time> passed', 'code: deadline <time> passed']);
    assert.deepEqual(of(waiting.id), ['code: deadline <time> passed']);
    // An operator's reason reaches the code the same way.
    const cancelled = await env.start(reasonAware, { step: false });
    await env.waitFor(cancelled, 'waiting');
    await env.client.cancel(cancelled.id, 'customer asked');
    await assert.rejects(cancelled.result({ timeout: '20s' }), CancelledError);
    assert.deepEqual(of(cancelled.id), ['code: customer asked']);
  });

  it('ctx.deadline is the run\'s deadline, in the first execution and after a wait; null without one', async () => {
    const at = new Date((await env.now()).getTime() + 3_600_000);
    assert.deepEqual(await env.runToEnd(knowsDeadline, {}, { deadline: at }), { first: at.toISOString(), later: at.toISOString() });
    const limited = await env.start(knowsDeadline, {}, { timeLimit: '2 hours' });
    const { deadline } = await env.waitFor(limited, 'waiting');
    assert.ok(deadline);
    const out = await env.drive(limited);
    assert.deepEqual(out.output, { first: deadline.toISOString(), later: deadline.toISOString() });
    assert.deepEqual(await env.runToEnd(knowsDeadline, {}), { first: null, later: null });
  });

  it('refuses bad deadline options with ValidationError and writes nothing', async () => {
    const count = await runCount();
    const now = await env.now();
    const bad: [object, RegExp][] = [
      [{ deadline: new Date(now.getTime() + 60_000), timeLimit: '1 hour' }, /either a deadline or a timeLimit/],
      [{ deadline: 'tomorrow-ish' }, /deadline "tomorrow-ish" is not a date/],
      [{ timeLimit: 0 }, /timeLimit must be longer than zero/],
      [{ timeLimit: 'a while' }, /is not a duration/],
      [{ deadline: new Date(now.getTime() - 60_000) }, /is not after the run's start/],
      [{ deadline: new Date(now.getTime() + 60_000), runAt: new Date(now.getTime() + 120_000) }, /is not after the run's start/],
      [{ deadline: '2027-02-30T00:00:00Z' }, /deadline "2027-02-30T00:00:00Z" is not a date: no such day/],
      [{ runAt: '2027-02-29' }, /runAt "2027-02-29" is not a date: no such day/],
      [{ timeLimit: 1e-7 }, /timeLimit must be at least 1 millisecond/],
      [{ timelimit: '1 hour' }, /unknown start option "timelimit"/],
    ];
    for (const [options, message] of bad) {
      await assert.rejects(env.start(awaitsApproval, { id: 'x' }, options), (e: unknown) => {
        assert.ok(e instanceof ValidationError, `${JSON.stringify(options)}: ${String(e)}`);
        assert.match((e as Error).message, message);
        return true;
      });
    }
    assert.equal(await runCount(), count);
  });

  it('refuses a duty option that is not false or { interval, batch }', () => {
    for (const [name, value] of [['deadlines', 'yes'], ['deadlines', true], ['deadlines', null], ['deadlines', { bogus: 1 }], ['purge', []], ['schedules', { intervall: '1s' }]] as const) {
      assert.throws(() => createWorker({ connectionString: env.url, workflows: [awaitsApproval], [name]: value } as never),
        (e: unknown) => e instanceof ValidationError && new RegExp(`^${name} (must be false or an object|has unknown option)`).test((e as Error).message),
        `${name}: ${JSON.stringify(value)}`);
    }
  });

  it('refuses a bad deadlines worker option', () => {
    assert.throws(() => createWorker({ connectionString: env.url, workflows: [awaitsApproval], deadlines: { interval: '1ms' } }),
      (e: unknown) => e instanceof ValidationError && /deadlines\.interval/.test((e as Error).message));
    assert.throws(() => createWorker({ connectionString: env.url, workflows: [awaitsApproval], deadlines: { batch: 0 } }),
      (e: unknown) => e instanceof ValidationError && /deadlines\.batch/.test((e as Error).message));
  });
});
