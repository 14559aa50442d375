/**
 * Named prepared statements: by default the client and the worker plan their
 * hot statements once per connection (visible in pg_prepared_statements of
 * that session); with preparedStatements: false nothing is prepared, for
 * PgBouncer in transaction mode, and everything works the same.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { z } from 'zod';
import { createClient } from '../../src/client/client.ts';
import { createWorker } from '../../src/worker/worker.ts';
import { defineWorkflow } from '../../src/workflow/define.ts';
import { silentLogger } from '../../src/protocol/logger.ts';
import { testPool } from '../helpers/db.ts';
import { useFreshDatabase } from '../helpers/database-fixture.ts';

const add = defineWorkflow({ name: 'add', input: z.object({ a: z.number(), b: z.number() }) }, async (ctx, { a, b }) =>
  ctx.step('sum', () => a + b));

const fx = useFreshDatabase();

/** A run end to end on a pool of one connection, and the statements that session prepared. */
async function runOnOneConnection(preparedStatements: boolean | undefined, handoff?: boolean): Promise<{ output: number; prepared: string[] }> {
  const pool = testPool({ connectionString: fx.db.url, max: 1 });
  const client = createClient({ pool, logger: silentLogger, preparedStatements, handoff });
  const worker = createWorker({ pool, workflows: [add], logger: silentLogger, pollInterval: 100, purge: false, preparedStatements, client });
  try {
    await worker.start();
    // A client's first start is one unprepared statement (it also reads the
    // payload limit and registers, src/db/runs.ts runStartFirst); the second
    // is the prepared trellis_run_start.
    await (await client.start(add, { a: 1, b: 1 })).result({ timeout: '20s' });
    const run = await client.start(add, { a: 2, b: 3 });
    const output = await run.result({ timeout: '20s' });
    // A result asked for after the run ended is read from the table
    // (trellis_run_outcome). The waits above may never read it: a run a
    // worker of this process executes settles its waiters from the
    // committed output, so whether they read depends on timing.
    assert.equal(await client.result(run.id, { timeout: '20s' }), output);
    const { rows } = await pool.query<{ name: string }>(`select name from pg_prepared_statements where name like 'trellis_%' order by name`);
    return { output, prepared: rows.map((r) => r.name) };
  } finally {
    await worker.stop();
    await client.close();
    await pool.end();
  }
}

describe('prepared statements', () => {
  it('are used by default for starts, claims, checkpoints and result reads', async () => {
    const { output, prepared } = await runOnOneConnection(undefined, false);
    assert.equal(output, 5);
    for (const name of ['trellis_run_start', 'trellis_run_claim', 'trellis_checkpoint_apply', 'trellis_run_outcome']) {
      assert.ok(prepared.includes(name), `${name} in ${prepared.join(', ')}`);
    }
  });

  it('are used for a start handed to a worker in the process', async () => {
    const { output, prepared } = await runOnOneConnection(undefined);
    assert.equal(output, 5);
    for (const name of ['trellis_run_start_claimed', 'trellis_checkpoint_apply', 'trellis_run_outcome']) {
      assert.ok(prepared.includes(name), `${name} in ${prepared.join(', ')}`);
    }
    assert.ok(!prepared.includes('trellis_run_start'), 'the handed-off start is not a plain start');
  });

  it('preparedStatements: false prepares nothing and runs the same', async () => {
    for (const handoff of [true, false]) {
      const { output, prepared } = await runOnOneConnection(false, handoff);
      assert.equal(output, 5);
      assert.deepEqual(prepared, []);
    }
  });
});

describe('a named statement whose result columns change under it', () => {
  it('is prepared again under a new name and run (a migration that adds a column failed every prepared connection with 0A000)', async () => {
    const { queryRows } = await import('../../src/db/queryable.ts');
    const pool = testPool({ connectionString: fx.db.url, max: 1 });
    try {
      await pool.query(`create function public.shape_changes() returns table (a int) language sql as 'select 1'`);
      const text = 'select * from public.shape_changes()';
      assert.deepEqual(await queryRows(pool, text, [], 'trellis_test_shape'), [{ a: 1 }]);
      // A later release replaces the function with one that returns a column more.
      await pool.query(`drop function public.shape_changes(); create function public.shape_changes() returns table (a int, b int) language sql as 'select 1, 2'`);
      assert.deepEqual(await queryRows(pool, text, [], 'trellis_test_shape'), [{ a: 1, b: 2 }]);
      assert.deepEqual(await queryRows(pool, text, [], 'trellis_test_shape'), [{ a: 1, b: 2 }], 'and again, under its new name');
      const { rows } = await pool.query<{ name: string }>(`select name from pg_prepared_statements where name like 'trellis_test_shape%' order by name`);
      assert.ok(rows.some((r) => /^trellis_test_shape_[0-9a-z]+$/.test(r.name)), `prepared under a new name: ${rows.map((r) => r.name).join(', ')}`);
    } finally {
      await pool.query('drop function if exists public.shape_changes()').catch(() => undefined);
      await pool.end();
    }
  });
});
