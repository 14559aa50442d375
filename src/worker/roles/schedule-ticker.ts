/**
 * The schedule ticker, the duty of role `trellis.schedules`: read the
 * schedules that are due (or whose next tick is still to be computed),
 * compute their ticks with croner, and hand them to trellis.schedule_fire,
 * fenced by the role's token. Exactly once per tick comes from SQL: each
 * tick's run is started under the key schedule:<name>:<tick>, and a fire
 * for a schedule whose next_at moved since it was read does nothing.
 */
import type { Queryable } from '../../db/queryable.ts';
import { type DueSchedule, scheduleFire, type ScheduleFire, scheduleTick } from '../../db/schedules.ts';
import { type CronSchedule, dueTicks, parseCron } from '../../workflow/cron.ts';

/** Most rounds of one tick (each up to `batch` schedules), so a tick always ends. */
const MAX_ROUNDS = 100;

/**
 * What the ticker does with one due schedule. Whatever goes wrong with one
 * (a value it cannot compute with) is that schedule's error, stored in its
 * last_error, never the whole tick's: the other schedules fire.
 */
export function planFire(due: DueSchedule, crons: Map<string, CronSchedule>): ScheduleFire {
  try {
    return planOne(due, crons);
  } catch (error) {
    const iso = (d: unknown) => (d instanceof Date && !Number.isNaN(d.getTime()) ? d.toISOString() : null);
    return { name: due.name, next_at: iso(due.next_at), next_from: iso(due.next_from), ticks: [], skipped: 0, next: null,
      error: `the ticker could not compute this schedule: ${(error as Error).message}`.slice(0, 500) };
  }
}

function planOne(due: DueSchedule, crons: Map<string, CronSchedule>): ScheduleFire {
  const base = { name: due.name, next_at: due.next_at?.toISOString() ?? null, next_from: due.next_from?.toISOString() ?? null };
  let cron: CronSchedule | undefined;
  const key = `${due.time_zone} ${due.cron}`;
  try {
    cron = crons.get(key) ?? parseCron(due.cron, due.time_zone);
    if (crons.size >= 10_000) crons.clear();
    crons.set(key, cron);
  } catch (error) {
    return { ...base, ticks: [], skipped: 0, next: null, error: (error as Error).message };
  }
  const first = due.next_at ?? (due.next_from ? cron.nextTick(due.next_from) : null);
  if (!first) return { ...base, ticks: [], skipped: 0, next: null, error: null };
  const { ticks, skipped, next } = dueTicks(cron, first, due.now, due.catch_up, due.ends_at);
  return { ...base, ticks: ticks.map((t) => t.toISOString()), skipped, next: next?.toISOString() ?? null, error: null };
}

/** One tick of the ticker: the runs it started. */
export async function tickSchedules(db: Queryable, token: string, batch: number, signal: AbortSignal, crons: Map<string, CronSchedule>): Promise<number> {
  let started = 0;
  for (let round = 0; round < MAX_ROUNDS && !signal.aborted; round++) {
    const due = await scheduleTick(db, token, batch);
    if (due.length === 0) break;
    started += await scheduleFire(db, token, due.map((d) => planFire(d, crons)));
    if (due.length < batch) break;
  }
  return started;
}
