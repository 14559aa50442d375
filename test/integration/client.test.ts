import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Kysely, PostgresDialect, sql } from 'kysely';
import { z } from 'zod';
import { defineWorkflow } from '../../src/workflow/define.ts';
import { NotFoundError, PayloadTooLargeError, SchemaVersionError, TimeoutError, ValidationError } from '../../src/errors.ts';
import { SCHEMA_SQL_REVISION } from '../../src/protocol/schema-version.generated.ts';
import { createClient, type Client } from '../../src/client/client.ts';
import { createWorker } from '../../src/worker/worker.ts';
import { silentLogger } from '../../src/protocol/logger.ts';
import { freshDatabase, type TestDatabase } from '../helpers/db.ts';
import { deferred, type Engine, startEngine } from '../helpers/engine.ts';
import { waitFor } from '../helpers/wait.ts';

let db: TestDatabase;
let engine: Engine;
let idle: Client; // a client whose runs no worker serves (queue 'parked')

const order = defineWorkflow({ name: 'order', input: z.object({ orderId: z.string() }) }, async (ctx, { orderId }) => {
  return ctx.step('confirm', () => ({ confirmed: orderId }));
});
const parked = defineWorkflow({ name: 'parked', queue: 'parked', input: z.object({ i: z.number() }) }, async () => 'never');

const runCount = async () => Number((await db.pool.query('select count(*)::int as n from trellis.runs')).rows[0].n);

before(async () => {
  db = await freshDatabase();
  await db.pool.query('create table public.orders (id text primary key)');
  engine = await startEngine(db, { workflows: [order] });
  idle = createClient({ pool: db.pool, logger: silentLogger });
});
after(async () => {
  await idle.close();
  await engine.stop();
  await db.close();
});

describe('starting inside the caller transaction', () => {
  it('a pg transaction that rolls back leaves no run and no business row', async () => {
    const before = await runCount();
    const c = await db.pool.connect();
    try {
      await c.query('begin');
      await c.query(`insert into public.orders (id) values ('o-rollback')`);
      await engine.client.start(order, { orderId: 'o-rollback' }, { tx: c, key: 'o-rollback' });
      await c.query('rollback');
    } finally {
      c.release();
    }
    assert.equal(await runCount(), before);
    assert.equal((await db.pool.query(`select 1 from public.orders where id = 'o-rollback'`)).rowCount, 0);
  });

  it('a pg transaction that commits creates exactly one run, which completes', async () => {
    const before = await runCount();
    const c = await db.pool.connect();
    let id: string;
    try {
      await c.query('begin');
      await c.query(`insert into public.orders (id) values ('o-commit')`);
      id = (await engine.client.start(order, { orderId: 'o-commit' }, { tx: c, key: 'o-commit' })).id;
      await c.query('commit');
    } finally {
      c.release();
    }
    assert.equal(await runCount(), before + 1);
    assert.deepEqual(await engine.client.result(id, { timeout: '10s' }), { confirmed: 'o-commit' });
  });

  it('a Kysely transaction commits or rolls back together with the start', async () => {
    const k = new Kysely<{ 'public.orders': { id: string } }>({ dialect: new PostgresDialect({ pool: db.pool }) });
    const before = await runCount();
    await assert.rejects(k.transaction().execute(async (trx) => {
      await trx.insertInto('public.orders').values({ id: 'k-rollback' }).execute();
      await engine.client.start(order, { orderId: 'k-rollback' }, { tx: trx });
      throw new Error('business rule failed');
    }), /business rule failed/);
    assert.equal(await runCount(), before);
    const id = await k.transaction().execute(async (trx) => {
      await trx.insertInto('public.orders').values({ id: 'k-commit' }).execute();
      const run = await engine.client.start(order, { orderId: 'k-commit' }, { tx: trx });
      // Visible inside the transaction, not yet outside it.
      const inside = await sql<{ n: number }>`select count(*)::int as n from trellis.runs where id = ${run.id}`.execute(trx);
      assert.equal(inside.rows[0]?.n, 1);
      return run.id;
    });
    assert.equal(await runCount(), before + 1);
    assert.deepEqual(await engine.client.result(id, { timeout: '10s' }), { confirmed: 'k-commit' });
  });
});

