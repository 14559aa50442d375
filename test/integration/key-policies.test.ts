/**
 * `keyPolicy` of client.start and startMany end to end (decision 0036), with
 * a worker in the process (so a start may be handed to it): a singleton
 * ('reuse': one unfinished run per key, a new one after it finished), a
 * debounce ('replace': the last input of a burst runs once), cancel in
 * progress ('supersede': the newest start wins, the old run cleans up), and bad options
 * refused before anything is written.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { z } from 'zod';
import { CancelledError, DatabaseError, IllegalTransitionError, ValidationError } from '../../src/errors.ts';
import { backendId, waiterPid } from '../helpers/lock-wait.ts';
import { waitFor } from '../helpers/wait.ts';
import { createTestEnv, type TestEnv } from '../../src/testing/env.ts';
import { defineWorkflow } from '../../src/workflow/define.ts';

const seen: number[] = [];
const sync = defineWorkflow({ name: 'kp-sync', input: z.object({ n: z.number() }) }, async (ctx, { n }) =>
  ctx.step('sync', () => {
    seen.push(n);
    return n * 10;
  }));
const flaky = defineWorkflow({ name: 'kp-flaky', input: z.object({ fail: z.boolean() }) }, async (ctx, { fail }) =>
  ctx.step('maybe', () => {
    if (fail) throw new Error('asked to fail');
    return 'ok';
  }, { retry: { maxAttempts: 1 } }));

const cleanedUp: number[] = [];
/** Waits for a go signal; cleans up when cancelled. */
const resync = defineWorkflow({ name: 'kp-resync', input: z.object({ n: z.number() }) }, async (ctx, { n }) => {
  try {
    await ctx.waitForSignal('go');
    return ctx.step('sync', () => n * 10);
  } catch (error) {
    if (error instanceof CancelledError) await ctx.nonCancellable(() => ctx.step('clean-up', () => cleanedUp.push(n)));
    throw error;
  }
});

let env: TestEnv;
before(async () => {
  env = await createTestEnv({ workflows: [sync, flaky, resync] });
});
after(() => env.close());
const count = async () => (await env.pool.query<{ n: number }>('select count(*)::int as n from trellis.runs')).rows[0]!.n;
const hour = () => new Date(Date.now() + 3_600_000);

