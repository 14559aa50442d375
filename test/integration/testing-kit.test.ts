import assert, { AssertionError } from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { z } from 'zod';
import { ConfigurationError, IllegalTransitionError, TimeoutError, ValidationError, WorkflowFailedError } from '../../src/errors.ts';
import { randomUUID } from 'node:crypto';
import { migrate } from '../../src/schema/install.ts';
import { createTestEnv, type TestEnv } from '../../src/testing/env.ts';
import { waitFor } from '../helpers/wait.ts';
import { defineWorkflow } from '../../src/workflow/define.ts';
import { defineSignal } from '../../src/workflow/signal.ts';
import { adminUrl, testPool } from '../helpers/db.ts';
import { deferred } from '../helpers/engine.ts';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const approved = defineSignal('approved', z.object({ by: z.string() }));

const tenSleeps = defineWorkflow({ name: 'ten-sleeps', input: z.object({}) }, async (ctx) => {
  const start = ctx.now().getTime();
  for (let i = 0; i < 10; i++) await ctx.sleep(`nap-${i}`, '1 hour');
  return ctx.now().getTime() - start;
});

let flakyAttempts = 0;
const backoff = defineWorkflow({ name: 'backoff', input: z.object({}) }, async (ctx) => {
  const start = ctx.now().getTime();
  const attempt = await ctx.step('flaky', ({ attempt }) => {
    flakyAttempts++;
    if (attempt === 1) throw new Error('first attempt fails');
    return attempt;
  }, { retry: { maxAttempts: 2, backoff: 'constant', initialDelay: '1 hour', maxDelay: '1 hour', jitter: 0 } });
  return { attempt, waited: ctx.now().getTime() - start };
});

const stamp = defineWorkflow({ name: 'stamp', input: z.object({}) }, async (ctx) => ctx.now().toISOString());

const napper = defineWorkflow({ name: 'napper', input: z.object({ hours: z.number() }) }, async (ctx, { hours }) => {
  await ctx.sleep('nap', `${hours} hours`);
  return `slept ${hours}h`;
});
const parent = defineWorkflow({ name: 'parent', input: z.object({}) }, async (ctx) => {
  const out = await ctx.child(napper, { hours: 5 });
  return ctx.step('after-child', () => `parent saw: ${out}`);
});

const approval = defineWorkflow({ name: 'approval', input: z.object({ order: z.string() }) }, async (ctx, { order }) => {
  const answer = await ctx.waitForSignal(approved);
  if (answer.timedOut) return { order, by: null };
  return { order, by: answer.payload.by, signalId: answer.signalId };
});

/** Answers a quote after a one-day sleep (engine time): a request the env answers as its clock moves. */
const quoter = defineWorkflow({ name: 'quoter', input: z.object({}) }, async (ctx) => {
  const ask = await ctx.waitForSignal<{ qty: number }>('quote');
  await ctx.sleep('think', '1 day');
  if (!ask.timedOut) await ctx.reply(ask, { price: ask.payload.qty * 7 });
  return 'quoted';
});

let release = deferred();
const blocked = defineWorkflow({ name: 'blocked', input: z.object({}) }, async (ctx) => {
  await ctx.step('wait-for-test', () => release.promise);
  return 'released';
});

const broken = defineWorkflow({ name: 'broken', input: z.object({}) }, async (ctx) => {
  await ctx.step('boom', () => { throw new Error('kaput'); }, { retry: { maxAttempts: 1 } });
});

let env: TestEnv;
before(async () => {
  env = await createTestEnv({ workflows: [tenSleeps, backoff, stamp, napper, parent, approval, blocked, broken, quoter], serverUrl: adminUrl() });
});
after(() => env.close());

