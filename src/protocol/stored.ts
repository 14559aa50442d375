/**
 * The type a value has after Trellis stores it as JSON and reads it back:
 * what a step, a transactional step or a side effect resolves to (on the
 * first run and on every replay alike), and what a run's output is to its
 * client and parent. JSON has no dates, maps, sets, functions, symbols or
 * `undefined`, so `Stored<Date>` is `string` (its `toJSON`), a `Map` or
 * `Set` is `{}`, function- and symbol-valued properties are dropped, a
 * property that may be `undefined` is optional, an `undefined` array
 * element is `null`, and `undefined` alone is `null` (`void` stays `void`).
 *
 * @example
 * const when: Stored<{ at: Date; tags: Set<string>; note?: string | undefined }> = { at: '2027-01-01T00:00:00.000Z', tags: {} };
 */
export type Stored<T> =
  0 extends 1 & T ? any
  : unknown extends T ? unknown
  : T extends JsonValue ? T
  : T extends { toJSON(...args: any[]): infer J } ? StoredJson<J>
  : T extends undefined | void ? (void extends T ? void : null)
  : T extends bigint | symbol | ((...args: any[]) => unknown) ? never
  : T extends ReadonlyMap<unknown, unknown> | ReadonlySet<unknown> ? Record<string, never>
  : T extends readonly unknown[] ? { -readonly [K in keyof T]: Stored<T[K]> }
  : T extends object ? StoredObject<T>
  : T;

/** A value JSON holds as it is: read back unchanged (and no deeper look, so recursive JSON types stay cheap). */
type JsonValue = string | number | boolean | null | readonly JsonValue[] | { readonly [key: string]: JsonValue };

/** What `toJSON` returned, stored in turn (a `Date` gives a string). */
type StoredJson<J> = 0 extends 1 & J ? any : Stored<J>;

/** Keys JSON drops: symbols, and properties whose values are functions or symbols. */
type Dropped<T, K extends keyof T> = K extends symbol ? true : T[K] extends ((...args: any[]) => unknown) | symbol ? true : false;

/** An object's stored form: its kept properties, optional where the value may be undefined (JSON drops it then). */
type StoredObject<T> = Flat<
  { -readonly [K in keyof T as Dropped<T, K> extends true ? never : undefined extends T[K] ? never : K]: Stored<T[K]> }
  & { -readonly [K in keyof T as Dropped<T, K> extends true ? never : undefined extends T[K] ? K : never]?: Stored<Exclude<T[K], undefined>> }>;

type Flat<T> = { [K in keyof T]: T[K] };
