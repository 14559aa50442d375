/**
 * Durations: a number of milliseconds, or a string in one grammar shared
 * with PostgreSQL. Every string `toMs` accepts is also valid `interval`
 * input and means the same time there (`extract(epoch from s::interval)`),
 * checked against a real server by test/sql/duration-parity.test.ts; see
 * docs/workflows.md#durations.
 *
 * Grammar (units are lowercase; terms are separated by whitespace):
 *   duration := term (ws term)* | iso
 *   term     := decimal ws? unit             '30s', '5 minutes', '1.5 hours'
 *   decimal  := digits ('.' digits)?
 *   unit     := ms | msec | msecs | millisecond | milliseconds
 *             | s | sec | secs | second | seconds
 *             | m | min | mins | minute | minutes
 *             | h | hr | hrs | hour | hours
 *             | d | day | days | w | week | weeks
 *             | mon | mons | month | months
 *             | y | yr | yrs | year | years
 *   iso      := 'P' (n'Y')? (n'M')? (n'W')? (n'D')? ('T' (n'H')? (n'M')? (n'S')?)?   ISO 8601, at least one part
 * Each unit at most once ('1 hour 30 minutes', not '1 hour 1 hour'). A month
 * is 30 days and a year 365.25 days, as PostgreSQL counts them; a fraction
 * of a year must come to whole months ('1.5 years' is 1 year and 6 months;
 * '0.05 years' is refused: PostgreSQL 13 truncates the rest of the months,
 * 14 and later round it). Results are rounded to microseconds (a fraction of
 * a microsecond may land 1 µs from PostgreSQL's own reading, docs/workflows.md).
 * Not accepted (PostgreSQL takes them, with other meanings or none that a
 * duration should have): a bare number in a string ('5' is 5 seconds
 * there), signs and 'ago', clock forms ('1:30'), glued terms ('1h30m'),
 * upper-case units.
 */
import { quoteValue, ValidationError } from '../errors.ts';

/** A unit name of the duration grammar (lowercase). */
export type DurationUnit =
  | 'ms' | 'msec' | 'msecs' | 'millisecond' | 'milliseconds'
  | 's' | 'sec' | 'secs' | 'second' | 'seconds'
  | 'm' | 'min' | 'mins' | 'minute' | 'minutes'
  | 'h' | 'hr' | 'hrs' | 'hour' | 'hours'
  | 'd' | 'day' | 'days'
  | 'w' | 'week' | 'weeks'
  | 'mon' | 'mons' | 'month' | 'months'
  | 'y' | 'yr' | 'yrs' | 'year' | 'years';

/** One term: a number and a unit, with or without a space ('30s', '5 minutes'). */
export type DurationTerm = `${number}${DurationUnit}` | `${number} ${DurationUnit}`;

/**
 * A duration: milliseconds (a finite number, zero or more), or a string of
 * the grammar above: one or more terms ('30s', '1 hour 30 minutes',
 * '7 years') or ISO 8601 ('PT1H30M'). The type rejects what the parser
 * rejects where a template literal type can: a string that does not start
 * with a number and a known lowercase unit ('5', '1 fortnight', '1 Hour',
 * 'soon'). It checks the first term only (a union over every pair of terms
 * is too large for the compiler); `toMs` checks the rest at run time and
 * throws `ValidationError` for a repeated unit or an unknown later term.
 *
 * @example
 * const grace: Duration = '1 hour 30 minutes';
 * const keep: Duration = '7 years';
 * const iso: Duration = 'P1DT12H';
 * const ms: Duration = 250;
 */
export type Duration =
  | number
  | DurationTerm
  | `${DurationTerm} ${string}`
  | `P${string}`;

const SECOND = 1000;
const DAY = 86_400_000;
type Field = 'year' | 'month' | 'week' | 'day' | 'hour' | 'minute' | 'second' | 'ms';
const FIELD_MS: Record<Exclude<Field, 'year'>, number> = {
  month: 30 * DAY, week: 7 * DAY, day: DAY, hour: 3_600_000, minute: 60_000, second: SECOND, ms: 1,
};
const UNITS: Record<DurationUnit, Field> = {
  ms: 'ms', msec: 'ms', msecs: 'ms', millisecond: 'ms', milliseconds: 'ms',
  s: 'second', sec: 'second', secs: 'second', second: 'second', seconds: 'second',
  m: 'minute', min: 'minute', mins: 'minute', minute: 'minute', minutes: 'minute',
  h: 'hour', hr: 'hour', hrs: 'hour', hour: 'hour', hours: 'hour',
  d: 'day', day: 'day', days: 'day',
  w: 'week', week: 'week', weeks: 'week',
  mon: 'month', mons: 'month', month: 'month', months: 'month',
  y: 'year', yr: 'year', yrs: 'year', year: 'year', years: 'year',
};
const TERM = /^(\d+(?:\.\d+)?) ?([a-z]+)$/;
const ISO = /^P(?:(\d+(?:\.\d+)?)Y)?(?:(\d+(?:\.\d+)?)M)?(?:(\d+(?:\.\d+)?)W)?(?:(\d+(?:\.\d+)?)D)?(?:T(?:(\d+(?:\.\d+)?)H)?(?:(\d+(?:\.\d+)?)M)?(?:(\d+(?:\.\d+)?)S)?)?$/;
const ISO_FIELDS: Field[] = ['year', 'month', 'week', 'day', 'hour', 'minute', 'second'];
const MAX_QUOTED = 40;

