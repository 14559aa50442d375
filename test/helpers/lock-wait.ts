/**
 * Whether a backend waits for a row lock, on one PostgreSQL node or on a
 * Citus cluster (`npm run test:citus` runs test/sql there, where the lock
 * wait happens on a worker node and only Citus's global pid names it).
 */
import type pg from 'pg';

const citus = () => process.env.TRELLIS_TEST_CITUS === '1';

/** The id `lockWaiting` takes for the backend of `client`: its pid, or its global pid on Citus. */
export async function backendId(client: pg.PoolClient | pg.Client): Promise<number> {
  const { rows } = await client.query(citus() && await hasCitus(client) ? 'select citus_backend_gpid() as id' : 'select pg_backend_pid() as id');
  return Number(rows[0].id);
}

/** Whether the database has Citus (a test kit's database on the cluster's coordinator has not). */
async function hasCitus(db: pg.PoolClient | pg.Client | pg.Pool): Promise<boolean> {
  const { rows } = await db.query(`select exists (select 1 from pg_extension where extname = 'citus') as on`);
  return rows[0].on === true;
}

/** Whether backend `id` (from `backendId`) waits for a lock now. */
export async function lockWaiting(pool: pg.Pool, id: number): Promise<boolean> {
  const { rows } = await pool.query(citus() && await hasCitus(pool)
    ? 'select exists (select 1 from citus_lock_waits where waiting_gpid = $1) as blocked'
    : `select coalesce((select wait_event_type = 'Lock' from pg_stat_activity where pid = $1), false) as blocked`, [id]);
  return rows[0].blocked === true;
}

/** How many backends wait for a lock that backend `holder` (from `backendId`) holds. */
export async function lockWaitersOf(pool: pg.Pool, holder: number): Promise<number> {
  const { rows } = await pool.query(citus() && await hasCitus(pool)
    ? 'select count(distinct waiting_gpid)::int as n from citus_lock_waits where blocking_gpid = $1'
    : 'select count(*)::int as n from pg_stat_activity where $1 = any (pg_blocking_pids(pid))', [holder]);
  return rows[0].n as number;
}

/**
 * The pid (on the node the test's pool connects to: the coordinator on
 * Citus) of a backend that waits for a lock backend `holder` (from
 * `backendId`) holds, or undefined: the one to terminate to cut a
 * statement's connection while it waits.
 */
export async function waiterPid(pool: pg.Pool, holder: number): Promise<number | undefined> {
  const { rows } = await pool.query(citus() && await hasCitus(pool)
    // A global pid is the node's id times 10^10 plus the pid on that node.
    ? 'select (waiting_gpid % 10000000000)::int as pid from citus_lock_waits where blocking_gpid = $1 limit 1'
    : 'select pid from pg_stat_activity where $1 = any (pg_blocking_pids(pid)) limit 1', [holder]);
  return rows[0]?.pid as number | undefined;
}
