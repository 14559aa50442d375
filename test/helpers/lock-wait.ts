/**
 * Whether a backend waits for a row lock, on one PostgreSQL node or on a
 * Citus cluster (`npm run test:citus` runs test/sql there, where the lock
 * wait happens on a worker node and only Citus's global pid names it).
 */
import type pg from 'pg';

const citus = () => process.env.TRELLIS_TEST_CITUS === '1';

/** The id `lockWaiting` takes for the backend of `client`: its pid, or its global pid on Citus. */
export async function backendId(client: pg.PoolClient | pg.Client): Promise<number> {
  const { rows } = await client.query(citus() ? 'select citus_backend_gpid() as id' : 'select pg_backend_pid() as id');
  return Number(rows[0].id);
}

/** Whether backend `id` (from `backendId`) waits for a lock now. */
export async function lockWaiting(pool: pg.Pool, id: number): Promise<boolean> {
  const { rows } = await pool.query(citus()
    ? 'select exists (select 1 from citus_lock_waits where waiting_gpid = $1) as blocked'
    : `select coalesce((select wait_event_type = 'Lock' from pg_stat_activity where pid = $1), false) as blocked`, [id]);
  return rows[0].blocked === true;
}

/** How many backends wait for a lock that backend `holder` (from `backendId`) holds. */
export async function lockWaitersOf(pool: pg.Pool, holder: number): Promise<number> {
  const { rows } = await pool.query(citus()
    ? 'select count(distinct waiting_gpid)::int as n from citus_lock_waits where blocking_gpid = $1'
    : 'select count(*)::int as n from pg_stat_activity where $1 = any (pg_blocking_pids(pid))', [holder]);
  return rows[0].n as number;
}