describe('client', () => {
  it('start with the same key returns the same run', async () => {
    const a = await idle.start(parked, { i: 1 }, { key: 'same' });
    const b = await idle.start(parked, { i: 2 }, { key: 'same' });
    assert.equal(a.id, b.id);
  });

  it('bad input gets a typed error and writes nothing', async () => {
    const before = await runCount();
    await assert.rejects(idle.start(parked, { i: 'x' } as never), ValidationError);
    await assert.rejects(idle.start('no-such-workflow', {}), NotFoundError);
    await assert.rejects(idle.start(`x'; drop table trellis.runs; --`, {}), ValidationError);
    await assert.rejects(idle.start(parked, { i: 1 }, { queue: `q"uote` }), ValidationError);
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    await assert.rejects(idle.start('parked', cyclic), ValidationError);
    await assert.rejects(idle.start('parked', { big: 'x'.repeat(1_100_000) }), PayloadTooLargeError);
    await assert.rejects(idle.start(parked, { i: 1 }, { runAt: 'not a date' }), ValidationError);
    await assert.rejects(idle.start(parked, { i: 1 }, { priority: 1.5 }), ValidationError);
    await assert.rejects(idle.get('not-a-uuid'), ValidationError);
    assert.equal(await runCount(), before);
  });

  it('a start by name is checked against the input shape the registration stored, in SQL', async () => {
    await idle.start(parked, { i: 1 });
    const [row] = (await db.pool.query(`select input_schema from trellis.workflows where name = 'parked'`)).rows;
    assert.deepEqual(row.input_schema, { type: 'object', properties: { i: { type: 'number' } }, required: ['i'] });
    const before = await runCount();
    await assert.rejects(idle.start('parked', { i: 'x' }), (error: Error) => {
      assert.ok(error instanceof ValidationError);
      assert.equal(error.message, 'input of parked version 1 does not match its schema: $.i: expected number, got string');
      return true;
    });
    await assert.rejects(idle.start('parked', {}), /\$\.i: required/);
    assert.equal(await runCount(), before);
    await idle.start('parked', { i: 2 });
    assert.equal(await runCount(), before + 1);
  });

  /**
   * The schema set back by `column`, which `message` then reports: nothing
   * is written at the first start or signal, and the same client starts once
   * the schema is current again (the failure is not cached).
   */
  async function behindSchema(column: 'migration' | 'sql_revision', message: (current: number) => RegExp): Promise<void> {
    const { rows: [info] } = await db.pool.query(`select ${column} as current from trellis.schema_info`);
    const behind = createClient({ pool: db.pool, logger: silentLogger });
    const before = await runCount();
    await db.pool.query(`update trellis.schema_info set ${column} = ${column} - 1`);
    try {
      await assert.rejects(behind.start(parked, { i: 1 }), (error: Error) => {
        assert.ok(error instanceof SchemaVersionError);
        assert.match(error.message, message(info.current));
        return true;
      });
      await assert.rejects(behind.signal(crypto.randomUUID(), 'go', {}), SchemaVersionError);
    } finally {
      await db.pool.query(`update trellis.schema_info set ${column} = $1`, [info.current]);
    }
    assert.equal(await runCount(), before);
    assert.ok((await behind.start(parked, { i: 2 })).id);
    await behind.close();
  }

  it('a schema behind this code is a SchemaVersionError at the first start or signal, and nothing is written', () =>
    behindSchema('migration', (m) => new RegExp(`at migration ${m - 1}, behind this client \\(${m}\\): run`)));

  it('functions at an older revision than this code (a release that changed sql/ only) are a SchemaVersionError at the first start or signal, and nothing is written', () =>
    behindSchema('sql_revision', (r) => {
      assert.equal(r, SCHEMA_SQL_REVISION);
      return new RegExp(`functions are at revision ${r - 1}, behind this client \\(${r}\\): run`);
    }));

  it('a start with the definition was validated by zod itself, so SQL does not check the shape again', async () => {
    const strict = defineWorkflow({ name: 'shape-skip', queue: 'parked', input: z.object({ i: z.number() }) }, async () => 'never');
    await idle.start(strict, { i: 1 });
    // A stored shape that refuses everything: only a start that skips the check gets through.
    await db.pool.query(`update trellis.workflows set input_schema = 'false', input_path = null where name = 'shape-skip'`);
    await assert.rejects(idle.start('shape-skip', { i: 1 }), /does not match its schema: \$: not allowed here/);
    const run = await idle.start(strict, { i: 3 });
    assert.ok(run.id);
  });

  it('result() times out with TimeoutError and rejects unknown runs with NotFoundError', async () => {
    const run = await idle.start(parked, { i: 3 });
    await assert.rejects(run.result({ timeout: 100 }), TimeoutError);
    await assert.rejects(idle.result(crypto.randomUUID(), { timeout: 1000 }), NotFoundError);
  });

  it('list filters and pages with a keyset cursor', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 7; i++) ids.push((await idle.start(parked, { i }, { key: `page-${i}`, metadata: { i } })).id);
    const seen: string[] = [];
    let cursor: string | undefined;
    let pages = 0;
    do {
      const page = await idle.list({ workflow: 'parked', status: 'pending', limit: 3, cursor });
      seen.push(...page.runs.map((r) => r.id));
      cursor = page.nextCursor;
      pages++;
    } while (cursor);
    for (const id of ids) assert.ok(seen.includes(id), `run ${id} listed`);
    assert.equal(new Set(seen).size, seen.length, 'no run listed twice');
    assert.ok(pages >= 3);
    const none = await idle.list({ workflow: 'parked', status: ['completed', 'failed'] });
    assert.equal(none.runs.length, 0);
    await assert.rejects(idle.list({ status: 'bogus' as never }), ValidationError);
    await assert.rejects(idle.list({ cursor: 'garbage' }), ValidationError);
  });

  it('runAt delays a run and keeps its priority', async () => {
    const later = await idle.start(parked, { i: 9 }, { runAt: new Date(Date.now() + 3_600_000), priority: 5 });
    const row = await idle.get(later.id);
    assert.equal(row?.priority, 5);
    assert.ok((row?.runAt?.getTime() ?? 0) > Date.now() + 3_000_000);
  });

  it('list filters by queue, key and creation time, paging every filter with a keyset cursor', async () => {
    const dbNow = async () => (await db.pool.query('select clock_timestamp() as t')).rows[0].t as Date;
    const pause = () => new Promise((r) => setTimeout(r, 10));
    const startAll = async (queue: string, n: number, tag: string) => {
      const ids: string[] = [];
      for (let i = 0; i < n; i++) ids.push((await idle.start(parked, { i }, { queue, key: `${tag}-${i}` })).id);
      return ids;
    };
    const listAll = async (filter: Parameters<Client['list']>[0]) => {
      const ids: string[] = [];
      const sizes: number[] = [];
      let cursor: string | undefined;
      do {
        const page = await idle.list({ ...filter, cursor });
        ids.push(...page.runs.map((r) => r.id));
        sizes.push(page.runs.length);
        cursor = page.nextCursor;
      } while (cursor && sizes.length < 50);
      return { ids, sizes };
    };
    // Batches in time order; creation-time bounds from the server's clock, 10 ms clear of each batch.
    const first = await startAll('list-a', 5, 'first');
    const other = await startAll('list-b', 2, 'other');
    await pause();
    const since = await dbNow();
    await pause();
    const middle = await startAll('list-a', 4, 'middle');
    await pause();
    const until = await dbNow();
    await pause();
    const last = await startAll('list-a', 3, 'last');
    const newestFirst = (ids: string[]) => [...ids].reverse();

    const byQueue = await listAll({ queue: 'list-a', limit: 2 });
    assert.deepEqual(byQueue.ids, newestFirst([...first, ...middle, ...last]));
    assert.deepEqual(byQueue.sizes, [2, 2, 2, 2, 2, 2]);
    assert.deepEqual((await listAll({ queue: 'list-b', limit: 1 })).ids, newestFirst(other));

    const byTime = await listAll({ queue: 'list-a', createdAfter: since, createdBefore: until, limit: 3 });
    assert.deepEqual(byTime.ids, newestFirst(middle));
    assert.deepEqual(byTime.sizes, [3, 1]);
    assert.deepEqual((await listAll({ workflow: 'parked', createdAfter: until, limit: 2 })).ids, newestFirst(last));
    assert.deepEqual((await listAll({ queue: 'list-a', createdBefore: since, limit: 4 })).ids, newestFirst(first));

    const byKey = await idle.list({ key: 'middle-2' });
    assert.deepEqual(byKey.runs.map((r) => [r.id, r.key, r.queue]), [[middle[2], 'middle-2', 'list-a']]);
    assert.equal(byKey.nextCursor, undefined);
    assert.deepEqual((await idle.list({ key: 'middle-2', queue: 'list-b' })).runs, []);
  });

  it('a higher-priority run is claimed first; equal priorities in start order', async () => {
    const executed: string[] = [];
    const ranked = defineWorkflow({ name: 'ranked', queue: 'ranked', input: z.object({ label: z.string() }) }, async (ctx, { label }) => {
      await ctx.step('record', () => executed.push(label));
    });
    // All pending before any worker serves them.
    const starts: [string, number][] = [['p0', 0], ['p5-first', 5], ['p-3', -3], ['p10', 10], ['p5-second', 5], ['p1', 1]];
    const ids: string[] = [];
    for (const [label, priority] of starts) ids.push((await idle.start(ranked, { label }, { priority })).id);
    const worker = createWorker({ pool: db.pool, workflows: [ranked], concurrency: 1, claimBatch: 1, pollInterval: 50, logger: silentLogger });
    await worker.start();
    try {
      for (const id of ids) await idle.result(id, { timeout: '10s' });
    } finally {
      await worker.stop({ timeout: 2000 });
    }
    assert.deepEqual(executed, ['p10', 'p5-first', 'p5-second', 'p1', 'p0', 'p-3']);
  });
});

