/**
 * Names of workflows, versions, queues and steps. Mirrors trellis._check_name
 * in sql/000_support.sql (a test checks both agree), so bad names are refused
 * in TS before a round trip and in SQL for every other caller.
 */
import { quoteValue, ValidationError } from '../errors.ts';

export const NAME_PATTERN = /^[A-Za-z0-9_](?:[A-Za-z0-9_.:@/ -]{0,126}[A-Za-z0-9_.:@/-])?$/;

export function assertName(value: unknown, what: string): string {
  if (typeof value !== 'string' || !NAME_PATTERN.test(value)) {
    throw new ValidationError(
      `invalid ${what} name ${quoteValue(value)}: use 1-128 letters, digits, space or _ . : @ / - (not starting or ending with a space)`,
    );
  }
  return value;
}

/**
 * The name of a workflow or signal given by name (checked) or by its
 * definition (an object with a `name`): ValidationError for anything else
 * (undefined, a number), never a TypeError from reading its name.
 *
 * @example
 * nameOf(onboard, 'workflow'); // 'onboard'
 */
export function nameOf(value: unknown, what: string): string {
  if (typeof value === 'string') return assertName(value, what);
  if (typeof value === 'object' && value !== null && typeof (value as { name?: unknown }).name === 'string') {
    return assertName((value as { name: string }).name, what);
  }
  throw new ValidationError(`a ${what} is its definition or its name, not ${quoteValue(value)}`);
}

/** A run id: a UUID, any case. */
export const UUID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** `id` if it is a run id (a UUID), else ValidationError. */
export function assertRunId(id: unknown): string {
  if (typeof id !== 'string' || !UUID_PATTERN.test(id)) throw new ValidationError(`run id ${quoteValue(id)} is not a UUID`);
  return id;
}