describe('runToEnd', () => {
  it('drives a run through 10 consecutive one-hour sleeps', async () => {
    const started = performance.now();
    const slept = await env.runToEnd(tenSleeps, {}, { timeout: '20s' });
    assert.ok(slept >= 10 * HOUR && slept < 10 * HOUR + 60_000, `slept ${slept} ms of engine time`);
    assert.ok(performance.now() - started < 10_000);
  });

  it('drives several runs with 10 sleeps each, one after another', async () => {
    for (let i = 0; i < 3; i++) assert.ok((await env.runToEnd(tenSleeps, {}, { timeout: '20s' })) >= 10 * HOUR);
  });

  it('advances the clock over a step retry backoff of 1 hour', async () => {
    const before = flakyAttempts;
    const started = performance.now();
    const out = await env.runToEnd(backoff, {}, { timeout: '20s' });
    assert.equal(out.attempt, 2);
    assert.equal(flakyAttempts - before, 2);
    assert.ok(out.waited >= HOUR, `waited ${out.waited} ms of engine time`);
    assert.ok(performance.now() - started < 10_000, 'in much less than an hour of real time');
  });

  it('advances the clock to a runAt 2 days ahead', async () => {
    const runAt = new Date((await env.now()).getTime() + 2 * DAY);
    const ranAt = new Date(await env.runToEnd(stamp, {}, { runAt, timeout: '20s' }));
    assert.ok(ranAt.getTime() >= runAt.getTime(), `ran at ${ranAt.toISOString()}, due ${runAt.toISOString()}`);
    assert.ok(ranAt.getTime() < runAt.getTime() + 60_000);
  });

  it('advances the clock to the timer of a sleeping child while the parent waits on it', async () => {
    const before = (await env.now()).getTime();
    assert.equal(await env.runToEnd(parent, {}, { timeout: '20s' }), 'parent saw: slept 5h');
    assert.ok((await env.now()).getTime() - before >= 5 * HOUR);
  });

  it('throws WorkflowFailedError for a run that fails', async () => {
    await assert.rejects(env.runToEnd(broken, {}), (e: unknown) => e instanceof WorkflowFailedError && /kaput/.test(e.message));
  });

  it('throws ValidationError listing the run when it waits for a signal nobody sends', async () => {
    await assert.rejects(env.runToEnd(approval, { order: 'nobody' }), (e: unknown) =>
      e instanceof ValidationError && /wait with no timer/.test(e.message) && /\(approval, queue default\): waiting, with no timer/.test(e.message));
  });

  it('throws TimeoutError naming the running run when it does not end in time', async () => {
    release = deferred();
    const run = await env.start(blocked, {});
    await assert.rejects(env.drive(run, { timeout: '300ms' }), (e: unknown) =>
      e instanceof TimeoutError && e.message.includes(run.id) && /\(blocked, queue default\): running, held by /.test(e.message));
    release.resolve();
    assert.equal((await env.drive(run)).output, 'released');
  });
});

describe('waitFor', () => {
  it('throws IllegalTransitionError at once, with the error, when the run finished in another status', async () => {
    const run = await env.start(broken, {});
    const started = performance.now();
    await assert.rejects(env.waitFor(run, 'waiting', { timeout: '10s' }), (e: unknown) =>
      e instanceof IllegalTransitionError && new RegExp(`run ${run.id} is failed \\(.*kaput.*\\); it will not become waiting`).test(e.message));
    assert.ok(performance.now() - started < 5000);
  });
});

describe('request', () => {
  it('asks a run and gets its answer, the clock moved past the run\'s sleep meanwhile', async () => {
    const run = await env.start(quoter, {});
    const answer = env.request<{ price: number }>(run, 'quote', { qty: 6 }, { id: 'q-1', timeout: '20s' });
    // Asleep for a day of engine time (the request read): the sleep's call is recorded.
    await waitFor(async () => (await env.history(run)).some((c) => c.kind === 'sleep' && c.name === 'think'), { what: 'the run to sleep' });
    await env.advance('1 day');
    assert.deepEqual(await answer, { price: 42 });
    assert.deepEqual(await env.request(run.id, 'quote', { qty: 1 }, { id: 'q-1', timeout: '20s' }), { price: 42 }, 'a repeat: the same answer');
    assert.equal((await env.drive(run)).output, 'quoted');
  });
});

