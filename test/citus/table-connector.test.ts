/**
 * The table connector over a distributed table on a Citus cluster (run by
 * `npm run test:citus` with the integration selection, never by `npm test`).
 * A user's table of events may be distributed while the Trellis schema is
 * not: the connector's horizon (trellis.xact_horizon) must still wait for a
 * two-phase commit still prepared on a worker node, as the outbox's does
 * (decision 0030), and rows written with `insert … values` through the
 * coordinator carry the coordinator's transaction id (docs/connectors.md).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { tableConnector } from '../../src/connectors/table-connector.ts';
import { freshDatabase, type TestDatabase } from '../helpers/db.ts';
import { waitFor } from '../helpers/wait.ts';
import { holdPreparedPart } from './prepared-part.ts';

let db: TestDatabase;
before(async () => {
  if (process.env.TRELLIS_TEST_CITUS !== '1') throw new Error('test/citus/table-connector.test.ts runs on a Citus cluster (npm run test:citus)');
  db = await freshDatabase({ poolSize: 4 });
  await db.pool.query(`create table public.pay_events (id bigserial, tx xid8 not null default pg_current_xact_id(),
    foreign_id text not null, type text not null, payload jsonb not null default '{}', primary key (foreign_id, id))`);
  await db.pool.query(`select create_distributed_table('public.pay_events', 'foreign_id')`);
});
after(() => db?.close());

const sql = async (text: string, values: unknown[] = []) => (await db.pool.query(text, values)).rows;
const connector = tableConnector({ name: 'pay', table: 'public.pay_events' });
const read = async (cursor: unknown) => connector.read(db.pool, cursor, 100);

describe('tableConnector on a distributed table', () => {
  it('rows inserted with insert … values through the coordinator carry its transaction id, on every shard', async () => {
    const c = await db.pool.connect();
    try {
      const ids = Array.from({ length: 12 }, (_, i) => `values-${i}`);
      await c.query('begin');
      const [{ xid }] = (await c.query('select pg_current_xact_id()::text as xid')).rows;
      await c.query(`insert into public.pay_events (foreign_id, type) values ${ids.map((_, i) => `($${i + 1}, 'paid')`).join(', ')}`, ids);
      await c.query('commit');
      const txs = await sql(`select distinct tx::text as tx from public.pay_events where foreign_id = any ($1)`, [ids]);
      assert.deepEqual(txs.map((r) => r.tx), [xid], 'one id, the coordinator\'s');
      const shards = await sql(`select count(distinct get_shard_id_for_distribution_column('public.pay_events', f)) as n from unnest($1::text[]) f`, [ids]);
      assert.ok(Number(shards[0].n) > 1, 'the rows went to more than one shard');
    } finally {
      c.release();
    }
  });

  it('does not pass a transaction whose second phase is still prepared on a worker node, and yields its row once committed', async () => {
    await sql(`insert into public.pay_events (foreign_id, type) values ('first', 'paid')`);
    const seen = await waitFor(async () => {
      const r = await read(null);
      return r.events.some((e) => e.foreignId === 'first') ? r : undefined;
    }, { what: 'the first row' });
    const start = seen.cursor;
    // The row of foreign id 'late', prepared on its shard's worker node.
    const part = await holdPreparedPart(db, { table: 'public.pay_events', value: 'late', idColumn: 'id', write: (worker, row) =>
      worker.query(`insert into public.pay_events_${row.shard} (id, tx, foreign_id, type) values ($1, $2::xid8, 'late', 'paid')`,
        [row.id, row.xid]) });
    try {
      // A newer transaction's row, committed and visible.
      await sql(`insert into public.pay_events (foreign_id, type) values ('newer', 'paid')`);
      const [{ tx: newerTx }] = await sql(`select tx::text from public.pay_events where foreign_id = 'newer'`);
      await waitFor(async () => (await sql(`select pg_snapshot_xmin(pg_current_snapshot()) > $1::xid8 as ok`, [newerTx]))[0].ok,
        { what: 'the coordinator\'s horizon past the newer row' });

      const whilePrepared = await read(start);
      assert.deepEqual(whilePrepared.events, [], 'nothing past the transaction still prepared on a worker node');
      assert.deepEqual(whilePrepared.cursor, start, 'the cursor stays');

      await part.commitPrepared();
      const afterCommit = await waitFor(async () => {
        const r = await read(start);
        return r.events.length >= 2 ? r : undefined;
      }, { what: 'both rows once the second phase committed' });
      assert.deepEqual(afterCommit.events.map((e) => e.foreignId), ['late', 'newer'], 'the late row first, then the newer one');
    } finally {
      await part.close();
    }
  });
});
