/** Run deadlines (decision 0031): the options a start and a child share. */
import { quoteValue, ValidationError } from '../errors.ts';
import { type Duration, toMs } from './duration.ts';

/**
 * A run's `deadline` or `timeLimit` as run_start and a child op take them
 * (decision 0031): checked here, so a bad one writes nothing; whether the
 * deadline comes after the run's start is the engine's check (its clock).
 */
/**
 * A time given as a Date or a string, as the engine will take it: a
 * string must name a real calendar day (JavaScript's Date rolls
 * 2027-02-30 over into March; PostgreSQL refuses it) and the result must be
 * a finite time. `what` names the option in the error.
 *
 * @example
 * toTime('2027-01-31T17:00:00Z', 'deadline'); // Date
 * toTime('2027-02-30', 'runAt');              // ValidationError
 */
export function toTime(value: Date | string, what: string): Date {
  const at = value instanceof Date ? value : new Date(value);
  if (Number.isNaN(at.getTime())) throw new ValidationError(`${what} ${quoteValue(value)} is not a date`);
  if (typeof value === 'string') {
    const day = /^\s*(\d{4})-(\d{2})-(\d{2})/.exec(value);
    if (day) {
      const [y, m, d] = [Number(day[1]), Number(day[2]), Number(day[3])];
      const check = new Date(Date.UTC(y, m - 1, d));
      if (check.getUTCMonth() !== m - 1 || check.getUTCDate() !== d) throw new ValidationError(`${what} ${quoteValue(value)} is not a date: no such day`);
    }
  }
  return at;
}

export function deadlineOptions(options: { deadline?: Date | string | undefined; timeLimit?: Duration | undefined }): { deadline?: string | undefined; time_limit?: string | undefined } {
  if (options.deadline !== undefined && options.timeLimit !== undefined) {
    throw new ValidationError('give a run either a deadline or a timeLimit, not both');
  }
  if (options.deadline !== undefined) {
    return { deadline: toTime(options.deadline, 'deadline').toISOString() };
  }
  if (options.timeLimit !== undefined) {
    const ms = toMs(options.timeLimit, 'timeLimit');
    if (ms <= 0) throw new ValidationError('timeLimit must be longer than zero');
    if (ms < 1) throw new ValidationError('timeLimit must be at least 1 millisecond');
    if (ms > 31_536_000_000_000) throw new ValidationError('timeLimit must be at most 1000 years');
    return { time_limit: `${ms} milliseconds` };
  }
  return {};
}

/**
 * The last time a wait's timer can be set for (9999-12-31T23:59:59.999Z): a
 * time with a year past 9999 is written with a sign and six digits by
 * `toISOString`, which PostgreSQL does not read, so the checkpoint that
 * carried it was refused on every claim of the run.
 */
export const LAST_WAIT_TIME = Date.UTC(9999, 11, 31, 23, 59, 59, 999);
