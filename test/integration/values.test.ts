/**
 * ctx.setValue publishes a value while the run goes on (decision 0033):
 * client.waitForValue is woken by trellis:run_value (sent only while a
 * session watches), client.value / client.values and trellis.run_value read
 * the newest value of a key, a replay does not write a value again, a run
 * that ends without the key settles the wait as NotFoundError, and a value
 * that cannot be stored rejects in the code and records nothing.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { z } from 'zod';
import { createClient, type Client } from '../../src/client/client.ts';
import { NotFoundError, PayloadTooLargeError, TimeoutError, ValidationError } from '../../src/errors.ts';
import { silentLogger } from '../../src/protocol/logger.ts';
import { createWorker, type Worker } from '../../src/worker/worker.ts';
import { defineWorkflow } from '../../src/workflow/define.ts';
import { freshDatabase, type TestDatabase } from '../helpers/db.ts';
import { deferred } from '../helpers/engine.ts';
import { sentinelListener } from '../helpers/sentinel.ts';
import { waitFor } from '../helpers/wait.ts';

const checkout = defineWorkflow({ name: 'values-checkout', input: z.object({ order: z.string() }) }, async (ctx, { order }) => {
  const url = await ctx.step('session', () => `https://pay.example/${order}`);
  await ctx.setValue('payment-url', url);
  const paid = await ctx.waitForSignal<{ ok: boolean }>('paid');
  const ok = !paid.timedOut && paid.payload.ok;
  await ctx.setValue('state', ok ? 'paid' : 'declined');
  return ok;
});

let replays = 0;
const twice = defineWorkflow({ name: 'values-twice', input: z.object({}) }, async (ctx) => {
  replays++;
  await ctx.setValue('n', 1);
  await ctx.setValue('empty', null);
  await ctx.sleep('pause', '10ms');
  await ctx.setValue('n', { second: true });
  return 'done';
});

const silent = defineWorkflow({ name: 'values-none', input: z.object({}) }, async (ctx) => {
  await ctx.step('work', () => 1);
  return 'no value';
});

let gate = deferred();
const bad = defineWorkflow({ name: 'values-bad', input: z.object({}) }, async (ctx) => {
  const errors: string[] = [];
  for (const attempt of [() => ctx.setValue('bad"; drop table x', 1), () => ctx.setValue('big', 'x'.repeat(2_000_000)),
    () => ctx.setValue('fn', () => 1), () => ctx.setValue('cyclic', (() => { const o: Record<string, unknown> = {}; o.self = o; return o; })())]) {
    try {
      await attempt();
      errors.push('accepted');
    } catch (error) {
      errors.push(`${(error as Error).constructor.name}`);
    }
  }
  await ctx.setValue('ok', errors);
  await ctx.step('gate', () => gate.promise);
  return errors;
});

let db: TestDatabase;
let worker: Worker;
before(async () => {
  db = await freshDatabase();
  worker = createWorker({ pool: db.pool, workflows: [checkout, twice, silent, bad], pollInterval: 50, logger: silentLogger });
  await worker.start();
});
after(async () => {
  gate.resolve();
  await worker?.stop({ timeout: 2000 });
  await db?.close();
});

/** A client whose waiters poll hourly: only a NOTIFY can settle a wait within a test's bounds. */
const notifiedClient = (): Client => createClient({ pool: db.pool, logger: silentLogger, resultPollInterval: '1h' });

const valueRows = async (runId: string) =>
  (await db.pool.query(`select seq, name, output from trellis.steps where run_id = $1 and kind = 'value' order by seq`, [runId])).rows;

