/**
 * The outbox cursor on a Citus cluster (decision 0030; run by `npm run
 * test:citus` with the integration selection, never by `npm test`): a
 * transaction that writes to more than one worker node commits in two phases,
 * and its rows become visible on a node only at that node's COMMIT PREPARED,
 * after the coordinator's commit moved the visibility horizon past its id.
 * The test puts the cluster in that state by Citus's own steps (the shard's
 * row written and PREPARE'd on the worker node under a Citus transaction
 * name, then the coordinator's pg_dist_transaction record committed), with a
 * newer event committed beside it, and reads the outbox: the cursor must not
 * pass the prepared transaction until its COMMIT PREPARED, and then yields
 * its event before the newer one.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { freshDatabase, type TestDatabase } from '../helpers/db.ts';
import { waitFor } from '../helpers/wait.ts';

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
    // The shard of bucket 0 of trellis.events and the worker node that holds it.
    const [shard] = await sql(`select p.shardid, n.nodename, n.nodeport, n.groupid
      from pg_dist_placement p join pg_dist_node n using (groupid)
     where p.shardid = get_shard_id_for_distribution_column('trellis.events', 0)`);
    const url = new URL(db.url);
    url.hostname = shard.nodename;
    url.port = String(shard.nodeport);
    const worker = new pg.Client({ connectionString: url.toString() });
    const coordinator = await db.pool.connect();
    await worker.connect();
    // Citus's recovery would settle the prepared transaction on its own (its
    // record says commit): off while the test holds it, so the state lasts.
    await coordinator.query(`alter system set citus.recover_2pc_interval = -1`);
    await coordinator.query('select pg_reload_conf()');
    const gid = `citus_0_${900_000 + (process.pid % 99_999)}_${Date.now() % 1_000_000}_0`;
    let prepared = false;
    try {
      // The coordinator's transaction, and its event's row written on the
      // worker node's shard and prepared there, as Citus's first phase does.
      await coordinator.query('begin');
      const [{ xid, id }] = (await coordinator.query(
        `select pg_current_xact_id()::text as xid, nextval(pg_get_serial_sequence('trellis.events', 'id')) as id`)).rows;
      const late = '00000000-0000-4000-8000-0000000000aa';
      await worker.query('begin');
      await worker.query(`insert into trellis.events_${shard.shardid} (bucket, run_id, workflow, version, key, kind, attempt, body, created_at, xid, id)
        values (0, $1, 'w', '1', null, 'started', 0, '{"to":"pending","execution":1}', now(), $2::xid8, $3)`, [late, xid, id]);
      await worker.query(`prepare transaction '${gid}'`);
      prepared = true;
      // Citus's record of that part, then the coordinator's commit: from here
      // the transaction has ended as the coordinator sees it.
      await coordinator.query('insert into pg_dist_transaction (groupid, gid) values ($1, $2)', [shard.groupid, gid]);
      await coordinator.query('commit');
      // A newer transaction's event, committed and visible.
      const [{ id: newer }] = await sql(`select trellis.run_start('w', '{}', '{"queue":"nobody","key":"newer"}') as id`);
      const [{ xid: newerXid }] = await sql(`select xid::text from trellis.events where run_id = $1`, [newer]);
      // Until the coordinator's own horizon has passed the newer event (other
      // sessions on the server end their transactions), a read holds it back anyway.
      await waitFor(async () => (await sql(`select pg_snapshot_xmin(pg_current_snapshot()) > $1::xid8 as ok`, [newerXid]))[0].ok,
        { what: 'the coordinator\'s horizon past the newer event' });

      const whilePrepared = await read(seen[0]!.cursor);
      assert.deepEqual(whilePrepared, [], 'nothing past the transaction still prepared on a worker node');

      await worker.query(`commit prepared '${gid}'`);
      prepared = false;
      const afterCommit = await waitFor(async () => { const r = await read(seen[0]!.cursor); return r.length >= 2 ? r : undefined; },
        { what: 'both events once the second phase committed' });
      assert.deepEqual(afterCommit.map((e) => e.run_id), [late, newer], 'the late event first, then the newer one');
    } finally {
      if (prepared) await worker.query(`rollback prepared '${gid}'`).catch(() => undefined);
      await coordinator.query('rollback').catch(() => undefined);
      await coordinator.query('delete from pg_dist_transaction where gid = $1', [gid]).catch(() => undefined);
      await coordinator.query(`alter system reset citus.recover_2pc_interval`);
      await coordinator.query('select pg_reload_conf()');
      coordinator.release();
      await worker.end();
    }
  });

  it('fails the read with 08006 (a connection failure, which clients retry) while a worker node does not answer', async () => {
    // This database's own metadata points one worker node at a port nothing listens on.
    const [node] = await sql(`select nodeid, nodename, nodeport from pg_dist_node where noderole = 'primary' and groupid > 0 order by nodeid limit 1`);
    await sql(`select citus_update_node($1, $2, 1)`, [node.nodeid, node.nodename]);
    try {
      await assert.rejects(read(null), (e: { code?: string; message?: string }) => e.code === '08006' && /worker node/.test(e.message ?? ''));
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
