/** Range checks shared by the option resolvers of the client and the worker: out of range is a ValidationError. */
import { ValidationError } from '../errors.ts';
import { type Duration, toMs } from './duration.ts';

/** A bound in milliseconds as an error message says it. */
export const humanMs = (ms: number): string => (ms >= 86_400_000 ? `${ms / 86_400_000} day` : ms >= 3_600_000 ? `${ms / 3_600_000} hour`
  : ms >= 1000 ? `${ms / 1000}s` : `${ms}ms`);

/** `value` if it is an integer in [min, max]. */
export function integerIn(value: unknown, name: string, [min, max]: readonly [number, number]): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new ValidationError(`${name} must be an integer from ${min} to ${max}`);
  }
  return value;
}

/** `value` in milliseconds if it is a duration in [min, max] ms. */
export function durationIn(value: Duration, name: string, [min, max]: readonly [number, number]): number {
  const ms = toMs(value, name);
  if (ms < min || ms > max) throw new ValidationError(`${name} must be from ${humanMs(min)} to ${humanMs(max)}`);
  return ms;
}

/**
 * ValidationError naming `what` if `options` has a key not in `keys` (a
 * misspelt option is refused, never ignored), or if it is not an object.
 *
 * @example
 * refuseUnknownKeys({ tll: '2s' }, ['ttl'], 'roles'); // ValidationError: roles has unknown option(s) tll (it takes ttl)
 */
export function refuseUnknownKeys(options: unknown, keys: readonly string[], what: string): void {
  if (typeof options !== 'object' || options === null || Array.isArray(options)) throw new ValidationError(`${what} must be an object`);
  const unknown = Object.keys(options).filter((k) => !keys.includes(k));
  if (unknown.length) throw new ValidationError(`${what} has unknown option(s) ${unknown.join(', ').slice(0, 200)} (it takes ${keys.join(', ')})`);
}

/**
 * The names of an options type, listed once: `keys` must name every key of
 * `T` and nothing else (the compiler checks both), so `refuseUnknownKeys`
 * stays in step with the type as options are added.
 *
 * @example
 * const NAMES = optionNames<{ ttl?: string; every?: string }>({ ttl: true, every: true }); // ['ttl', 'every']
 */
export function optionNames<T>(keys: { [K in keyof Required<T>]: true }): readonly string[] {
  return Object.freeze(Object.keys(keys));
}
