/**
 * Queues and flow control from TypeScript (docs/operations.md, "Queues and
 * flow control"): the options a queue takes, their checks, and its stats.
 * The limits live in trellis.queues and are enforced by run_claim in SQL.
 */
import { type QueueSetOptions, queueSet, queueStats, type QueueStatsRow } from '../db/queues.ts';
import type { Queryable } from '../db/queryable.ts';
import { ValidationError } from '../errors.ts';
import { type Duration, toMs } from '../protocol/duration.ts';
import { refuseUnknownKeys } from '../protocol/option-bounds.ts';

/**
 * Flow control of one queue, across every worker. An absent option is kept,
 * `null` removes it.
 *
 * @example
 * const options: QueueOptions = { concurrency: 50, keyConcurrency: 2, rate: { limit: 100, period: '1s' } };
 */
export interface QueueOptions {
  /** At most this many runs of the queue running (leased) at once, across all workers. */
  concurrency?: number | null | undefined;
  /** At most this many running runs per `concurrencyKey` (a start option, e.g. a tenant id). */
  keyConcurrency?: number | null | undefined;
  /** At most `limit` claims (executions begun) per fixed window of `period`, across all workers. */
  rate?: { limit: number; period: Duration } | null | undefined;
  /** Rotate claims across concurrency keys even without other limits (`null`: false, the default). */
  fair?: boolean | null | undefined;
  /** No claims while true (see `pauseQueue`; `null`: false, the default). */
  paused?: boolean | null | undefined;
}

/**
 * A queue's row of the `trellis.queue_stats` view.
 *
 * @example
 * const [stats]: QueueStats[] = await client.queueStats('emails');
 * if (stats && stats.lagMs !== null && stats.lagMs > 60_000) console.warn('emails are late');
 */
export interface QueueStats {
  queue: string;
  paused: boolean;
  pending: number;
  /** Pending runs whose time has come. */
  due: number;
  running: number;
  waiting: number;
  /** Runs paused one by one (not the queue's pause). */
  pausedRuns: number;
  /** How long the oldest due pending run has waited (null: none). */
  lagMs: number | null;
  /** Runs of the queue that finished in the last minute. */
  finishedLastMinute: number;
  concurrency: number | null;
  keyConcurrency: number | null;
  /** Running runs of the busiest concurrency key. */
  keyRunningMax: number | null;
  rateLimit: number | null;
  ratePeriodMs: number | null;
  /** Claims in the current rate window. */
  rateUsed: number;
  fair: boolean;
}

function limit(value: unknown, what: string): number | null | undefined {
  if (value === undefined || value === null) return value;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > 1_000_000) {
    throw new ValidationError(`${what} must be an integer between 1 and 1000000, or null`);
  }
  return value;
}

function flag(value: unknown, what: string): boolean | undefined {
  if (value !== undefined && value !== null && typeof value !== 'boolean') throw new ValidationError(`${what} must be true, false or null`);
  return value === null ? false : value;
}

/**
 * Check QueueOptions and turn them into queue_set's (ValidationError before anything is written).
 *
 * @example
 * toQueueSetOptions({ keyConcurrency: 2, rate: { limit: 10, period: '1s' } });
 * // { key_concurrency: 2, rate: { limit: 10, period_ms: 1000 } }
 */
export function toQueueSetOptions(options: QueueOptions): QueueSetOptions {
  if (typeof options !== 'object' || options === null) throw new ValidationError('queue options must be an object');
  const known = ['concurrency', 'keyConcurrency', 'rate', 'fair', 'paused'];
  const unknown = Object.keys(options).filter((k) => !known.includes(k));
  if (unknown.length) throw new ValidationError(`unknown queue option(s): ${unknown.join(', ').slice(0, 200)}`);
  const out: QueueSetOptions = {};
  const concurrency = limit(options.concurrency, 'concurrency');
  if (concurrency !== undefined) out.concurrency = concurrency;
  const keyConcurrency = limit(options.keyConcurrency, 'keyConcurrency');
  if (keyConcurrency !== undefined) out.key_concurrency = keyConcurrency;
  if (options.rate === null) out.rate = null;
  else if (options.rate !== undefined) {
    // A misspelt or unknown key (burst) would be dropped in silence; queue_set refuses it too.
    refuseUnknownKeys(options.rate, ['limit', 'period'], 'rate');
    const rateLimit = limit(options.rate.limit, 'rate.limit');
    if (rateLimit === null || rateLimit === undefined) throw new ValidationError('rate.limit must be an integer between 1 and 1000000');
    const periodMs = toMs(options.rate.period, 'rate.period');
    if (!(periodMs >= 1 && periodMs <= 86_400_000)) throw new ValidationError('rate.period must be between 1ms and 1 day');
    out.rate = { limit: rateLimit, period_ms: periodMs };
  }
  const fair = flag(options.fair, 'fair');
  if (fair !== undefined) out.fair = fair;
  const paused = flag(options.paused, 'paused');
  if (paused !== undefined) out.paused = paused;
  return out;
}

/**
 * trellis.queue_set with checked options (`Client.setQueue`).
 *
 * @example
 * await setQueue(pool, 'emails', { concurrency: 20 });
 */
export async function setQueue(db: Queryable, name: string, options: QueueOptions): Promise<void> {
  await queueSet(db, name, toQueueSetOptions(options));
}

function toStats(r: QueueStatsRow): QueueStats {
  return {
    queue: r.queue, paused: r.paused, pending: r.pending, due: r.due, running: r.running, waiting: r.waiting,
    pausedRuns: r.paused_runs, lagMs: r.lag_ms, finishedLastMinute: r.finished_last_minute,
    concurrency: r.concurrency, keyConcurrency: r.key_concurrency, keyRunningMax: r.key_running_max,
    rateLimit: r.rate_limit, ratePeriodMs: r.rate_period_ms, rateUsed: r.rate_used, fair: r.fair,
  };
}

/**
 * Rows of trellis.queue_stats as QueueStats (`Client.queueStats`).
 *
 * @example
 * const all = await readQueueStats(pool, null);
 */
export async function readQueueStats(db: Queryable, name: string | null): Promise<QueueStats[]> {
  return (await queueStats(db, name)).map(toStats);
}
