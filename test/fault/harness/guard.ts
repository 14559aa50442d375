/**
 * A pool whose connections survive an error that arrives while one is
 * checked out but between queries. node-postgres emits such an error (a
 * FATAL 57P01 at a server shutdown, a reset socket) on the Client, where
 * pg-pool listens only while the connection is idle in the pool; with no
 * listener Node throws it and the process dies. It happens with
 * `await client.query()`: the query's promise settles when its answer is
 * parsed, but the code that releases the client runs a microtask later, and
 * a FATAL that came in the same TCP read is parsed first.
 */
import type pg from 'pg';

/** Give every connection `pool` opens an 'error' listener for its whole life; the next query on a broken one fails. */
export function guardPool(pool: pg.Pool): pg.Pool {
  pool.on('error', () => undefined);
  pool.on('connect', (client) => client.on('error', () => undefined));
  return pool;
}
