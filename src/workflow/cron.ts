/**
 * Cron expressions in an IANA time zone, by croner: parse and check them,
 * and list the ticks of a schedule. Shared by the client (which stores a
 * new schedule's first tick) and the worker's schedule ticker. Pure: no
 * database, no clock of its own (every "now" is passed in: the engine's).
 *
 * DST: croner moves a time that a spring-forward skips to the first instant
 * after the gap (02:30 on the night Berlin goes 02:00 -> 03:00 fires at
 * 03:00, once). In an hour that autumn repeats, croner would fire a wall time
 * twice (02:30 CEST, then 02:30 CET); `nextTick` skips the repeat, so a tick
 * of the wall clock fires once.
 */
import { Cron } from 'croner';
import { ValidationError } from '../errors.ts';

/**
 * A parsed cron expression in a time zone.
 *
 * @example
 * const weekdays: CronSchedule = parseCron('0 9 * * 1-5', 'Europe/Berlin');
 * weekdays.nextTick(new Date());
 */
export interface CronSchedule {
  readonly cron: string;
  readonly timeZone: string;
  /** The first tick strictly after `after`, or null if there is none. */
  nextTick(after: Date): Date | null;
}

const wallFormats = new Map<string, Intl.DateTimeFormat>();

/** The wall-clock time of `at` in `timeZone`, to the second. */
function wall(at: Date, timeZone: string): string {
  let format = wallFormats.get(timeZone);
  if (!format) {
    format = new Intl.DateTimeFormat('en-CA', {
      timeZone, hourCycle: 'h23', year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit',
    });
    wallFormats.set(timeZone, format);
  }
  return format.format(at);
}

const shiftYears = new Map<string, boolean>();

/** Whether `timeZone` changes its UTC offset during `year` (DST): only then can a wall time repeat. */
function shifts(timeZone: string, year: number): boolean {
  const key = `${timeZone} ${year}`;
  let known = shiftYears.get(key);
  if (known === undefined) {
    const offset = (month: number) => {
      const at = new Date(Date.UTC(year, month, 1));
      return new Date(wall(at, timeZone).replace(', ', 'T') + 'Z').getTime() - at.getTime();
    };
    const first = offset(0);
    known = [3, 6, 9, 11].some((m) => offset(m) !== first);
    if (shiftYears.size > 10_000) shiftYears.clear();
    shiftYears.set(key, known);
  }
  return known;
}

/** Check an IANA time zone name (ValidationError naming a bounded prefix of it). */
export function assertTimeZone(timeZone: unknown): string {
  if (typeof timeZone !== 'string' || timeZone.length === 0 || timeZone.length > 64) {
    throw new ValidationError(`invalid time zone ${JSON.stringify(String(timeZone).slice(0, 64))}: use an IANA name such as Europe/Berlin`);
  }
  try {
    new Intl.DateTimeFormat('en', { timeZone });
  } catch {
    throw new ValidationError(`unknown time zone ${JSON.stringify(timeZone.slice(0, 64))}: use an IANA name such as Europe/Berlin`);
  }
  return timeZone;
}

/**
 * Parse a cron expression (5 fields, or 6 with seconds first; `@daily` and
 * the like) in `timeZone` (default UTC). Throws ValidationError for an
 * invalid expression or time zone.
 *
 * @example
 * const daily = parseCron('0 7 * * *', 'Europe/Berlin');
 * daily.nextTick(new Date('2026-03-01T00:00:00Z')); // 2026-03-01T06:00:00.000Z
 */
export function parseCron(cron: unknown, timeZone: unknown = 'UTC'): CronSchedule {
  const zone = assertTimeZone(timeZone);
  if (typeof cron !== 'string' || cron.length === 0 || cron.length > 200) {
    throw new ValidationError(`invalid cron expression ${JSON.stringify(String(cron).slice(0, 60))}`);
  }
  let parsed: Cron;
  try {
    parsed = new Cron(cron, { timezone: zone, paused: true });
  } catch (error) {
    throw new ValidationError(`invalid cron expression ${JSON.stringify(cron.slice(0, 60))}: ${(error as Error).message.slice(0, 200)}`);
  }
  // A pattern no date matches (30 February, 31 April) parses, but a schedule
  // of it would never fire: refused like a malformed one. (croner looks
  // ahead a few years; 29 February is found in the next leap year.)
  if (!parsed.nextRun(new Date(0))) {
    throw new ValidationError(`cron expression ${JSON.stringify(cron.slice(0, 60))} never fires: no date matches it`);
  }
  // Many schedules share a cron and their ticks: the ticker asks the same question again.
  const memo = new Map<number, Date | null>();
  const nextTick = (after: Date): Date | null => {
    const hit = memo.get(after.getTime());
    if (hit !== undefined) return hit;
    const next = computeNext(after);
    if (memo.size >= 1000) memo.clear();
    memo.set(after.getTime(), next);
    return next;
  };
  const computeNext = (after: Date): Date | null => {
    let from = after;
    // A wall time an autumn repeat brings back is a tick already fired.
    for (let i = 0; i < 8; i++) {
      const next = parsed.nextRun(from);
      if (!next) return null;
      const seen = shifts(zone, next.getUTCFullYear())
        && [3_600_000, 1_800_000].some((d) => wall(new Date(next.getTime() - d), zone) === wall(next, zone));
      if (!seen) return next;
      from = next;
    }
    return null;
  };
  return { cron, timeZone: zone, nextTick };
}

/** What the ticker does with a schedule whose ticks came due. */
export interface DueTicks {
  /** The ticks to start runs for, oldest first. */
  ticks: Date[];
  /** Due ticks passed over by the catch-up policy. */
  skipped: number;
  /** The next tick after `now` (null: none, or past the end date). */
  next: Date | null;
}

/** Most ticks walked through for one schedule at once (a seconds cron after a long outage). */
const MAX_WALK = 100_000;

/**
 * The ticks of `schedule` due from `first` (its stored next tick, itself
 * due) up to `now`: the latest always runs, and the `catchUp` latest of the
 * earlier ones (missed during downtime) run too; the rest are skipped.
 *
 * @example
 * dueTicks(parseCron('0 * * * *'), new Date('2026-01-01T00:00:00Z'), new Date('2026-01-01T03:30:00Z'), 1, null);
 * // ticks 02:00 and 03:00, skipped 2 (00:00, 01:00), next 04:00
 */
export function dueTicks(schedule: CronSchedule, first: Date, now: Date, catchUp: number, endsAt: Date | null): DueTicks {
  const due: Date[] = [];
  let skipped = 0;
  let at: Date | null = first;
  let walked = 0;
  while (at && at.getTime() <= now.getTime() && (!endsAt || at.getTime() <= endsAt.getTime())) {
    due.push(at);
    if (due.length > catchUp + 1) {
      due.shift();
      skipped++;
    }
    if (++walked >= MAX_WALK) {
      at = schedule.nextTick(now);
      break;
    }
    at = schedule.nextTick(at);
  }
  const next = at && (!endsAt || at.getTime() <= endsAt.getTime()) ? at : null;
  return { ticks: due, skipped, next };
}
