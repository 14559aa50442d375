/**
 * Errors a new user meets first: a database without the trellis schema gives
 * the same SchemaVersionError message from the client and the worker, and a
 * result() that times out on a run no worker ever claimed says so.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { z } from 'zod';
import { createClient } from '../../src/client/client.ts';
import { SchemaVersionError, TimeoutError, ValidationError } from '../../src/errors.ts';
import { createWorker } from '../../src/worker/worker.ts';
import { defineWorkflow } from '../../src/workflow/define.ts';
import { silentLogger } from '../../src/protocol/logger.ts';
import { BUNDLE } from '../../src/schema/bundle.generated.ts';
import { migrate } from '../../src/schema/install.ts';
import { createDatabase, testPool } from '../helpers/db.ts';
import { useFreshDatabase } from '../helpers/database-fixture.ts';

const greet = defineWorkflow({ name: 'greet', input: z.object({ who: z.string() }) }, async (ctx, { who }) =>
  ctx.step('hello', () => `hello ${who}`));

describe('errors of the first contact', () => {
  const fx = useFreshDatabase();

  it('a database without the schema: client.start and worker.start throw the same SchemaVersionError', async () => {
    const empty = await createDatabase();
    const pool = testPool({ connectionString: empty.url, max: 2 });
    try {
      const client = createClient({ pool, logger: silentLogger });
      const fromClient = await client.start(greet, { who: 'ada' }).then(() => undefined, (e: unknown) => e);
      const fromName = await client.start('greet', { who: 'ada' }).then(() => undefined, (e: unknown) => e);
      await client.close();
      const worker = createWorker({ pool, workflows: [greet], logger: silentLogger });
      const fromWorker = await worker.start().then(() => undefined, (e: unknown) => e);
      await worker.stop().catch(() => undefined);
      for (const error of [fromClient, fromName, fromWorker]) {
        assert.ok(error instanceof SchemaVersionError, `a SchemaVersionError, not ${String(error)}`);
      }
      const messages = new Set([fromClient, fromName, fromWorker].map((e) => (e as Error).message));
      assert.equal(messages.size, 1, [...messages].join(' | '));
      assert.match([...messages][0]!, /not installed: run `trellis migrate`/);
      const { rows } = await pool.query(`select 1 from pg_namespace where nspname = 'trellis'`);
      assert.equal(rows.length, 0);
    } finally {
      await pool.end();
      await empty.drop();
    }
  });

  it('result({ timeout }) times out even when the pool has no free connection to look with', async () => {
    const pool = testPool({ connectionString: fx.db.url, max: 1 });
    const held = await pool.connect();
    const client = createClient({ pool, logger: silentLogger });
    try {
      const started = performance.now();
      await assert.rejects(client.result('00000000-0000-4000-8000-000000000001', { timeout: 300 }), (error: unknown) => {
        assert.ok(error instanceof TimeoutError, String(error));
        assert.match((error as Error).message, /did not finish within 300 ms/);
        return true;
      });
      assert.ok(performance.now() - started < 10_000, 'rejected within its bound');
    } finally {
      held.release();
      await client.close();
      await pool.end();
    }
  });

  it('result({ timeout }) on a run no worker ever claimed names the workflow, version and queue nobody serves', async () => {
    const client = createClient({ pool: fx.db.pool, logger: silentLogger });
    try {
      const run = await client.start(greet, { who: 'bob' }, { queue: 'nobody-listens' });
      await assert.rejects(run.result({ timeout: 300 }), (error: unknown) => {
        assert.ok(error instanceof TimeoutError, String(error));
        assert.match((error as Error).message,
          /did not finish within 300 ms: it is pending and no worker has claimed it: is a worker serving workflow greet version \S+ on queue nobody-listens running\?/);
        return true;
      });
    } finally {
      await client.close();
    }
  });
});

describe('a client deployed before its migration ran', () => {
  it('reads and schedule writes on a schema behind its code throw SchemaVersionError, not a missing column', async () => {
    const older = await createDatabase();
    const pool = testPool({ connectionString: older.url, max: 4 });
    try {
      // A release at migration 30 (before run deadlines added runs.deadline_at).
      await migrate(pool, { bundle: { ...BUNDLE, migrations: BUNDLE.migrations.filter((m) => m.id <= 30), functions: [] } });
      const client = createClient({ pool, logger: silentLogger });
      try {
        const calls: [string, () => Promise<unknown>][] = [
          ['get', () => client.get('00000000-0000-4000-8000-000000000000')],
          ['list', () => client.list()],
          ['schedules.list', () => client.schedules.list()],
          ['schedules.set', () => client.schedules.set('nightly', { cron: '0 3 * * *', workflow: 'greet', input: { who: 'x' } })],
        ];
        for (const [what, call] of calls) {
          const error = await call().then(() => undefined, (e: unknown) => e);
          assert.ok(error instanceof SchemaVersionError, `${what}: ${String(error)}`);
        }
      } finally {
        await client.close();
      }
    } finally {
      await pool.end();
      await older.drop();
    }
  });
});

describe('values nested more than 1,000 arrays or objects deep', () => {
  const fx = useFreshDatabase();
  const anything = defineWorkflow({ name: 'deep-anything', input: z.unknown() },
    async (ctx) => {
      const got = await ctx.waitForSignal('go', { timeout: '1h' });
      return got.timedOut ? null : got.payload;
    });
  // n nested arrays, the innermost empty.
  const nest = (n: number): unknown => {
    let v: unknown = [];
    for (let i = 1; i < n; i++) v = [v];
    return v;
  };

  it('every client call refuses them with a ValidationError (not a RangeError) and writes nothing; 1,000 deep is taken', async () => {
    const client = createClient({ pool: fx.db.pool, logger: silentLogger });
    try {
      const run = await client.start(anything, nest(1000));
      const runs = async () => (await fx.db.pool.query('select count(*)::int as n from trellis.runs')).rows[0].n as number;
      const before = await runs();
      const calls: [string, () => Promise<unknown>][] = [
        ['start', () => client.start(anything, nest(5000))],
        ['start metadata', () => client.start(anything, 1, { metadata: { d: nest(1001) } })],
        ['signal', () => client.signal(run.id, 'go', nest(1001))],
        ['setMetadata', () => client.setMetadata(run.id, { d: nest(5000) })],
        ['list', () => client.list({ metadata: { d: nest(5000) } })],
      ];
      for (const [what, call] of calls) {
        const error = await call().then(() => undefined, (e: unknown) => e);
        assert.ok(error instanceof ValidationError, `${what}: ${String(error)}`);
        assert.match((error as Error).message, /nested more than 1000 arrays or objects deep/, what);
      }
      assert.equal(await runs(), before);
      assert.deepEqual((await client.get(run.id))?.metadata, {});
      await client.setMetadata(run.id, { d: nest(999) });
      // A signal payload 1,000 deep reaches the code and ends the run with
      // it, though the engine's record of the signal wraps it once more.
      const worker = createWorker({ pool: fx.db.pool, workflows: [anything], logger: silentLogger, pollInterval: 200 });
      await worker.start();
      try {
        await client.signal(run.id, 'go', nest(1000));
        assert.equal(JSON.stringify(await run.result({ timeout: '20s' })), JSON.stringify(nest(1000)));
      } finally {
        await worker.stop();
      }
    } finally {
      await client.close();
    }
  });
});
