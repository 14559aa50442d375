/** Wrappers of sql/600_retention.sql. Durations cross as milliseconds. */
import { type Queryable, queryRows } from './queryable.ts';

/** trellis.retention_set: the default (`workflow` null) or one workflow's; `null` removes it. */
export async function retentionSet(db: Queryable, ms: number | null, workflow: string | null): Promise<void> {
  await queryRows(db, `select trellis.retention_set($1::float8 * interval '1 millisecond', $2)`, [ms, workflow]);
}

/** trellis.retention, in milliseconds (null: kept forever): the default, or what applies to `workflow`. */
export async function retentionGet(db: Queryable, workflow: string | null): Promise<number | null> {
  const rows = await queryRows<{ ms: number | null }>(db, 'select (extract(epoch from trellis.retention($1)) * 1000)::float8 as ms', [workflow]);
  return rows[0]?.ms ?? null;
}

/** trellis.run_purge: how many runs were deleted. */
export async function runPurge(db: Queryable, olderThanMs: number, limit: number, workflow: string | null): Promise<number> {
  const rows = await queryRows<{ n: number }>(db,
    `select trellis.run_purge($1::float8 * interval '1 millisecond', $2, $3) as n`, [olderThanMs, limit, workflow]);
  return rows[0]?.n ?? 0;
}

/** trellis.events_purge_due: one batch of the outbox's events past their retention; null when no retention is set. */
export async function eventsPurgeDue(db: Queryable, limit: number): Promise<number | null> {
  const rows = await queryRows<{ n: number | null }>(db, 'select trellis.events_purge_due($1) as n', [limit], 'trellis_events_purge_due');
  return rows[0]?.n ?? null;
}

/** trellis.run_purge_due: null when no retention is set. */
export async function runPurgeDue(db: Queryable, limit: number): Promise<number | null> {
  const rows = await queryRows<{ n: number | null }>(db, 'select trellis.run_purge_due($1) as n', [limit], 'trellis_run_purge_due');
  return rows[0]?.n ?? null;
}
