/**
 * The narrowest database seam as a type only: anything with
 * `query(text, values)`. db/queryable.ts builds on it; workflow/ code (a
 * durable hook's context) names it without importing db/.
 */

/** What a query returns, as far as Trellis reads it. */
export interface QueryResultLike<R> {
  rows: R[];
}

/** A pg Pool, a pg client inside the caller's transaction, or a Kysely transaction wrapped by `fromKysely`. */
export interface Queryable {
  query<R = Record<string, unknown>>(text: string, values?: unknown[]): Promise<QueryResultLike<R>>;
}
