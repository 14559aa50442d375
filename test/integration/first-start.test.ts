/**
 * A client's first start outside a transaction is one statement (issue 18):
 * the payload limit, the schema check, the workflow's registration and the
 * start, where it used to be three round trips. Its errors stay typed, and
 * a failed first start writes nothing, not even the registration.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import pg from 'pg';
import { z } from 'zod';
import { createClient } from '../../src/client/client.ts';
import { ConfigurationError, NotFoundError, PayloadTooLargeError, SchemaVersionError } from '../../src/errors.ts';
import { silentLogger } from '../../src/protocol/logger.ts';
import { defineWorkflow } from '../../src/workflow/define.ts';
import { useFreshDatabase } from '../helpers/database-fixture.ts';

const fx = useFreshDatabase();

/** A pool that records the text of every statement its connections run. */
function countingPool(): { pool: pg.Pool; statements: string[] } {
  const statements: string[] = [];
  const pool = new pg.Pool({ connectionString: fx.db.url, max: 2 });
  pool.on('connect', (c) => {
    const query = c.query.bind(c) as (...args: unknown[]) => unknown;
    (c as unknown as { query: (...args: unknown[]) => unknown }).query = (...args: unknown[]) => {
      const q = args[0] as string | { text?: string | undefined };
      statements.push(typeof q === 'string' ? q : (q?.text ?? ''));
      return query(...args);
    };
  });
  return { pool, statements };
}

const registered = async (name: string) =>
  Number((await fx.db.pool.query('select count(*)::int as n from trellis.workflows where name = $1', [name])).rows[0].n);
const runsOf = async (name: string) =>
  Number((await fx.db.pool.query('select count(*)::int as n from trellis.runs where workflow = $1', [name])).rows[0].n);

describe("a client's first start", () => {
  it('is one statement for a new workflow definition; the next start is one more', async () => {
    const greet = defineWorkflow({ name: 'first-greet', input: z.object({ who: z.string() }) }, async () => 'hi');
    const { pool, statements } = countingPool();
    const client = createClient({ pool, logger: silentLogger });
    try {
      const a = await client.start(greet, { who: 'ada' });
      assert.equal(statements.length, 1, statements.join('\n---\n'));
      assert.equal(await registered('first-greet'), 1);
      const b = await client.start(greet, { who: 'bob' });
      assert.equal(statements.length, 2, statements.join('\n---\n'));
      assert.notEqual(a.id, b.id);
      assert.equal(await runsOf('first-greet'), 2);
    } finally {
      await client.close();
      await pool.end();
    }
  });

  it('over the payload limit is a PayloadTooLargeError and leaves no run and no registration', async () => {
    const big = defineWorkflow({ name: 'first-big', input: z.object({ s: z.string() }) }, async () => 'x');
    const client = createClient({ pool: fx.db.pool, logger: silentLogger });
    try {
      await assert.rejects(client.start(big, { s: 'x'.repeat(1_100_000) }), PayloadTooLargeError);
      assert.equal(await registered('first-big'), 0);
      assert.equal(await runsOf('first-big'), 0);
      // The limit is known now: the same client refuses before any statement.
      await assert.rejects(client.start(big, { s: 'x'.repeat(1_100_000) }), /over the limit of 1048576 bytes/);
      assert.ok((await client.start(big, { s: 'small' })).id);
    } finally {
      await client.close();
    }
  });

  it('reads the stored payload limit as run_start does: an integer, a whole number written 40.0, and a value that is no integer is a ConfigurationError that writes nothing', async () => {
    const sized = defineWorkflow({ name: 'first-sized', input: z.object({ s: z.string() }) }, async () => 'x');
    // 40.0 as setting_set no longer stores it, but an older Trellis did (and a direct write can).
    const set = (json: string) => fx.db.pool.query(`insert into trellis.settings (key, value) values ('max_payload_bytes', $1::jsonb)
                                                    on conflict (key) do update set value = excluded.value`, [json]);
    try {
      for (const stored of ['40', '40.0']) {
        await set(stored);
        const client = createClient({ pool: fx.db.pool, logger: silentLogger });
        try {
          // Over 40 bytes as JSON text: refused by the first start, then by the client itself.
          await assert.rejects(client.start(sized, { s: 'x'.repeat(40) }), /over the limit of 40 bytes/);
          await assert.rejects(client.start(sized, { s: 'x'.repeat(40) }), /over the limit of 40 bytes/);
          assert.ok((await client.start(sized, { s: 'ok' })).id);
        } finally {
          await client.close();
        }
        // A first start inside the caller's transaction reads the limit in a statement of its own.
        const inTx = createClient({ pool: fx.db.pool, logger: silentLogger });
        const c = await fx.db.pool.connect();
        try {
          await c.query('begin');
          await assert.rejects(inTx.start(sized, { s: 'x'.repeat(40) }, { tx: c }), /over the limit of 40 bytes/);
          await c.query('rollback');
        } finally {
          c.release();
          await inTx.close();
        }
      }
      const runs = await runsOf('first-sized');
      await set('"forty"');
      const client = createClient({ pool: fx.db.pool, logger: silentLogger });
      const c = await fx.db.pool.connect();
      try {
        await assert.rejects(client.start(sized, { s: 'ok' }), (e: unknown) => e instanceof ConfigurationError && /max_payload_bytes/.test(String(e)));
        await c.query('begin');
        await assert.rejects(client.start(sized, { s: 'ok' }, { tx: c }), (e: unknown) => e instanceof ConfigurationError && /max_payload_bytes/.test(String(e)));
        await c.query('rollback');
        assert.equal(await runsOf('first-sized'), runs);
      } finally {
        c.release();
        await client.close();
      }
    } finally {
      await fx.db.pool.query(`delete from trellis.settings where key = 'max_payload_bytes'`);
    }
  });

  it('of an unknown workflow by name is a NotFoundError', async () => {
    const client = createClient({ pool: fx.db.pool, logger: silentLogger });
    try {
      await assert.rejects(client.start('first-nobody', {}), NotFoundError);
    } finally {
      await client.close();
    }
  });

  it('against a schema behind this code is a SchemaVersionError and registers nothing', async () => {
    const late = defineWorkflow({ name: 'first-late', input: z.object({}) }, async () => 'x');
    const { rows: [{ migration }] } = await fx.db.pool.query('select migration from trellis.schema_info');
    const client = createClient({ pool: fx.db.pool, logger: silentLogger });
    await fx.db.pool.query('update trellis.schema_info set migration = migration - 1');
    try {
      await assert.rejects(client.start(late, {}), SchemaVersionError);
      assert.equal(await registered('first-late'), 0);
    } finally {
      await fx.db.pool.query('update trellis.schema_info set migration = $1', [migration]);
      await client.close();
    }
  });

  it('against functions at an older revision than this code is a SchemaVersionError and registers nothing', async () => {
    const late = defineWorkflow({ name: 'first-late-fn', input: z.object({}) }, async () => 'x');
    const client = createClient({ pool: fx.db.pool, logger: silentLogger });
    await fx.db.pool.query('update trellis.schema_info set sql_revision = sql_revision - 1');
    try {
      await assert.rejects(client.start(late, {}), /functions are at revision/);
      assert.equal(await registered('first-late-fn'), 0);
    } finally {
      await fx.db.pool.query('update trellis.schema_info set sql_revision = sql_revision + 1');
      await client.close();
    }
  });
});