describe('ctx.setValue and client.waitForValue', () => {
  it('a waiter is woken by the value while the run waits on; signals later values; only watched sets notify', async () => {
    const listener = await sentinelListener(db.url, 'trellis:run_value');
    const client = notifiedClient();
    try {
      // Nobody watches: the value is set and no NOTIFY is sent.
      const quiet = await client.start(checkout, { order: 'o-0' });
      await waitFor(async () => (await client.get(quiet.id))?.status === 'waiting', { what: 'the quiet run waiting' });
      assert.deepEqual(await listener.until(), [], 'unwatched: no run_value NOTIFY');
      assert.equal(await client.waitForValue(quiet.id, 'payment-url', { timeout: '5s' }), 'https://pay.example/o-0', 'already set: at once');

      const run = await client.start(checkout, { order: 'o-1' });
      const url = await client.waitForValue<string>(run.id, 'payment-url', { timeout: '20s' });
      assert.equal(url, 'https://pay.example/o-1');
      const state = await client.get(run.id);
      assert.ok(state && state.status !== 'completed', 'the value came before the run ended');

      const later = client.waitForValue<string>(run.id, 'state', { timeout: '20s' });
      await client.signal(run.id, 'paid', { ok: true });
      assert.equal(await later, 'paid');
      assert.equal(await run.result({ timeout: '20s' }), true);
      const heard = await listener.until();
      assert.ok(heard.includes(run.id), `watched: run_value named the run (${heard.join(' ')})`);

      const v = await client.value<string>(run.id, 'payment-url');
      assert.equal(v?.value, 'https://pay.example/o-1');
      assert.ok(v?.setAt instanceof Date);
      assert.deepEqual((await client.values(run.id)).map((x) => [x.key, x.value]), [['payment-url', 'https://pay.example/o-1'], ['state', 'paid']]);
      assert.deepEqual((await client.history(run.id)).filter((s) => s.kind === 'value').map((s) => s.name), ['payment-url', 'state']);
    } finally {
      await client.close();
      await listener.close();
    }
  });

  it('the newest value of a key wins; a replay does not write a value again; JSON null is a value', async () => {
    const client = notifiedClient();
    try {
      replays = 0;
      const run = await client.start(twice, {});
      assert.equal(await run.result({ timeout: '20s' }), 'done');
      assert.ok(replays >= 2, 'the sleep made the code run again');
      assert.deepEqual((await valueRows(run.id)).map((r) => [r.seq, r.name, r.output]),
        [[0, 'n', 1], [1, 'empty', null], [3, 'n', { second: true }]], 'one row per call, none written twice');
      assert.deepEqual((await client.value(run.id, 'n'))?.value, { second: true });
      const empty = await client.value(run.id, 'empty');
      assert.ok(empty, 'a key set to null is set');
      assert.equal(empty.value, null);
      assert.equal(await client.waitForValue(run.id, 'empty', { timeout: '5s' }), null);
      const sql = (await db.pool.query(`select status, value, set_at is not null as set from trellis.run_value($1, 'n')`, [run.id])).rows;
      assert.deepEqual(sql, [{ status: 'completed', value: { second: true }, set: true }]);
      assert.deepEqual((await db.pool.query(`select key, value from trellis.run_values($1)`, [run.id])).rows,
        [{ key: 'empty', value: null }, { key: 'n', value: { second: true } }]);
      // In SQL, JSON null ('null'::jsonb), not SQL null (a key not set).
      assert.deepEqual((await db.pool.query(`select jsonb_typeof(value) as t, set_at is not null as set from trellis.run_value($1, 'empty')`, [run.id])).rows,
        [{ t: 'null', set: true }]);
      assert.deepEqual((await db.pool.query(`select jsonb_typeof(value) as t from trellis.run_values($1) where key = 'empty'`, [run.id])).rows,
        [{ t: 'null' }]);
    } finally {
      await client.close();
    }
  });

  it('a run that ends without the key, an unknown run and a timeout reject with typed errors', async () => {
    const client = notifiedClient();
    try {
      const run = await client.start(silent, {});
      const waiting = client.waitForValue(run.id, 'never', { timeout: '20s' });
      await assert.rejects(waiting, (e) => e instanceof NotFoundError && /completed without setting value never/.test(e.message));
      await assert.rejects(client.waitForValue('6f1c7a52-9d47-4c55-9f61-0a5c2c7f8f10', 'x', { timeout: '5s' }),
        (e) => e instanceof NotFoundError && /does not exist/.test(e.message));
      assert.equal(await client.value(run.id, 'never'), undefined);
      assert.deepEqual(await client.values(run.id), []);
      assert.deepEqual((await db.pool.query(`select * from trellis.run_value('6f1c7a52-9d47-4c55-9f61-0a5c2c7f8f10', 'x')`)).rows, []);

      const open = await client.start(checkout, { order: 'o-2' });
      await assert.rejects(client.waitForValue(open.id, 'state', { timeout: '300ms' }),
        (e) => e instanceof TimeoutError && new RegExp(`run ${open.id} did not set value state within 300 ms`).test(e.message));
      await client.cancel(open.id);
      await assert.rejects(client.value(open.id, "it's; drop"), ValidationError);
      await assert.rejects(client.waitForValue(open.id, '', {}), ValidationError);
      await assert.rejects(client.waitForValue('not-a-run', 'k'), ValidationError);
    } finally {
      await client.close();
    }
  });

  it('a value that cannot be stored rejects in the code and records nothing', async () => {
    const client = notifiedClient();
    try {
      gate = deferred();
      const run = await client.start(bad, {});
      const errors = await client.waitForValue<string[]>(run.id, 'ok', { timeout: '20s' });
      assert.deepEqual(errors, [ValidationError.name, PayloadTooLargeError.name, ValidationError.name, ValidationError.name]);
      assert.deepEqual((await valueRows(run.id)).map((r) => [r.seq, r.name]), [[0, 'ok']], 'only the stored value took a call');
      gate.resolve();
      assert.deepEqual(await run.result({ timeout: '20s' }), errors);
    } finally {
      gate.resolve();
      await client.close();
    }
  });

  it('a run the waiting client\'s own worker executes wakes it too', async () => {
    const client = notifiedClient();
    const local = createWorker({ pool: db.pool, client, workflows: [checkout], pollInterval: 50, logger: silentLogger, purge: false });
    await local.start();
    try {
      const run = await client.start(checkout, { order: 'o-3' });
      assert.equal(await client.waitForValue(run.id, 'payment-url', { timeout: '20s' }), 'https://pay.example/o-3');
      const state = client.waitForValue(run.id, 'state', { timeout: '20s' });
      await client.signal(run.id, 'paid', { ok: false });
      assert.equal(await state, 'declined');
      assert.equal(await run.result({ timeout: '20s' }), false);
    } finally {
      await local.stop({ timeout: 2000 });
      await client.close();
    }
  });
});
