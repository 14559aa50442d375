/** Run deadlines (decision 0031): the options a start and a child share. */
import { quoteValue, ValidationError } from '../errors.ts';
import { type Duration, toMs } from './duration.ts';

/**
 * A run's `deadline` or `timeLimit` as run_start and a child op take them
 * (decision 0031): checked here, so a bad one writes nothing; whether the
 * deadline comes after the run's start is the engine's check (its clock).
 */
export function deadlineOptions(options: { deadline?: Date | string | undefined; timeLimit?: Duration | undefined }): { deadline?: string; time_limit?: string } {
  if (options.deadline !== undefined && options.timeLimit !== undefined) {
    throw new ValidationError('give a run either a deadline or a timeLimit, not both');
  }
  if (options.deadline !== undefined) {
    const at = options.deadline instanceof Date ? options.deadline : new Date(options.deadline);
    if (Number.isNaN(at.getTime())) throw new ValidationError(`deadline ${quoteValue(options.deadline)} is not a date`);
    return { deadline: at.toISOString() };
  }
  if (options.timeLimit !== undefined) {
    const ms = toMs(options.timeLimit, 'timeLimit');
    if (ms <= 0) throw new ValidationError('timeLimit must be longer than zero');
    if (ms > 31_536_000_000_000) throw new ValidationError('timeLimit must be at most 1000 years');
    return { time_limit: `${ms} milliseconds` };
  }
  return {};
}