describe('result()', () => {
  it('is woken by NOTIFY, not by its poll: a client polling hourly gets the result at once', async () => {
    const gate = deferred();
    const gated = defineWorkflow({ name: 'gated', queue: 'gated', input: z.object({}) }, async (ctx) => {
      await ctx.step('wait-for-test', () => gate.promise);
      return 'opened';
    });
    const worker = createWorker({ pool: db.pool, workflows: [gated], pollInterval: 50, logger: silentLogger });
    const hourly = createClient({ pool: db.pool, logger: silentLogger, resultPollInterval: '1h' });
    await worker.start();
    try {
      const run = await hourly.start(gated, {});
      await waitFor(async () => (await hourly.get(run.id))?.status === 'running', { what: 'the run to be running' });
      const result = run.result({ timeout: '10s' });
      // Let result() finish its first look at the row (still running), so the
      // only thing left that can wake it is the notification.
      await new Promise((r) => setTimeout(r, 300));
      const opened = Date.now();
      gate.resolve();
      assert.equal(await result, 'opened');
      const took = Date.now() - opened;
      assert.ok(took < 3000, `result() took ${took} ms after the run finished`);
    } finally {
      gate.resolve();
      await worker.stop({ timeout: 2000 });
      await hourly.close();
    }
  });
});
