/** Wrappers of sql/750_schedules.sql. */
import { type Queryable, queryRows } from './queryable.ts';

/** The spec schedule_set takes (snake_case, as SQL callers write it). */
export interface ScheduleSpecSql {
  cron: string;
  time_zone: string;
  workflow: string;
  input: unknown;
  overlap: string;
  catch_up: number;
  jitter: string;
  /** Each tick's run's time limit (an interval), or null. */
  time_limit: string | null;
  ends_at: string | null;
  paused?: boolean | undefined;
  next_at: string | null;
}

/** A row of trellis.schedules. */
export interface ScheduleRow {
  name: string;
  cron: string;
  timeZone: string;
  workflow: string;
  input: unknown;
  overlap: 'skip' | 'allow' | 'buffer_one' | 'cancel_previous';
  catchUp: number;
  jitterMs: number;
  /** Each tick's run's time limit in ms (its deadline from its start), or null. */
  timeLimitMs: number | null;
  endsAt: Date | null;
  paused: boolean;
  /**
   * The next tick, or null when there is none (the schedule ended). Right
   * after a resume, before the ticker has stored it, the tick the ticker
   * will compute (the cron's first after the resume).
   */
  nextAt: Date | null;
  lastTickAt: Date | null;
  lastRunId: string | null;
  /** A tick held back by the buffer_one policy until the last run ends. */
  bufferedAt: Date | null;
  fired: number;
  skipped: number;
  lastError: string | null;
  createdAt: Date;
  updatedAt: Date;
}

const COLUMNS = `name, cron, time_zone, workflow, input, overlap, catch_up,
  (extract(epoch from jitter) * 1000)::float8 as jitter_ms, (extract(epoch from time_limit) * 1000)::float8 as time_limit_ms, ends_at, paused, next_at, next_from, last_tick_at,
  last_run_id, buffered_at, fired::float8 as fired, skipped::float8 as skipped, last_error, created_at, updated_at`;

/**
 * A row as stored: with `next_from`, where the ticker computes the next tick
 * from while `next_at` is null (client/schedules.ts turns it into the
 * public `ScheduleRow`, whose `nextAt` is then that tick).
 */
export interface StoredSchedule extends ScheduleRow {
  nextFrom: Date | null;
}

function toSchedule(r: Record<string, any>): StoredSchedule {
  return {
    name: r.name, cron: r.cron, timeZone: r.time_zone, workflow: r.workflow, input: r.input, overlap: r.overlap,
    catchUp: r.catch_up, jitterMs: r.jitter_ms, timeLimitMs: r.time_limit_ms, endsAt: r.ends_at, paused: r.paused, nextAt: r.next_at, nextFrom: r.next_from,
    lastTickAt: r.last_tick_at, lastRunId: r.last_run_id, bufferedAt: r.buffered_at, fired: r.fired,
    skipped: r.skipped, lastError: r.last_error, createdAt: r.created_at, updatedAt: r.updated_at,
  };
}

/** trellis.schedule_set. */
export async function scheduleSet(db: Queryable, name: string, spec: ScheduleSpecSql): Promise<StoredSchedule> {
  const rows = await queryRows<Record<string, any>>(db, `select ${COLUMNS} from trellis.schedule_set($1, $2::jsonb)`, [name, JSON.stringify(spec)]);
  return toSchedule(rows[0] as Record<string, any>);
}

/** trellis.schedule_pause / schedule_resume. */
export async function scheduleControl(db: Queryable, verb: 'pause' | 'resume', name: string): Promise<StoredSchedule> {
  const rows = await queryRows<Record<string, any>>(db, `select ${COLUMNS} from trellis.schedule_${verb}($1)`, [name]);
  return toSchedule(rows[0] as Record<string, any>);
}

/** trellis.schedule_delete. */
export async function scheduleDelete(db: Queryable, name: string): Promise<boolean> {
  const rows = await queryRows<{ ok: boolean }>(db, 'select trellis.schedule_delete($1) as ok', [name]);
  return rows[0]?.ok ?? false;
}

/** Schedules by name (one, or all). */
export async function scheduleList(db: Queryable, name?: string): Promise<StoredSchedule[]> {
  const rows = name === undefined
    ? await queryRows<Record<string, any>>(db, `select ${COLUMNS} from trellis.schedules order by name`)
    : await queryRows<Record<string, any>>(db, `select ${COLUMNS} from trellis.schedules where name = $1`, [name]);
  return rows.map(toSchedule);
}

/** A schedule the ticker must look at (schedule_tick). */
export interface DueSchedule {
  name: string;
  cron: string;
  time_zone: string;
  next_at: Date | null;
  next_from: Date | null;
  catch_up: number;
  ends_at: Date | null;
  now: Date;
}

/** trellis.schedule_tick. */
export function scheduleTick(db: Queryable, token: string, limit: number): Promise<DueSchedule[]> {
  return queryRows<DueSchedule>(db, 'select * from trellis.schedule_tick($1::bigint, $2)', [token, limit]);
}

/** One schedule's fire for trellis.schedule_fire (times as ISO strings). */
export interface ScheduleFire {
  name: string;
  next_at: string | null;
  next_from: string | null;
  ticks: string[];
  skipped: number;
  next: string | null;
  error: string | null;
}

/** trellis.schedule_fire: the runs started. */
export async function scheduleFire(db: Queryable, token: string, fires: ScheduleFire[]): Promise<number> {
  const rows = await queryRows<{ n: number }>(db, 'select trellis.schedule_fire($1::bigint, $2::jsonb) as n', [token, JSON.stringify(fires)]);
  return rows[0]?.n ?? 0;
}

/** What a manual tick did (trellis.schedule_backfill / schedule_trigger). */
export interface ManualTick {
  /** The tick (to the millisecond): its run's key is `schedule:<name>:<tick in UTC>`. */
  tick: Date;
  /** The tick's run: started now or found (`existing`); null when `buffered` or `skipped`. */
  runId: string | null;
  /**
   * `started`; `existing` (the tick had its run already: the ticker's or an
   * earlier backfill's); `buffered` (`bufferOne`: started by the ticker
   * when the last run ends); `skipped` (the overlap policy).
   */
  outcome: 'started' | 'existing' | 'buffered' | 'skipped';
}

type ManualRow = { tick: Date; run_id: string | null; outcome: ManualTick['outcome'] };

/** trellis.schedule_backfill (ticks) or trellis.schedule_trigger (ticks undefined: now). */
export async function scheduleManual(db: Queryable, name: string, ticks: Date[] | undefined, overlap: string | null): Promise<ManualTick[]> {
  const rows = ticks === undefined
    ? await queryRows<ManualRow>(db, 'select tick, run_id, outcome from trellis.schedule_trigger($1, $2)', [name, overlap])
    : await queryRows<ManualRow>(db, 'select tick, run_id, outcome from trellis.schedule_backfill($1, $2::timestamptz[], $3)',
      [name, ticks.map((t) => t.toISOString()), overlap]);
  return rows.map((r) => ({ tick: r.tick, runId: r.run_id, outcome: r.outcome }));
}