describe('signal', () => {
  it('sends a signal by handle, drops a repeated id, and drive finishes the run', async () => {
    const run = await env.start(approval, { order: 'A-1' });
    assert.equal(await env.signal(run, approved, { by: 'ada' }, { id: 'mail-1' }), true);
    assert.equal(await env.signal(run.id, approved, { by: 'eve' }, { id: 'mail-1' }), false);
    const done = await env.drive(run);
    assert.equal(done.status, 'completed');
    assert.deepEqual(done.output, { order: 'A-1', by: 'ada', signalId: 'mail-1' });
    const { rows } = await env.pool.query('select count(*)::int as n from trellis.signals where run_id = $1', [run.id]);
    assert.equal(rows[0].n, 1);
  });

  it('sends a signal by workflow and key, validating the payload first', async () => {
    const run = await env.start(approval, { order: 'A-2' }, { key: 'order-A-2' });
    await env.waitFor(run, 'waiting');
    await assert.rejects(env.signal({ workflow: approval, key: 'order-A-2' }, approved, { by: 42 } as never), ValidationError);
    assert.equal(await env.signal({ workflow: approval, key: 'order-A-2' }, approved, { by: 'lin' }), true);
    assert.deepEqual(await run.result({ timeout: '10s' }), { order: 'A-2', by: 'lin', signalId: null });
  });
});

describe('assertHistory', () => {
  it('passes when the calls match on the fields given', async () => {
    const run = await env.start(parent, {});
    await env.drive(run);
    await env.assertHistory(run, [
      { seq: 0, kind: 'child', name: 'napper', status: 'completed', output: 'slept 5h' },
      { name: 'after-child' },
    ]);
  });

  it('fails with a message naming the run and a diff of the calls', async () => {
    const run = await env.start(backoff, {});
    await env.drive(run);
    const expected = [{ kind: 'now' }, { kind: 'step', name: 'flakey', status: 'completed', attempts: 1 }, { kind: 'now' }] as const;
    const error = await env.assertHistory(run, expected).then(
      () => assert.fail('assertHistory passed'),
      (e: unknown) => e,
    );
    assert.ok(error instanceof AssertionError);
    const message = error.message;
    assert.match(message, new RegExp(`^history of run ${run.id} does not match \\(3 call\\(s\\), 3 expected\\)`));
    assert.match(message, /\+ actual - expected/);
    // One line per call: the differing call shows as one + line and one - line.
    assert.match(message, /\+ +"\{ kind: 'step', name: 'flaky', status: 'completed', attempts: 2 \}"/);
    assert.match(message, /- +"\{ kind: 'step', name: 'flakey', status: 'completed', attempts: 1 \}"/);
    assert.match(message, /^ +"\{ kind: 'now' \}",?$/m);
  });

  it('fails when the run has more calls than expected, showing the extra ones', async () => {
    const run = await env.start(parent, {});
    await env.drive(run);
    await assert.rejects(env.assertHistory(run, [{ kind: 'child', name: 'napper' }]), (e: unknown) =>
      e instanceof AssertionError && /\(2 call\(s\), 1 expected\)/.test(e.message) && /after-child/.test(e.message));
  });

  it('refuses an expectation with a field it does not know', async () => {
    const run = await env.start(stamp, {});
    await env.drive(run);
    await assert.rejects(env.assertHistory(run, [{ nmae: 'now' } as never]), /unknown field\(s\) nmae/);
  });
});

describe('the virtual clock of the env', () => {
  it('survives a migrate() that re-applies sql/, by code under test that connects with env.url', async () => {
    const pool = testPool({ connectionString: env.url, max: 1 });
    try {
      await env.pool.query(`update trellis.schema_info set sql_hash = 'stale'`);
      assert.equal((await migrate(pool)).functionsApplied, true);
      const before = (await env.now()).getTime();
      await env.advance('1 day');
      assert.ok((await env.now()).getTime() - before >= DAY);
    } finally {
      await pool.end();
    }
  });
});

