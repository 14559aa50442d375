/** Durations as milliseconds or human strings: '250ms', '30s', '5 minutes', '1 day', '2h'. */
import { quoteValue, ValidationError } from '../errors.ts';

export type Duration = number | `${number}${string}`;

const UNITS: Record<string, number> = {
  ms: 1, millisecond: 1, milliseconds: 1,
  s: 1000, sec: 1000, secs: 1000, second: 1000, seconds: 1000,
  m: 60_000, min: 60_000, mins: 60_000, minute: 60_000, minutes: 60_000,
  h: 3_600_000, hr: 3_600_000, hour: 3_600_000, hours: 3_600_000,
  d: 86_400_000, day: 86_400_000, days: 86_400_000,
  w: 604_800_000, week: 604_800_000, weeks: 604_800_000,
};

/** Parse a duration to milliseconds; throws ValidationError for anything else. */
export function toMs(duration: Duration, what = 'duration'): number {
  if (typeof duration === 'number') {
    if (Number.isFinite(duration) && duration >= 0) return duration;
  } else if (typeof duration === 'string') {
    const match = /^\s*(\d+(?:\.\d+)?)\s*([a-z]+)\s*$/i.exec(duration);
    const unit = match ? UNITS[(match[2] as string).toLowerCase()] : undefined;
    if (match && unit !== undefined) return Number(match[1]) * unit;
  }
  throw new ValidationError(`${what} ${quoteValue(duration)} is not a duration (e.g. 500, '30s', '5 minutes', '1 day')`);
}
