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
  /** Up to `n` of the latest ticks at or before `at`, newest first. */
  latest(at: Date, n: number): Date[];
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

/** The UTC offset of `timeZone` at instant `t` (ms since the epoch), to the second. */
function offsetAt(t: number, timeZone: string): number {
  const second = Math.floor(t / 1000) * 1000;
  return Date.parse(`${wall(new Date(second), timeZone).replace(', ', 'T')}Z`) - second;
}

/**
 * How far back the wall time of `at` was already shown — an hour (or Lord
 * Howe's half hour) when `at` lies in a stretch an autumn change repeats —
 * else 0. A tick there is the repeat of one already fired.
 */
function repeatShift(at: Date, timeZone: string): number {
  if (!shifts(timeZone, at.getUTCFullYear())) return 0;
  for (const d of [3_600_000, 1_800_000]) {
    if (wall(new Date(at.getTime() - d), timeZone) === wall(at, timeZone)) return d;
  }
  return 0;
}

/**
 * The first instant of the repeated stretch that holds `at` (repeat shift
 * `d`): where the offset fell back, found to the second between `at - d`
 * (the old offset) and `at` (the new one). The stretch is [start, start + d).
 */
function repeatStart(at: number, d: number, timeZone: string): number {
  let lo = at - d;
  let hi = at;
  const fallen = offsetAt(hi, timeZone);
  while (hi - lo > 1000) {
    const mid = Math.floor((lo + hi) / 2);
    if (offsetAt(mid, timeZone) === fallen) hi = mid;
    else lo = mid;
  }
  return Math.floor(hi / 1000) * 1000;
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
    // A wall time an autumn repeat brings back is a tick already fired: go
    // past the whole repeated stretch at once (a cron of every second has
    // 3,600 ticks in it), not tick by tick. Each pass leaves one stretch
    // behind; the next change is months away.
    for (let i = 0; i < 4; i++) {
      const next = parsed.nextRun(from);
      if (!next) return null;
      const d = repeatShift(next, zone);
      if (!d) return next;
      from = new Date(repeatStart(next.getTime(), d, zone) + d - 1);
    }
    return null;
  };
  /** Up to `n` ticks at or before `at` (not repeats), newest first. */
  const latest = (at: Date, n: number): Date[] => {
    // In a repeated stretch, only ticks before it count (those in it are repeats).
    const d = repeatShift(at, zone);
    let limit = d ? repeatStart(at.getTime(), d, zone) - 1 : at.getTime();
    const out: Date[] = [];
    // A repeated stretch met on the way back (an hour of repeats after an
    // autumn change) is skipped whole: asked again from before it, where
    // croner gives the first occurrences, the ticks that fired. Without
    // that, n asked for just after the change came back as the one tick
    // after it (issue from the flow-control audit). Each pass leaves at most
    // one stretch behind; the one before is months away.
    for (let pass = 0; pass < 4 && out.length < n; pass++) {
      const want = n - out.length + 2;
      // previousRuns counts whole seconds: ask from the next second, keep those up to the limit.
      const runs = parsed.previousRuns(want, new Date(Math.floor(limit / 1000) * 1000 + 1000)).filter((t) => t.getTime() <= limit);
      let repeat = 0;
      for (const t of runs) {
        repeat = repeatShift(t, zone);
        if (repeat) {
          limit = repeatStart(t.getTime(), repeat, zone) - 1;
          break;
        }
        out.push(t);
        limit = t.getTime() - 1;
        if (out.length === n) break;
      }
      if (!repeat && runs.length < want) break; // no more ticks before
    }
    return out;
  };
  return { cron, timeZone: zone, nextTick, latest };
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

/**
 * Most due ticks walked through one by one for a schedule (~50 µs each): a
 * longer backlog (a cron of every second after an outage) takes its latest
 * ticks straight from the cron, so a ticker's turn stays far shorter than
 * its lease.
 */
const MAX_WALK = 1_000;

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
  let due: Date[] = [];
  let skipped = 0;
  let at: Date | null = first;
  let walked = 0;
  const limit = endsAt && endsAt.getTime() < now.getTime() ? endsAt : now;
  while (at && at.getTime() <= limit.getTime()) {
    due.push(at);
    if (due.length > catchUp + 1) {
      due.shift();
      skipped++;
    }
    if (++walked >= MAX_WALK) {
      // A long backlog: the latest ticks come from the cron itself; those
      // walked so far are skipped unless they are among them (the count of
      // skipped ticks covers the walked ones only).
      const newest = at.getTime();
      const tail = schedule.latest(limit, catchUp + 1).filter((t) => t.getTime() > newest).reverse();
      const kept = [...due, ...tail].slice(-(catchUp + 1));
      skipped += due.length - kept.filter((t) => t.getTime() <= newest).length;
      due = kept;
      at = schedule.nextTick(now);
      break;
    }
    at = schedule.nextTick(at);
  }
  const next = at && (!endsAt || at.getTime() <= endsAt.getTime()) ? at : null;
  return { ticks: due, skipped, next };
}
