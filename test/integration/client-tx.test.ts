import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { z } from 'zod';
import { createClient } from '../../src/client/client.ts';
import { isTrellisError } from '../../src/errors.ts';
import { defineWorkflow } from '../../src/workflow/define.ts';
import { silentLogger } from '../../src/protocol/logger.ts';
import { testPool } from '../helpers/db.ts';
import { useFreshDatabase } from '../helpers/database-fixture.ts';

const fx = useFreshDatabase();

const counts = async () =>
  (await fx.db.pool.query(`select (select count(*) from trellis.workflows)::int as workflows,
                               (select count(*) from trellis.runs)::int as runs,
                               (select count(*) from trellis.signals)::int as signals`)).rows[0];

describe('client.start and the caller transaction', () => {
  it('bad input writes nothing at all, not even the registry row of a workflow never started before', async () => {
    const client = createClient({ pool: fx.db.pool, logger: silentLogger });
    const fresh = defineWorkflow({ name: 'never-started', input: z.object({ n: z.number() }) }, async () => null);
    const before = await counts();
    const bad: [string, Parameters<typeof client.start>[2]][] = [
      ['empty key', { key: '' }],
      ['bad queue', { queue: "q'; drop table trellis.runs; --" }],
      ['fractional priority', { priority: 1.5 }],
      ['bad runAt', { runAt: 'not a date' }],
      ['array metadata', { metadata: [] as never }],
    ];
    for (const [what, options] of bad) {
      await assert.rejects(client.start(fresh, { n: 1 }, options), (e) => isTrellisError(e) && e.code === 'validation', what);
    }
    await assert.rejects(client.start(fresh, { n: 'one' } as never), (e) => isTrellisError(e) && e.code === 'validation');
    await assert.rejects(client.start(fresh, { n: 1, pad: 'x'.repeat(2_000_000) } as never),
      (e) => isTrellisError(e) && e.code === 'payload_too_large');
    assert.deepEqual(await counts(), before);
    await client.close();
  });

  it('does not wait on the pool: two transactions holding a pool of two both start their runs', async () => {
    const pool = testPool({ connectionString: fx.db.url, max: 2 });
    const client = createClient({ pool, logger: silentLogger });
    const wf = defineWorkflow({ name: 'tx-only', input: z.object({ n: z.number() }) }, async () => null);
    const [a, b] = await Promise.all([pool.connect(), pool.connect()]);
    try {
      await a.query('begin');
      await b.query('begin');
      // Neither the registry nor the payload limit may need a third connection.
      const ra = await client.start(wf, { n: 1 }, { tx: a });
      await a.query('commit');
      const rb = await client.start(wf, { n: 2 }, { tx: b });
      await b.query('rollback');
      const { rows } = await fx.db.pool.query(`select id from trellis.runs where workflow = 'tx-only'`);
      assert.deepEqual(rows.map((r) => r.id), [ra.id], 'the committed start only');
      assert.notEqual(ra.id, rb.id);
      const registered = await fx.db.pool.query(`select version from trellis.workflows where name = 'tx-only'`);
      assert.equal(registered.rowCount, 1, 'registered with the committed transaction');
    } finally {
      a.release();
      b.release();
      await client.close();
      await pool.end();
    }
  });

  it('registers again after a transaction that registered the workflow rolled back', async () => {
    const client = createClient({ pool: fx.db.pool, logger: silentLogger });
    const wf = defineWorkflow({ name: 'rolled-back-first', input: z.object({}) }, async () => null);
    const c = await fx.db.pool.connect();
    try {
      await c.query('begin');
      await client.start(wf, {}, { tx: c });
      await c.query('rollback');
      await c.query('begin');
      const run = await client.start(wf, {}, { tx: c });
      await c.query('commit');
      assert.equal((await client.get(run.id))?.status, 'pending');
    } finally {
      c.release();
      await client.close();
    }
  });
});