describe('bad input to the test kit', () => {
  it('createTestEnv with a bad option throws and leaves no database (nor an open pool) behind', async () => {
    const envDatabases = async () => {
      const pool = testPool({ connectionString: adminUrl(), max: 1 });
      try {
        return (await pool.query<{ datname: string }>(`select datname from pg_database where datname like 'trellis_env_%' order by datname`)).rows.map((r) => r.datname);
      } finally {
        await pool.end();
      }
    };
    const before = await envDatabases();
    await assert.rejects(createTestEnv({ workflows: [stamp], concurrency: -1, serverUrl: adminUrl() }), ValidationError);
    await assert.rejects(createTestEnv({ workflows: [stamp, stamp], serverUrl: adminUrl() }), ValidationError);
    assert.deepEqual(await envDatabases(), before);
  });

  it('close() twice (an after() hook and a finally) closes once: the second call waits for the first and drops nothing twice', async () => {
    const own = await createTestEnv({ workflows: [stamp], serverUrl: adminUrl() });
    const [first, second] = [own.close(), own.close()];
    await Promise.all([first, second]);
    await own.close();
    assert.equal(first, second);
  });

  it('a closed env refuses every call with ConfigurationError; its url carries the clock option once, even from another env\'s url', async () => {
    const own = await createTestEnv({ workflows: [stamp], serverUrl: env.url });
    assert.equal(new URL(own.url).searchParams.get('options')?.match(/trellis\.virtual_clock=allowed/g)?.length, 1, own.url);
    await own.close();
    for (const call of [() => own.start(stamp, {}), () => own.advance('1 hour'), () => own.now(), () => own.waitFor(randomUUID(), 'completed'),
      () => own.drive(randomUUID()), () => own.runToEnd(stamp, {}), () => own.history(randomUUID())]) {
      await assert.rejects(call(), (e) => e instanceof ConfigurationError && /this test env is closed/.test(e.message));
    }
    // Its client and pool were closed with it: a call through them is a ConfigurationError too, not pg's plain Error.
    for (const call of [() => own.client.get(randomUUID()), () => own.client.start(stamp, {})]) {
      await assert.rejects(call(), (e) => e instanceof ConfigurationError && /this pool was ended/.test(e.message), 'the client');
    }
  });

  it('a run no worker of the env serves: result() times out by itself, and the timeouts name the workflow the env does not serve', async () => {
    const stray = defineWorkflow({ name: 'kit-stray', input: z.object({}) }, async () => 'never');
    const run = await env.start(stray, {});
    const waited = await env.waitFor(run, 'completed', { timeout: '200ms' }).catch((e: unknown) => e);
    assert.ok(waited instanceof TimeoutError && /no worker of this test env serves kit-stray@1/.test(waited.message), String(waited));
    const driven = await env.drive(run, { timeout: '300ms' }).catch((e: unknown) => e);
    assert.ok(driven instanceof TimeoutError && /no worker of this test env serves kit-stray@1/.test(driven.message), String(driven));
    // No timeout given: the env's handle gives result() one (30 s) rather than waiting for ever.
    const started = Date.now();
    const unended = await run.result().catch((e: unknown) => e);
    assert.ok(unended instanceof TimeoutError, String(unended));
    assert.ok(Date.now() - started >= 29_000 && Date.now() - started < 60_000, `${Date.now() - started} ms`);
    await env.client.cancel(run.id);
  });

  it('waitFor refuses a state no run has, at once (a typo waited out the whole timeout)', async () => {
    const run = await env.start(approval, { order: 'kit-typo' });
    await assert.rejects(env.waitFor(run, 'complete' as never), /waitFor needs one or more of pending/);
    await assert.rejects(env.waitFor(run, [] as never), ValidationError);
    await env.signal(run, approved, { by: 'kit' });
    await env.drive(run);
  });

  it('a run id that is not one is a ValidationError from drive, waitFor and assertHistory; a run that does not exist fails assertHistory', async () => {
    await assert.rejects(env.drive('not-a-uuid'), ValidationError);
    await assert.rejects(env.waitFor('not-a-uuid', 'completed'), ValidationError);
    await assert.rejects(env.assertHistory('not-a-uuid', []), ValidationError);
    await assert.rejects(env.assertHistory(crypto.randomUUID(), []), /does not exist/);
  });

  it('advance where the clock is not virtual is a typed error (it was the driver\'s)', async () => {
    const { rows: [saved] } = await env.pool.query<{ offset: string }>('select "offset"::text as offset from trellis.clock');
    await env.pool.query('delete from trellis.clock');
    try {
      await assert.rejects(env.advance('1 hour'), (e: Error) => e instanceof IllegalTransitionError && /virtual clock is not in use/.test(e.message));
    } finally {
      await env.pool.query('insert into trellis.clock (singleton, "offset") values (true, $1::interval)', [saved?.offset]);
    }
  });
});
