/**
 * The outbox cursor on a Citus cluster (decision 0030; run by `npm run
 * test:citus` with the integration selection, never by `npm test`): a
 * transaction that writes to more than one worker node commits in two phases,
 * and its rows become visible on a node only at that node's COMMIT PREPARED,
 * after the coordinator's commit moved the visibility horizon past its id.
 * The test puts the cluster in that state by Citus's own steps
 * (test/citus/prepared-part.ts), with a newer event committed beside it, and reads the outbox: the cursor must not
 * pass the prepared transaction until its COMMIT PREPARED, and then yields
 * its event before the newer one.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { freshDatabase, type TestDatabase } from '../helpers/db.ts';
import { waitFor } from '../helpers/wait.ts';
import { holdPreparedPart } from './prepared-part.ts';

let db: TestDatabase;
before(async () => {
  if (process.env.TRELLIS_TEST_CITUS !== '1') throw new Error('test/citus/outbox-cursor.test.ts runs on a Citus cluster (npm run test:citus)');
  db = await freshDatabase({ poolSize: 4 });
  await db.pool.query(`select trellis.workflow_register('[{"name":"w","version":"1","queue":"default"}]')`);
});
after(() => db?.close());

const sql = async (text: string, values: unknown[] = []) => (await db.pool.query(text, values)).rows;
const read = async (after: string | null) =>
  (await sql(`select cursor, run_id, kind from trellis.events_read($1, 100, '{}')`, [after])) as { cursor: string; run_id: string; kind: string }[];

describe('events_read on a cluster', () => {
  it('does not pass a transaction whose second phase is still prepared on a worker node, and yields its event once committed', async () => {
    // A started run, read first: the cursor begins after it.
    const [{ id: first }] = await sql(`select trellis.run_start('w', '{}', '{"queue":"nobody","key":"first"}') as id`);
    // Readable once every older transaction on the coordinator has ended (other databases' too).
    const seen = await waitFor(async () => { const r = await read(null); return r.length ? r : undefined; }, { what: 'the first event' });
    assert.deepEqual(seen.map((e) => e.run_id), [first]);
    const late = '00000000-0000-4000-8000-0000000000aa';
    // The event's row on the shard of bucket 0, prepared on its worker node.
    const part = await holdPreparedPart(db, { table: 'trellis.events', value: 0, idColumn: 'id', write: (worker, row) =>
      worker.query(`insert into trellis.events_${row.shard} (bucket, run_id, workflow, version, key, kind, attempt, body, created_at, xid, id)
        values (0, $1, 'w', '1', null, 'started', 0, '{"to":"pending","execution":1}', now(), $2::xid8, $3)`, [late, row.xid, row.id]) });
    try {
      // A newer transaction's event, committed and visible.
      const [{ id: newer }] = await sql(`select trellis.run_start('w', '{}', '{"queue":"nobody","key":"newer"}') as id`);
      const [{ xid: newerXid }] = await sql(`select xid::text from trellis.events where run_id = $1`, [newer]);
      // Until the coordinator's own horizon has passed the newer event (other
      // sessions on the server end their transactions), a read holds it back anyway.
      await waitFor(async () => (await sql(`select pg_snapshot_xmin(pg_current_snapshot()) > $1::xid8 as ok`, [newerXid]))[0].ok,
        { what: 'the coordinator\'s horizon past the newer event' });

      const whilePrepared = await read(seen[0]!.cursor);
      assert.deepEqual(whilePrepared, [], 'nothing past the transaction still prepared on a worker node');

      await part.commitPrepared();
      const afterCommit = await waitFor(async () => { const r = await read(seen[0]!.cursor); return r.length >= 2 ? r : undefined; },
        { what: 'both events once the second phase committed' });
      assert.deepEqual(afterCommit.map((e) => e.run_id), [late, newer], 'the late event first, then the newer one');
    } finally {
      await part.close();
    }
  });

  it('fails the read with 08006 (a connection failure, which clients retry) while a worker node does not answer', async () => {
    // This database's own metadata points one worker node at a port nothing listens on.
    const [node] = await sql(`select nodeid, nodename, nodeport from pg_dist_node where noderole = 'primary' and groupid > 0 order by nodeid limit 1`);
    await sql(`select citus_update_node($1, $2, 1)`, [node.nodeid, node.nodename]);
    try {
      await assert.rejects(read(null), (e: { code?: string | undefined; message?: string | undefined }) => e.code === '08006' && /worker node/.test(e.message ?? ''));
    } finally {
      await sql(`select citus_update_node($1, $2, $3)`, [node.nodeid, node.nodename, node.nodeport]);
    }
    assert.ok(Array.isArray(await read(null)), 'read again once the node answers');
  });

  it('holds nothing back with no transaction prepared: the horizon is the coordinator\'s own', async () => {
    const [{ same }] = await sql(`select trellis._events_horizon() = pg_snapshot_xmin(pg_current_snapshot()) as same`);
    assert.equal(same, true);
  });
});