/** Round half to even, as PostgreSQL's rint() does (the months of a fraction of a year, microseconds). */
function rint(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * A duration's milliseconds, as PostgreSQL's `extract(epoch from …)` counts
 * an interval: years and whole months go into one count of months (a
 * fraction of a year as whole months, a fraction of a month as 30-day
 * days), every 12 of which is a year of 365.25 days and each other one 30
 * days ('12 months' is a year, not 360 days); the rest as it is.
 */
function fieldsMs(fields: readonly [Field, number][]): number {
  let months = 0;
  let rest = 0;
  for (const [field, n] of fields) {
    const whole = Math.trunc(n);
    if (field === 'year') months += whole * 12 + rint((n - whole) * 12);
    else if (field === 'month') {
      months += whole;
      rest += (n - whole) * FIELD_MS.month;
    } else rest += n * FIELD_MS[field];
  }
  return Math.floor(months / 12) * 365.25 * DAY + (months % 12) * FIELD_MS.month + rest;
}

/**
 * Whether a year's fraction comes to whole months ('1.5 years', '0.25 years'):
 * PostgreSQL 13 truncates the rest of the months and 14+ rounds it, so a
 * fraction like '0.05 years' would mean different times on different servers.
 */
function wholeMonthsOfYears(fields: readonly [Field, number][]): boolean {
  return fields.every(([field, n]) => {
    if (field !== 'year') return true;
    const months = (n - Math.trunc(n)) * 12;
    return Math.abs(months - Math.round(months)) < 1e-9;
  });
}

/** The fields of a duration string, or undefined if it is not one. */
function parse(text: string): [Field, number][] | undefined {
  const s = text.trim();
  if (s.startsWith('P')) {
    const m = ISO.exec(s);
    if (!m || s === 'P' || s.endsWith('T')) return undefined;
    const out: [Field, number][] = [];
    ISO_FIELDS.forEach((field, i) => {
      const v = m[i + 1];
      if (v !== undefined) out.push([field, Number(v)]);
    });
    return out.length ? out : undefined;
  }
  // Terms are split on whitespace; a term's number and unit may be apart ('5 minutes').
  const words = s.split(/\s+/);
  const terms: string[] = [];
  for (let i = 0; i < words.length; i++) {
    const word = words[i] as string;
    const next = words[i + 1];
    if (/^\d+(?:\.\d+)?$/.test(word) && next !== undefined && /^[a-z]+$/.test(next)) {
      terms.push(`${word} ${next}`);
      i++;
    } else terms.push(word);
  }
  const seen = new Set<Field>();
  const out: [Field, number][] = [];
  for (const term of terms) {
    const m = TERM.exec(term);
    const field = m ? UNITS[m[2] as DurationUnit] : undefined;
    if (!m || field === undefined || !Object.hasOwn(UNITS, m[2] as string) || seen.has(field)) return undefined;
    seen.add(field);
    out.push([field, Number(m[1])]);
  }
  return out.length ? out : undefined;
}

/**
 * Parse a duration to milliseconds: a number is taken as milliseconds, a
 * string by the grammar of {@link Duration}. Throws `ValidationError`
 * (quoting at most 40 characters of the value) for anything else.
 *
 * @example
 * toMs('1 hour 30 minutes'); // 5_400_000
 * toMs('7 years');           // 220_903_200_000 (a year is 365.25 days)
 * toMs('PT1M30S');           // 90_000
 * toMs(250);                 // 250
 */
export function toMs(duration: Duration, what = 'duration'): number {
  if (typeof duration === 'number') {
    if (Number.isFinite(duration) && duration >= 0) return duration;
  } else if (typeof duration === 'string' && duration.length <= 200) {
    const fields = parse(duration);
    if (fields && !wholeMonthsOfYears(fields)) {
      throw new ValidationError(`${what} ${quoteValue(duration)}: a fraction of a year must come to whole months ('1.5 years', '0.25 years'), `
        + 'as PostgreSQL versions treat the rest differently');
    }
    if (fields) {
      // Whole microseconds, rounded half to even as PostgreSQL stores them.
      const ms = rint(fieldsMs(fields) * 1000) / 1000;
      if (Number.isFinite(ms)) return ms;
    }
  }
  throw new ValidationError(
    `${what} ${quoteValue(duration)} is not a duration: use milliseconds or a string like '30s', '5 minutes', '1 hour 30 minutes', '7 years' or 'PT1H30M'`,
  );
}

/**
 * A timeout in milliseconds: a duration (as `toMs` reads it) longer than
 * zero. A timeout of 0 would end every attempt before it began; it is
 * refused with `ValidationError`.
 *
 * @example
 * toTimeoutMs('30 days', 'timeout of step render'); // 2_592_000_000
 */
export function toTimeoutMs(duration: Duration, what = 'timeout'): number {
  const ms = toMs(duration, what);
  if (ms <= 0) throw new ValidationError(`${what} must be longer than 0, not ${quoteValue(duration)}`);
  return ms;
}
