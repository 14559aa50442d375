/** Wrappers of sql/220_queues.sql and the view trellis.queue_stats (sql/230_queue_claim.sql). */
import { type Queryable, queryRows } from './queryable.ts';

/**
 * The options of trellis.queue_set as SQL takes them (absent: keep, null: clear).
 *
 * @example
 * const options: QueueSetOptions = { key_concurrency: 2, paused: false };
 */
export interface QueueSetOptions {
  concurrency?: number | null | undefined;
  key_concurrency?: number | null | undefined;
  /** `period` as milliseconds; sent as an interval. */
  rate?: { limit: number; period_ms: number } | null | undefined;
  fair?: boolean | undefined;
  paused?: boolean | undefined;
}

/**
 * A queue's row of trellis.queue_stats.
 *
 * @example
 * const lagging = (r: QueueStatsRow) => (r.lag_ms ?? 0) > 60_000;
 */
export interface QueueStatsRow {
  queue: string;
  paused: boolean;
  pending: number;
  due: number;
  running: number;
  waiting: number;
  paused_runs: number;
  lag_ms: number | null;
  finished_last_minute: number;
  concurrency: number | null;
  key_concurrency: number | null;
  key_running_max: number | null;
  rate_limit: number | null;
  rate_period_ms: number | null;
  rate_used: number;
  fair: boolean;
}

/**
 * trellis.queue_set.
 *
 * @example
 * await queueSet(pool, 'emails', { concurrency: 20, rate: { limit: 100, period_ms: 1000 } });
 */
export async function queueSet(db: Queryable, name: string, options: QueueSetOptions): Promise<void> {
  const { rate, ...rest } = options;
  const sqlOptions: Record<string, unknown> = { ...rest };
  if (rate !== undefined) sqlOptions.rate = rate === null ? null : { limit: rate.limit, period: `${rate.period_ms} milliseconds` };
  await queryRows(db, 'select trellis.queue_set($1, $2::jsonb)', [name, JSON.stringify(sqlOptions)]);
}

/**
 * trellis.queue_pause / trellis.queue_resume.
 *
 * @example
 * await queuePause(pool, 'emails', true);
 */
export async function queuePause(db: Queryable, name: string, paused: boolean): Promise<void> {
  await queryRows(db, paused ? 'select trellis.queue_pause($1)' : 'select trellis.queue_resume($1)', [name]);
}

/**
 * Rows of trellis.queue_stats (one queue, or all in name order).
 *
 * @example
 * const [emails] = await queueStats(pool, 'emails');
 */
export async function queueStats(db: Queryable, name: string | null): Promise<QueueStatsRow[]> {
  return queryRows<QueueStatsRow>(db, `
    select queue, paused, pending::int, due::int, running::int, waiting::int, paused_runs::int,
           (extract(epoch from lag) * 1000)::float8 as lag_ms, finished_last_minute::int,
           concurrency, key_concurrency, key_running_max::int, rate_limit,
           (extract(epoch from rate_period) * 1000)::float8 as rate_period_ms, rate_used, fair
      from trellis.queue_stats where $1::text is null or queue = $1 order by queue`, [name]);
}
