/**
 * ctx.transaction: the body's writes and the step's record commit in one
 * transaction. A failed attempt, a lost lease or a timeout leaves none of
 * the body's writes; a serialization failure runs the body again in the
 * same attempt; a replay returns the recorded result without running it;
 * `tx` passed to the client starts and signals other runs exactly once.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { z } from 'zod';
import { createClient, type Client } from '../../src/client/client.ts';
import { StepFailedError, ValidationError } from '../../src/errors.ts';
import { silentLogger } from '../../src/protocol/logger.ts';
import { createWorker, type Worker } from '../../src/worker/worker.ts';
import { defineWorkflow } from '../../src/workflow/define.ts';
import { freshDatabase, type TestDatabase } from '../helpers/db.ts';
import { deferred } from '../helpers/engine.ts';
import { waitFor } from '../helpers/wait.ts';

let db: TestDatabase;
let client: Client;
let worker: Worker;
const bodies = new Map<string, number>();
const count = (key: string) => bodies.set(key, (bodies.get(key) ?? 0) + 1);

const ledger = async (order: string) =>
  (await db.pool.query<{ note: string }>('select note from app_ledger where order_id = $1 order by id', [order])).rows.map((r) => r.note);

const order = defineWorkflow({ name: 'tx-order', input: z.object({ order: z.string(), failFirst: z.boolean() }) }, async (ctx, input) => {
  const id = await ctx.transaction('book', async ({ tx, attempt }) => {
    count(`book:${input.order}`);
    await tx.query('insert into app_ledger (order_id, note) values ($1, $2)', [input.order, `attempt ${attempt}`]);
    if (input.failFirst && attempt === 1) throw new Error('card declined');
    const { rows } = await tx.query<{ n: string }>('select count(*) as n from app_ledger where order_id = $1', [input.order]);
    return { seen: Number(rows[0]?.n) };
  }, { retry: { maxAttempts: 3, initialDelay: 10, jitter: 0 } });
  await ctx.sleep('settle', '5ms'); // a second execution replays the transaction
  return id;
});

const retried = defineWorkflow({ name: 'tx-serialization', input: z.object({ order: z.string() }) }, async (ctx, { order: key }) => {
  return ctx.transaction('serial', async ({ tx, attempt }) => {
    const n = count(`serial:${key}`).get(`serial:${key}`) as number;
    await tx.query('insert into app_ledger (order_id, note) values ($1, $2)', [key, `body ${n}, attempt ${attempt}`]);
    if (n === 1) await tx.query(`do $$ begin raise exception 'conflict' using errcode = 'serialization_failure'; end $$`);
    const { rows } = await tx.query<{ level: string }>(`select current_setting('transaction_isolation') as level`);
    return { level: rows[0]?.level, attempt };
  }, { isolation: 'serializable' });
});

// Longer than a heartbeat's interval (1 s with the 3 s lease below): none may touch the run's row meanwhile.
const long = defineWorkflow({ name: 'tx-long-serializable', input: z.object({ order: z.string() }) }, async (ctx, { order: key }) => {
  return ctx.transaction('long', async ({ tx }) => {
    count(`long:${key}`);
    await tx.query('insert into app_ledger (order_id, note) values ($1, $2)', [key, 'long body']);
    await tx.query('select pg_sleep(1.3)');
    return 'committed';
  }, { isolation: 'repeatable read' });
});

const slow = defineWorkflow({ name: 'tx-timeout', input: z.object({ order: z.string() }) }, async (ctx, { order: key }) => {
  try {
    await ctx.transaction('slow', async ({ tx }) => {
      await tx.query('insert into app_ledger (order_id, note) values ($1, $2)', [key, 'before the sleep']);
      await tx.query(`select pg_sleep(60) /* tx-timeout ${key} */`);
    }, { timeout: '300ms', retry: { maxAttempts: 1 } });
    return 'no timeout';
  } catch (error) {
    return error instanceof StepFailedError ? error.message : `unexpected ${String(error)}`;
  }
});

let stolen = deferred();
const stealing = defineWorkflow({ name: 'tx-lease', input: z.object({ order: z.string() }) }, async (ctx, { order: key }) => {
  return ctx.transaction('record', async ({ tx, runId }) => {
    const n = count(`lease:${key}`).get(`lease:${key}`) as number;
    await tx.query('insert into app_ledger (order_id, note) values ($1, $2)', [key, `body ${n}`]);
    if (n === 1) {
      // Another worker takes the run over while this body runs (its lease token changes; the
      // token is made here: a Citus cluster refuses a volatile function in an update of a distributed table).
      try {
        await db.pool.query('update trellis.runs set lease_token = $2 where id = $1', [runId, crypto.randomUUID()]);
      } finally {
        stolen.resolve();
      }
    }
    return n;
  });
});

const shipment = defineWorkflow({ name: 'tx-shipment', input: z.object({ order: z.string() }) }, async (ctx) => {
  const paid = await ctx.waitForSignal<{ cents: number }>('paid', { timeout: '30s' });
  return paid.timedOut ? 'no payment' : `shipped after ${paid.payload.cents}`;
});

const checkout = defineWorkflow({ name: 'tx-checkout', input: z.object({ order: z.string() }) }, async (ctx, { order: key }) => {
  const ship = await ctx.transaction('start-shipment', async ({ tx }) => {
    count(`checkout:${key}`);
    await tx.query('insert into app_ledger (order_id, note) values ($1, $2)', [key, 'order placed']);
    return (await client.start(shipment, { order: key }, { tx, key: `ship-${key}` })).id;
  });
  await ctx.transaction('pay', ({ tx }) => client.signal(ship, 'paid', { cents: 1250 }, { tx }));
  return ship;
});

const queryBound = defineWorkflow({ name: 'tx-query-bound', input: z.object({}) }, async (ctx) => {
  try {
    await ctx.transaction('long-query', async ({ tx }) => {
      count('query-bound');
      await tx.query('select pg_sleep(3)');
    }, { retry: { maxAttempts: 2, initialDelay: 10 } });
    return 'no timeout';
  } catch (error) {
    return error instanceof StepFailedError ? error.message : String(error);
  }
});
const tinyPool = defineWorkflow({ name: 'tx-tiny-pool', input: z.object({}) }, async (ctx) => {
  try {
    await ctx.transaction('tiny', () => 1, { retry: { maxAttempts: 1 } });
    return 'ran';
  } catch (error) {
    return error instanceof StepFailedError ? error.message : String(error);
  }
});

let open = 0;
let mostOpen = 0;
const crowded = defineWorkflow({ name: 'tx-crowded', input: z.object({ n: z.number() }) }, async (ctx, { n }) => {
  return ctx.transaction('hold', async ({ tx }) => {
    open++;
    mostOpen = Math.max(mostOpen, open);
    try {
      await tx.query('select pg_sleep(0.2)');
      return n;
    } finally {
      open--;
    }
  });
});

// Its backend is terminated while the body is between queries (the test holds it there).
let terminated = deferred();
let hold = deferred<number>();
const severed = defineWorkflow({ name: 'tx-severed', input: z.object({ order: z.string() }) }, async (ctx, { order: key }) => {
  return ctx.transaction('severed', async ({ tx }) => {
    const n = count(`severed:${key}`).get(`severed:${key}`) as number;
    await tx.query('insert into app_ledger (order_id, note) values ($1, $2)', [key, `body ${n}`]);
    if (n === 1) {
      const { rows } = await tx.query<{ pid: number }>('select pg_backend_pid() as pid');
      hold.resolve(rows[0]!.pid);
      await terminated.promise;
    }
    await tx.query('select 1');
    return n;
  });
});

// Ignores its abort and never settles, holding a row lock.
const hung = defineWorkflow({ name: 'tx-hung', input: z.object({ order: z.string() }) }, async (ctx, { order: key }) => {
  try {
    await ctx.transaction('hang', async ({ tx }) => {
      await tx.query('insert into app_ledger (order_id, note) values ($1, $2)', [key, 'hung']);
      await tx.query(`update app_counter set n = n + 1 where id = 1`);
      await new Promise(() => {});
    }, { timeout: '200ms', retry: { maxAttempts: 1 } });
    return 'no timeout';
  } catch (error) {
    return error instanceof StepFailedError ? 'timed out' : String(error);
  }
});
const bump = defineWorkflow({ name: 'tx-bump', input: z.object({}) }, async (ctx) =>
  ctx.transaction('bump', async ({ tx }) => (await tx.query<{ n: number }>('update app_counter set n = n + 1 where id = 1 returning n')).rows[0]!.n));

// Fails to serialize three times, each try longer than half the lease: each try needs a lease of its own.
const contended = defineWorkflow({ name: 'tx-contended', input: z.object({ order: z.string() }) }, async (ctx, { order: key }) => {
  return ctx.transaction('contended', async ({ tx }) => {
    const n = count(`contended:${key}`).get(`contended:${key}`) as number;
    await tx.query('select pg_sleep(1.6)');
    if (n <= 3) await tx.query(`do $$ begin raise exception 'conflict' using errcode = 'serialization_failure'; end $$`);
    await tx.query('insert into app_ledger (order_id, note) values ($1, $2)', [key, `body ${n}`]);
    return n;
  }, { isolation: 'serializable' });
});

const misused = defineWorkflow({ name: 'tx-misused', input: z.object({ order: z.string(), how: z.enum(['commit', 'role']) }) }, async (ctx, { order: key, how }) => {
  try {
    await ctx.transaction('misuse', async ({ tx }) => {
      await tx.query('insert into app_ledger (order_id, note) values ($1, $2)', [key, how]);
      await tx.query(how === 'commit' ? 'commit' : 'set local role tx_nobody');
      return how;
    }, { retry: { maxAttempts: 1 } });
    return 'recorded';
  } catch (error) {
    return error instanceof StepFailedError ? error.message : String(error);
  }
});

const bad = defineWorkflow({ name: 'tx-bad', input: z.object({ order: z.string() }) }, async (ctx, { order: key }) => {
  const seen: string[] = [];
  try {
    await ctx.transaction('iso', () => 1, { isolation: 'snapshot' as never });
  } catch (error) {
    seen.push(error instanceof ValidationError ? 'bad isolation refused' : String(error));
  }
  try {
    await ctx.transaction('unstorable', async ({ tx }) => {
      await tx.query('insert into app_ledger (order_id, note) values ($1, $2)', [key, 'written with an unstorable result']);
      return () => 'a function';
    }, { retry: { maxAttempts: 1 } });
  } catch (error) {
    seen.push(error instanceof StepFailedError ? 'unstorable result failed the step' : String(error));
  }
  try {
    await ctx.transaction('swallowed', async ({ tx }) => {
      await tx.query('insert into app_ledger (order_id, note) values ($1, $2)', [key, 'before the failed query']);
      await tx.query('select 1 / 0').catch(() => undefined);
      return 'went on';
    }, { retry: { maxAttempts: 1 } });
  } catch (error) {
    seen.push(error instanceof StepFailedError && /PostgreSQL aborted the transaction/.test(error.message) ? 'an aborted transaction failed the step' : String(error));
  }
  return seen;
});

before(async () => {
  db = await freshDatabase();
  await db.pool.query(`create table app_ledger (id bigserial primary key, order_id text not null, note text not null);
    create table app_counter (id int primary key, n int not null); insert into app_counter values (1, 0);
    do $$ begin if not exists (select 1 from pg_roles where rolname = 'tx_nobody') then create role tx_nobody nologin; end if; end $$`);
  client = createClient({ pool: db.pool, logger: silentLogger });
  worker = createWorker({
    pool: db.pool, workflows: [order, retried, long, slow, stealing, shipment, checkout, bad, severed, hung, bump, contended, misused], pollInterval: 50, logger: silentLogger,
    leaseDuration: '3s',
  });
  await worker.start();
});
after(async () => {
  stolen.resolve();
  await worker?.stop({ timeout: 2000 });
  await client?.close();
  await db?.close();
});

describe('ctx.transaction', () => {
  it("commits the body's writes with the step; a failed attempt's writes roll back; a replay does not run the body", async () => {
    const run = await client.start(order, { order: 'o-1', failFirst: true });
    assert.deepEqual(await run.result({ timeout: '30s' }), { seen: 1 });
    assert.deepEqual(await ledger('o-1'), ['attempt 2'], 'the first attempt rolled back; the second committed');
    assert.equal(bodies.get('book:o-1'), 2, 'two attempts, and no run of the body after the sleep');
    const steps = (await db.pool.query(`select name, kind, status, attempts, output, delivered from trellis.steps where run_id = $1 order by seq`, [run.id])).rows;
    assert.deepEqual(steps[0], { name: 'book', kind: 'step', status: 'completed', attempts: 2, output: { seen: 1 }, delivered: 1 });
    assert.equal((await db.pool.query(`select count(*)::int as n from trellis.events where run_id = $1 and kind = 'step_completed'`, [run.id])).rows[0].n, 1,
      'one step_completed event, written in the same transaction');
  });

  it('a serialization failure runs the body again in a new transaction, in the same attempt', async () => {
    const run = await client.start(retried, { order: 's-1' });
    assert.deepEqual(await run.result({ timeout: '30s' }), { level: 'serializable', attempt: 1 });
    assert.deepEqual(await ledger('s-1'), ['body 2, attempt 1'], 'the first transaction rolled back');
    const [step] = (await db.pool.query(`select status, attempts from trellis.steps where run_id = $1`, [run.id])).rows;
    assert.deepEqual(step, { status: 'completed', attempts: 1 });
  });

  it('above read committed, heartbeats leave the run alone while the body runs: no serialization failure, one body', async () => {
    const run = await client.start(long, { order: 'r-1' });
    assert.equal(await run.result({ timeout: '30s' }), 'committed');
    assert.equal(bodies.get('long:r-1'), 1, 'the body ran once (a heartbeat during it would have failed the record)');
    assert.deepEqual(await ledger('r-1'), ['long body']);
    const [row] = (await db.pool.query(`select lease_token is null as released, status from trellis.runs where id = $1`, [run.id])).rows;
    assert.deepEqual(row, { released: true, status: 'completed' });
  });

  it("a timeout cancels the body's query and rolls its writes back", async () => {
    const run = await client.start(slow, { order: 't-1' });
    const message = await run.result({ timeout: '30s' });
    assert.match(message, /timed out after 300 ms/);
    assert.deepEqual(await ledger('t-1'), [], 'nothing the body wrote was committed');
    await waitFor(async () => (await db.pool.query(`select count(*)::int as n from pg_stat_activity where query like '%pg_sleep(60) /* tx-timeout t-1%' and pid <> pg_backend_pid()`)).rows[0].n === 0,
      { what: "the body's query cancelled", timeout: 10_000 });
  });

  it("a lease lost while the body runs commits nothing; the next execution runs the body again and commits once", async () => {
    stolen = deferred();
    const run = await client.start(stealing, { order: 'l-1' });
    await stolen.promise;
    // The refused record rolled the first body's row back (the run is held under the thief's token).
    await waitFor(async () => worker.stats.abandoned > 0, { what: 'the execution given up' });
    assert.deepEqual(await ledger('l-1'), [], "the first body's write was rolled back with the refused record");
    // The thief never comes: its lease runs out and the run is claimed again.
    await db.pool.query(`update trellis.runs set lease_expires_at = now() - interval '1 second' where id = $1`, [run.id]);
    assert.equal(await run.result({ timeout: '30s' }), 2);
    assert.deepEqual(await ledger('l-1'), ['body 2']);
  });

  it('passes tx to client.start and client.signal: another run started and signalled exactly once', async () => {
    const run = await client.start(checkout, { order: 'c-1' });
    const ship = await run.result({ timeout: '30s' });
    assert.equal(await client.result(ship, { timeout: '30s' }), 'shipped after 1250');
    assert.equal(bodies.get('checkout:c-1'), 1);
    assert.deepEqual(await ledger('c-1'), ['order placed']);
    assert.equal((await db.pool.query(`select count(*)::int as n from trellis.runs where workflow = 'tx-shipment' and key = 'ship-c-1'`)).rows[0].n, 1);
    assert.equal((await db.pool.query(`select count(*)::int as n from trellis.signals where run_id = $1`, [ship])).rows[0].n, 1);
  });

  it('a bad isolation level records nothing; a result JSON cannot hold fails the step and rolls the body back', async () => {
    const run = await client.start(bad, { order: 'b-1' });
    assert.deepEqual(await run.result({ timeout: '30s' }), ['bad isolation refused', 'unstorable result failed the step', 'an aborted transaction failed the step']);
    assert.deepEqual(await ledger('b-1'), []);
    const steps = (await db.pool.query(`select name, status from trellis.steps where run_id = $1 order by seq`, [run.id])).rows;
    assert.deepEqual(steps, [{ name: 'unstorable', status: 'failed' }, { name: 'swallowed', status: 'failed' }], 'the refused isolation took no call');
  });

  it("keeps two of the worker's pool connections free of transactions (heartbeats and checkpoints need them)", async () => {
    const pool = new pg.Pool({ connectionString: db.url, max: 3 });
    const small = createWorker({ pool, workflows: [crowded], pollInterval: 50, logger: silentLogger });
    try {
      await small.start();
      const runs = await Promise.all([1, 2, 3, 4].map((n) => client.start(crowded, { n })));
      assert.deepEqual(await Promise.all(runs.map((r) => r.result({ timeout: '30s' }))), [1, 2, 3, 4]);
      assert.equal(mostOpen, 1, 'a pool of 3 leaves one connection to transactions');
    } finally {
      await small.stop({ timeout: 2000 });
      await pool.end();
    }
  });

  it('a connection lost while the body waits between queries runs the body again in a new transaction (the worker lives on)', async () => {
    terminated = deferred();
    hold = deferred<number>();
    const run = await client.start(severed, { order: 'x-1' });
    const pid = await hold.promise;
    await db.pool.query('select pg_terminate_backend($1::integer)', [pid]);
    await waitFor(async () => (await db.pool.query('select count(*)::int as n from pg_stat_activity where pid = $1', [pid])).rows[0].n === 0,
      { what: 'the backend gone' });
    terminated.resolve();
    assert.equal(await run.result({ timeout: '30s' }), 2);
    assert.deepEqual(await ledger('x-1'), ['body 2']);
  });

  it("a body that ignores its abort and never settles loses its connection: its locks go, its slot is free again", async () => {
    const run = await client.start(hung, { order: 'h-1' });
    assert.equal(await run.result({ timeout: '30s' }), 'timed out');
    const next = await client.start(bump, {});
    assert.equal(await next.result({ timeout: '30s' }), 1, "the hung body's update rolled back, and its row lock went with it");
    assert.deepEqual(await ledger('h-1'), []);
  });

  it('above read committed, each run of a body that failed to serialize gets a lease of its own', async () => {
    const abandoned = worker.stats.abandoned;
    const run = await client.start(contended, { order: 'k-1' });
    assert.equal(await run.result({ timeout: '60s' }), 4);
    assert.equal(bodies.get('contended:k-1'), 4, 'four bodies (three failed to serialize), none lost to a lease');
    assert.equal(worker.stats.abandoned, abandoned);
    assert.deepEqual(await ledger('k-1'), ['body 4']);
  });

  it('a body that commits its transaction itself, or takes its role away, fails its attempt with why; the step is not recorded', async () => {
    const committed = await client.start(misused, { order: 'm-1', how: 'commit' });
    assert.match(await committed.result({ timeout: '30s' }), /ended its transaction itself \(COMMIT or ROLLBACK on tx\)/);
    const role = await client.start(misused, { order: 'm-2', how: 'role' });
    assert.match(await role.result({ timeout: '30s' }), /recording the step failed: permission denied.*did the body change its role/);
    assert.deepEqual(await ledger('m-2'), []);
    const steps = (await db.pool.query(`select r.input->>'order' as o, s.status, s.attempts from trellis.steps s
      join trellis.runs r on r.bucket = s.bucket and r.id = s.run_id where r.workflow = 'tx-misused' and s.name = 'misuse' order by 1`)).rows;
    assert.deepEqual(steps, [{ o: 'm-1', status: 'failed', attempts: 1 }, { o: 'm-2', status: 'failed', attempts: 1 }]);
  });

  it('a query longer than the pool\'s queryTimeout is a failed attempt (not a transaction run again for ever); a pool of 2 is refused', async () => {
    const timed = createWorker({ connectionString: db.url, queryTimeout: '1s', workflows: [queryBound], pollInterval: 50, logger: silentLogger });
    const pool2 = new pg.Pool({ connectionString: db.url, max: 2 });
    const tiny = createWorker({ pool: pool2, workflows: [tinyPool], pollInterval: 50, logger: silentLogger });
    try {
      await timed.start();
      await tiny.start();
      const run = await client.start(queryBound, {});
      assert.match(await run.result({ timeout: '60s' }), /failed after 2 attempt/);
      assert.equal(bodies.get('query-bound'), 2, 'one body per attempt');
      const refused = await client.start(tinyPool, {});
      assert.match(await refused.result({ timeout: '60s' }), /needs a worker pool of at least 3 connections \(this one has 2\)/);
    } finally {
      await timed.stop({ timeout: 2000 });
      await tiny.stop({ timeout: 2000 });
      await pool2.end();
    }
  });
});
