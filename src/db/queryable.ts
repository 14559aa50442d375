/**
 * The narrowest database seam: anything with `query(text, values)`. A pg Pool,
 * a pg PoolClient inside the caller's transaction, and a Kysely transaction
 * (through `fromKysely`) all satisfy it.
 */
import { CompiledQuery, type Kysely } from 'kysely';
import { toTrellisError } from './errors.ts';

export interface QueryResultLike<R> {
  rows: R[];
}

export interface Queryable {
  query<R = Record<string, unknown>>(text: string, values?: unknown[]): Promise<QueryResultLike<R>>;
}

/** What a client write accepts as `tx`: a pg client/pool or a Kysely instance or transaction. */
export type Executor = Queryable | Kysely<any>;

function isKysely(value: unknown): value is Kysely<any> {
  return typeof value === 'object' && value !== null && typeof (value as Kysely<any>).executeQuery === 'function'
    && typeof (value as Kysely<any>).selectFrom === 'function';
}

/** Adapt a Kysely instance or transaction to a Queryable (same connection, same transaction). */
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

/** Run one statement, mapping driver errors to Trellis errors. */
export async function run<R>(db: Queryable, text: string, values: unknown[] = []): Promise<R[]> {
  try {
    const result = await db.query<R>(text, values);
    return result.rows;
  } catch (error) {
    throw toTrellisError(error);
  }
}
