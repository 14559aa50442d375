/**
 * The type a value has after Trellis stores it as JSON and reads it back:
 * what a step, a transactional step or a side effect resolves to (on the
 * first run and on every replay alike), and what a run's output is to its
 * client and parent. JSON has no dates, maps, sets, functions or
 * `undefined`, so `Stored<Date>` is `string` (its `toJSON`), a `Map` or
 * `Set` is `{}`, function-valued properties are dropped, an `undefined`
 * array element is `null`, and `undefined` alone is `null`.
 *
 * @example
 * const when: Stored<{ at: Date; tags: Set<string> }> = { at: '2027-01-01T00:00:00.000Z', tags: {} };
 */
export type Stored<T> =
  0 extends 1 & T ? any
  : unknown extends T ? unknown
  : T extends { toJSON(...args: any[]): infer J } ? StoredJson<J>
  : T extends string | number | boolean | null ? T
  : T extends undefined | void ? null
  : T extends bigint | symbol | ((...args: any[]) => unknown) ? never
  : T extends ReadonlyMap<unknown, unknown> | ReadonlySet<unknown> ? Record<string, never>
  : T extends readonly unknown[] ? { -readonly [K in keyof T]: Stored<T[K]> }
  : T extends object ? { -readonly [K in keyof T as T[K] extends ((...args: any[]) => unknown) | symbol ? never : K]: Stored<Exclude<T[K], undefined>> }
  : T;

/** What `toJSON` returned, stored in turn (a `Date` gives a string). */
type StoredJson<J> = 0 extends 1 & J ? any : Stored<J>;