describe('keyPolicy', () => {
  it('reuse: one run per key until it finishes, then a new run takes the key; the old one keeps it as formerKey', async () => {
    const first = await env.client.start(sync, { n: 1 }, { key: 'acct-1', keyPolicy: 'reuse' });
    assert.equal(await first.result({ timeout: '20s' }), 10);
    // The default still returns the finished run.
    assert.equal((await env.client.start(sync, { n: 2 }, { key: 'acct-1' })).id, first.id);
    const second = await env.client.start(sync, { n: 2 }, { key: 'acct-1', keyPolicy: 'reuse' });
    assert.notEqual(second.id, first.id);
    assert.equal(await second.result({ timeout: '20s' }), 20);
    const old = await env.client.get(first.id);
    assert.deepEqual([old?.key, old?.formerKey], [null, 'acct-1']);
    const { runs } = await env.client.list({ workflow: 'kp-sync', key: 'acct-1' });
    assert.deepEqual(runs.map((r) => [r.id, r.key, r.formerKey]), [[second.id, 'acct-1', null]]);
    // An unfinished holder is returned, and keeps its input.
    const later = await env.client.start(sync, { n: 3 }, { key: 'acct-1', keyPolicy: 'reuse', runAt: hour() });
    assert.notEqual(later.id, second.id);
    const again = await env.client.start(sync, { n: 4 }, { key: 'acct-1', keyPolicy: 'reuse' });
    assert.equal(again.id, later.id);
    assert.deepEqual((await env.client.get(later.id))?.input, { n: 3 });
    await env.client.cancel(later.id);
  });

  it('supersede: a new start cancels the key\'s run under way (its clean-up runs) and takes the key at once', async () => {
    const first = await env.client.start(resync, { n: 1 }, { key: 'cust-9', keyPolicy: 'supersede' });
    await env.waitFor(first, 'waiting', { timeout: '20s' });
    const second = await env.client.start(resync, { n: 2 }, { key: 'cust-9', keyPolicy: 'supersede' });
    assert.notEqual(second.id, first.id);
    await assert.rejects(first.result({ timeout: '20s' }), CancelledError);
    assert.deepEqual(cleanedUp, [1], 'the superseded run\'s clean-up ran');
    const old = await env.client.get(first.id);
    assert.deepEqual([old?.status, old?.key, old?.formerKey], ['cancelled', null, 'cust-9']);
    assert.match((old?.error as { message: string }).message, new RegExp(`superseded by run ${second.id}`));
    // The key names the new run: get and a signal by key reach it.
    assert.equal((await env.client.get({ workflow: resync, key: 'cust-9' }))?.id, second.id);
    assert.equal(await env.client.get({ workflow: 'kp-resync', key: 'no-such-key' }), undefined);
    await assert.rejects(env.client.get({ workflow: resync } as never), ValidationError);
    await assert.rejects(env.client.get({ workflow: 'bad"name', key: 'k' }), ValidationError);
    await env.waitFor(second, 'waiting', { timeout: '20s' });
    await env.client.signal({ workflow: resync, key: 'cust-9' }, 'go', null);
    assert.equal(await second.result({ timeout: '20s' }), 20);
    // Once it has finished, supersede starts anew as reuse does.
    const third = await env.client.start(resync, { n: 3 }, { key: 'cust-9', keyPolicy: 'supersede' });
    assert.notEqual(third.id, second.id);
    assert.equal((await env.client.get(second.id))?.status, 'completed');
    await env.client.cancel(third.id);
  });

  it('replace: a burst of starts runs once, with the last input; after it finished the next start runs again', async () => {
    seen.length = 0;
    const a = await env.client.start(sync, { n: 1 }, { key: 'debounce', keyPolicy: 'replace', runAt: hour() });
    const b = await env.client.start(sync, { n: 2 }, { key: 'debounce', keyPolicy: 'replace', runAt: hour() });
    assert.equal(b.id, a.id);
    assert.deepEqual((await env.client.get(a.id))?.input, { n: 2 });
    // Due now: the worker takes it with the last input.
    const c = await env.client.start(sync, { n: 3 }, { key: 'debounce', keyPolicy: 'replace' });
    assert.equal(c.id, a.id);
    assert.equal(await c.result({ timeout: '20s' }), 30);
    assert.deepEqual(seen, [3]);
    const events = await env.pool.query<{ kind: string }>(`select kind from trellis.events where run_id = $1 order by id`, [a.id]);
    assert.deepEqual(events.rows.map((e) => e.kind).slice(0, 3), ['started', 'replaced', 'replaced']);
    const d = await env.client.start(sync, { n: 4 }, { key: 'debounce', keyPolicy: 'replace' });
    assert.notEqual(d.id, a.id);
    assert.equal(await d.result({ timeout: '20s' }), 40);
    assert.deepEqual(seen, [3, 4]);
  });

  it('startMany takes a policy per item', async () => {
    const [done] = await env.client.startMany(sync, [{ input: { n: 5 }, key: 'many' }]);
    await done!.result({ timeout: '20s' });
    const handles = await env.client.startMany(sync, [
      { input: { n: 6 }, key: 'many', keyPolicy: 'reuse', runAt: hour() },
      { input: { n: 7 }, key: 'many', keyPolicy: 'replace', runAt: hour() },
    ]);
    assert.notEqual(handles[0]!.id, done!.id);
    assert.equal(handles[1]!.id, handles[0]!.id);
    assert.deepEqual((await env.client.get(handles[0]!.id))?.input, { n: 7 });
    await env.client.cancel(handles[0]!.id);
  });

  it('a failed run that gave its key away cannot be retried (IllegalTransitionError): fork it', async () => {
    const failed = await env.client.start(flaky, { fail: true }, { key: 'job-9' });
    await assert.rejects(failed.result({ timeout: '20s' }));
    const next = await env.client.start(flaky, { fail: false }, { key: 'job-9', keyPolicy: 'reuse' });
    assert.equal(await next.result({ timeout: '20s' }), 'ok');
    await assert.rejects(env.client.retry(failed.id), (e: unknown) => e instanceof IllegalTransitionError && /fork it instead/.test(e.message));
    assert.equal((await env.client.get(failed.id))?.status, 'failed');
  });

  it('refuses a policy without a key, an unknown one, and one on a fork with ValidationError, starting nothing', async () => {
    const before = await count();
    await assert.rejects(env.client.start(sync, { n: 1 }, { keyPolicy: 'reuse' }), (e: unknown) => e instanceof ValidationError && /needs a key/.test(e.message));
    await assert.rejects(env.client.start(sync, { n: 1 }, { key: 'x', keyPolicy: 'upsert' as never }),
      (e: unknown) => e instanceof ValidationError && /keyPolicy must be 'return', 'reuse', 'replace' or 'supersede', not "upsert"/.test(e.message));
    await assert.rejects(env.client.startMany(sync, [{ input: { n: 1 }, keyPolicy: 'replace' }]),
      (e: unknown) => e instanceof ValidationError && /run 1: keyPolicy 'replace' needs a key/.test(e.message));
    const run = await env.client.start(sync, { n: 1 }, { runAt: hour() });
    await assert.rejects(env.client.fork(run.id, { key: 'f', keyPolicy: 'reuse' } as never),
      (e: unknown) => e instanceof ValidationError && /unknown start option "keyPolicy"/.test(e.message));
    // By name, SQL checks it (TR001 as ValidationError).
    // (Due in an hour: a run the worker finished at once could not be cancelled.)
    await assert.rejects(env.client.start('kp-sync', { n: 1 }, { key: 'x', keyPolicy: 'return', runAt: hour() }).then(async (h) => {
      await env.client.cancel(h.id);
      return env.pool.query(`select trellis.run_start('kp-sync', '{"n": 1}', '{"key": "y", "key_policy": "sometimes"}')`);
    }), /key_policy must be return, reuse, replace or supersede/);
    await env.client.cancel(run.id);
    assert.equal(await count(), before + 2);
  });

  it('return (the default): a start whose connection is lost is made again and gets the key\'s run; another policy rejects', async () => {
    // A start waits on the key's row that another transaction inserted and has not ended; its backend is terminated there.
    const lostWhileWaiting = async (key: string, start: () => Promise<{ id: string }>, end: 'commit' | 'rollback') => {
      const blocker = await env.pool.connect();
      try {
        await blocker.query('begin');
        const { rows: [held] } = await blocker.query<{ id: string }>(
          `select trellis.run_start('kp-sync', '{"n": 7}', jsonb_build_object('key', $1::text)) as id`, [key]);
        const holder = await backendId(blocker);
        const started = start();
        started.catch(() => undefined); // awaited by the caller
        const pid = await waitFor(() => waiterPid(env.pool, holder), { what: `the start of ${key} waiting on the key` });
        await env.pool.query('select pg_terminate_backend($1::int)', [pid]);
        await blocker.query(end);
        return { held: held!.id, started };
      } finally {
        await blocker.query('rollback').catch(() => undefined); // never back to the pool inside a transaction
        blocker.release();
      }
    };
    const rolledBack = await lostWhileWaiting('lost-1', () => env.client.start(sync, { n: 8 }, { key: 'lost-1' }), 'rollback');
    const made = await rolledBack.started;
    assert.notEqual(made.id, rolledBack.held);
    assert.equal(await env.client.result(made.id, { timeout: '20s' }), 80, 'made again after the lost connection');
    const committed = await lostWhileWaiting('lost-2', () => env.client.start(sync, { n: 9 }, { key: 'lost-2' }), 'commit');
    assert.equal((await committed.started).id, committed.held, 'made again: the key\'s run is returned');
    assert.equal(await env.client.result(committed.held, { timeout: '20s' }), 70);
    const reuse = await lostWhileWaiting('lost-3', () => env.client.start(sync, { n: 10 }, { key: 'lost-3', keyPolicy: 'reuse' }), 'rollback');
    await assert.rejects(reuse.started, (e: unknown) => e instanceof DatabaseError && e.retryable,
      'a start that may have started a run the retry would not return is the caller\'s to retry');
    const { rows } = await env.pool.query(`select key from trellis.runs where key like 'lost-%' order by key`);
    assert.deepEqual(rows.map((r) => r.key), ['lost-1', 'lost-2'], 'one run per key, none for the start that rejected');
  });
});
