/**
 * A distributed transaction caught between its two phases, made by Citus's
 * own steps: the coordinator's transaction, its row written on one worker
 * node's shard and PREPARE'd there under a Citus transaction name, Citus's
 * record of that part (pg_dist_transaction), then the coordinator's commit.
 * From then on the transaction has ended as the coordinator sees it, and its
 * row stays invisible on the worker node until `commitPrepared()`. Citus's
 * own recovery, which would settle it, is off until `close()`.
 */
import pg from 'pg';
import type { TestDatabase } from '../helpers/db.ts';

export interface PreparedPart {
  /** The second phase: the row becomes visible. */
  commitPrepared(): Promise<void>;
  /** Roll back what is still prepared, drop the record, turn recovery on again. */
  close(): Promise<void>;
}

/**
 * `write(worker, xid, shard)` writes the row on the worker node's shard
 * (`<table>_<shard>`) inside the prepared transaction, with `xid` the
 * coordinator's transaction id; `nextId` is `table`'s next serial id.
 */
export async function holdPreparedPart(db: TestDatabase, o: {
  table: string;
  /** The distribution column's value whose shard takes the row (a number: an integer column; a string: text). */
  value: string | number;
  /** The serial column whose next value the row takes. */
  idColumn: string;
  write: (worker: pg.Client, row: { xid: string; id: string; shard: string }) => Promise<unknown>;
}): Promise<PreparedPart> {
  const [shard] = (await db.pool.query(`select p.shardid, n.nodename, n.nodeport, n.groupid
      from pg_dist_placement p join pg_dist_node n using (groupid)
     where p.shardid = get_shard_id_for_distribution_column($1::regclass, $2::${typeof o.value === 'number' ? 'integer' : 'text'})`,
    [o.table, o.value])).rows;
  const url = new URL(db.url);
  url.hostname = shard.nodename;
  url.port = String(shard.nodeport);
  const worker = new pg.Client({ connectionString: url.toString() });
  const coordinator = await db.pool.connect();
  await worker.connect();
  await coordinator.query(`alter system set citus.recover_2pc_interval = -1`);
  await coordinator.query('select pg_reload_conf()');
  const gid = `citus_0_${800_000 + (process.pid % 99_999)}_${Date.now() % 1_000_000}_0`;
  let prepared = false;
  const close = async () => {
    if (prepared) await worker.query(`rollback prepared '${gid}'`).catch(() => undefined);
    prepared = false;
    await coordinator.query('rollback').catch(() => undefined);
    await coordinator.query('delete from pg_dist_transaction where gid = $1', [gid]).catch(() => undefined);
    await coordinator.query(`alter system reset citus.recover_2pc_interval`);
    await coordinator.query('select pg_reload_conf()');
    coordinator.release();
    await worker.end();
  };
  try {
    await coordinator.query('begin');
    const [{ xid, id }] = (await coordinator.query(
      `select pg_current_xact_id()::text as xid, nextval(pg_get_serial_sequence($1, $2))::text as id`, [o.table, o.idColumn])).rows;
    await worker.query('begin');
    await o.write(worker, { xid, id, shard: String(shard.shardid) });
    await worker.query(`prepare transaction '${gid}'`);
    prepared = true;
    await coordinator.query('insert into pg_dist_transaction (groupid, gid) values ($1, $2)', [shard.groupid, gid]);
    await coordinator.query('commit');
  } catch (error) {
    await close();
    throw error;
  }
  return {
    commitPrepared: async () => {
      await worker.query(`commit prepared '${gid}'`);
      prepared = false;
    },
    close,
  };
}
