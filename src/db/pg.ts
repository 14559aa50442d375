/**
 * The one module that imports the `pg` driver (a peer dependency: the app's
 * own copy). Everything else names pg's types and classes through these
 * aliases, so the driver surface Trellis relies on is listed here, and the
 * import rules (test/unit/import-rules.test.ts) can keep it that way.
 */
import pg from 'pg';

export type Pool = pg.Pool;
export const Pool = pg.Pool;
/** A single connection (`new PgClient(config)`), as opposed to the Trellis `Client`. */
export type PgClient = pg.Client;
export const PgClient = pg.Client;
export type ClientBase = pg.ClientBase;
export type PoolClient = pg.PoolClient;
export type PoolConfig = pg.PoolConfig;
export type ClientConfig = pg.ClientConfig;
export type QueryConfig = pg.QueryConfig;
export type QueryResult<R extends pg.QueryResultRow = any> = pg.QueryResult<R>;
export type QueryResultRow = pg.QueryResultRow;
