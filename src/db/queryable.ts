/**
 * The narrowest database seam: anything with `query(text, values)`. A pg Pool,
 * a pg PoolClient inside the caller's transaction, and a Kysely transaction
 * (through `fromKysely`) all satisfy it.
 */
import { CompiledQuery, type Kysely } from 'kysely';
import { PgClient, Pool, type QueryResultRow } from './pg.ts';
import { sqlstateOf, toTrellisError } from './errors.ts';
import { isPreparedRefusal, preparedRefusedError } from './prepared.ts';

import type { Queryable, QueryResultLike } from '../protocol/queryable.ts';

export type { Queryable, QueryResultLike };


/** What a client write accepts as `tx`: a pg client/pool or a Kysely instance or transaction. */
export type Executor = Queryable | Kysely<any>;

function isKysely(value: unknown): value is Kysely<any> {
  return typeof value === 'object' && value !== null && typeof (value as Kysely<any>).executeQuery === 'function'
    && typeof (value as Kysely<any>).selectFrom === 'function';
}

/**
 * Adapt a Kysely instance or transaction to a Queryable (same connection,
 * same transaction). `client.start(…, { tx })` does this for you.
 *
 * @example
 * await db.transaction().execute(async (trx) => {
 *   const q = fromKysely(trx);
 *   await q.query('select trellis.signal_send($1, $2, $3)', [runId, 'approved', '{"by":"ada"}']);
 * });
 */
export function fromKysely(db: Kysely<any>): Queryable {
  return {
    async query<R>(text: string, values: unknown[] = []) {
      const result = await db.executeQuery<R>(CompiledQuery.raw(text, values));
      return { rows: result.rows as R[] };
    },
  };
}

export function toQueryable(executor: Executor): Queryable {
  return isKysely(executor) ? fromKysely(executor) : (executor as Queryable);
}

/**
 * A pg Pool or Client (a PoolClient is one): it can run named prepared
 * statements. Recognised by shape, not `instanceof`, so a Pool from the
 * application's own copy of `pg` (another version than ours) counts too.
 */
export function preparable(db: unknown): db is Pool | PgClient {
  if (typeof db !== 'object' || db === null || typeof (db as { query?: unknown }).query !== 'function') return false;
  if (db instanceof Pool || db instanceof PgClient) return true;
  const o = db as Record<string, unknown>;
  const isPool = typeof o.totalCount === 'number' && typeof o.idleCount === 'number' && typeof o.connect === 'function';
  const isClient = typeof o.connectionParameters === 'object' && o.connectionParameters !== null && typeof o.connect === 'function';
  return isPool || isClient;
}

/**
 * Run one statement, mapping driver errors to Trellis errors. With `name`
 * and a pg Pool or Client, as a named prepared statement: parsed and planned
 * once per connection instead of on every call (a claim ~0.13 ms faster).
 * Each name must always go with the same text.
 */
export async function queryRows<R>(db: Queryable, text: string, values: unknown[] = [], name?: string): Promise<R[]> {
  const named = name !== undefined && preparable(db);
  const current = name === undefined ? undefined : renamed.get(name) ?? name;
  try {
    const result = named ? await db.query<R & QueryResultRow>({ name: current, text, values }) : await db.query<R>(text, values);
    return result.rows as R[];
  } catch (error) {
    if (named && planResultChanged(error)) return queryRenamed<R>(db, text, values, name, current as string);
    if (named && isPreparedRefusal(error)) throw preparedRefusedError(name, error);
    throw toTrellisError(error);
  }
}

/**
 * The name each statement is prepared under now, when it is no longer its
 * own: see queryRenamed.
 */
const renamed = new Map<string, string>();

/** PostgreSQL's refusal of a prepared statement whose result columns changed since it was prepared. */
function planResultChanged(error: unknown): boolean {
  return sqlstateOf(error) === '0A000' && /cached plan must not change result type/.test(String((error as { message?: unknown } | undefined)?.message));
}

/**
 * A named statement whose result columns changed under it (a migration
 * replaced a function it calls with one that returns a column more, or
 * altered a table it reads) is refused with 0A000 on every connection that
 * prepared it, and behind a pooler that keeps server-side statements, for
 * as long as the pooler's connection lives (the upgrade audit: an old
 * release's starts failed after the new migrate()). PostgreSQL raises it
 * while it re-plans, before anything runs, so the statement is prepared
 * again under a new name (on every connection, from now on) and run once
 * more.
 */
async function queryRenamed<R>(db: Pool | PgClient, text: string, values: unknown[], name: string, failed: string): Promise<R[]> {
  if (renamed.get(name) === undefined || renamed.get(name) === failed) renamed.set(name, `${name}_${(++renames).toString(36)}`);
  try {
    return (await db.query<R & QueryResultRow>({ name: renamed.get(name) as string, text, values })).rows as R[];
  } catch (error) {
    throw toTrellisError(error);
  }
}
let renames = 0;

/**
 * `db` without prepared statements (every statement unnamed), for a
 * connection pooler that cannot keep them: PgBouncer in transaction or
 * statement mode before 1.21, or without `max_prepared_statements`.
 */
export function unprepared(db: Queryable): Queryable {
  return { query: (text, values) => db.query(text, values) };
}

/**
 * `target` with its `query` replaced by `query` (called with the target's
 * own `query`, bound): every other member is the target's, methods bound to
 * it, and it is still the same pool or client to `instanceof` (so named
 * prepared statements keep working through it).
 *
 * @example
 * const counted = withQuery(pool, (query, ...args) => (n++, query(...args)));
 */
export function withQuery<Q extends object>(target: Q,
  query: (own: (...args: unknown[]) => Promise<unknown>, ...args: unknown[]) => Promise<unknown>): Q {
  return new Proxy(target, {
    get: (t, key) => {
      if (key === 'query') {
        const own = (t as { query: (...a: unknown[]) => Promise<unknown> }).query.bind(t);
        return (...args: unknown[]) => query(own, ...args);
      }
      const value = Reflect.get(t, key, t) as unknown;
      return typeof value === 'function' ? value.bind(t) : value;
    },
  });
}
