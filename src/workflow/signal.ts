/** Signal definitions shared by sender and receiver, with one typed schema. */
import { assertName } from './names.ts';
import type { InferInput, InferOutput, StandardSchemaV1 } from './standard-schema.ts';
import { ValidationError } from '../errors.ts';
import { optionNames, refuseUnknownKeys } from '../protocol/option-bounds.ts';
import type { Stored } from '../protocol/stored.ts';

export interface SignalDefinition<T = unknown, TInput = T, R = unknown, RInput = R> {
  readonly kind: 'trellis.signal';
  readonly name: string;
  readonly schema: StandardSchemaV1<TInput, T> | undefined;
  /** The schema of the answer `ctx.reply` gives (`RInput`) and the caller gets (`R`) when the signal is a request (`defineSignal(name, schema, { reply })`). */
  readonly reply?: StandardSchemaV1<RInput, R> | undefined;
}

/**
 * Options of `defineSignal`.
 *
 * @example
 * const options: SignalOptions<typeof balanceSchema> = { reply: balanceSchema };
 */
export interface SignalOptions<RS extends StandardSchemaV1> {
  /**
   * The answer's schema when the signal is sent as a request
   * (`client.request`): `ctx.reply` checks the answer against it (a bad one
   * is a `ValidationError` in the run, recorded nothing) and stores what it
   * returns, and `client.request` is typed by it.
   */
  reply: RS;
}

/**
 * Define a signal once; `client.signal(run, approved, payload)` validates the
 * payload before sending and `ctx.waitForSignal(approved)` returns it typed.
 * With `{ reply }`, a request's answer is checked and typed too.
 *
 * @example
 * export const approved = defineSignal('approved', z.object({ by: z.string() }));
 * export const withdraw = defineSignal('withdraw', z.object({ amount: z.number() }), { reply: z.object({ balance: z.number() }) });
 */
export function defineSignal<S extends StandardSchemaV1, RS extends StandardSchemaV1>(name: string, schema: S, options: SignalOptions<RS>):
  SignalDefinition<InferOutput<S>, InferInput<S>, InferOutput<RS>, InferInput<RS>>;
export function defineSignal<S extends StandardSchemaV1>(name: string, schema: S): SignalDefinition<InferOutput<S>, InferInput<S>>;
export function defineSignal<T = unknown>(name: string): SignalDefinition<T>;
export function defineSignal(name: string, schema?: StandardSchemaV1, options?: SignalOptions<StandardSchemaV1>): SignalDefinition {
  if (options !== undefined) {
    if (typeof options !== 'object' || options === null) throw new ValidationError(`defineSignal(${JSON.stringify(String(name).slice(0, 60))}) options must be { reply }`);
    refuseUnknownKeys(options, SIGNAL_OPTIONS, 'defineSignal options');
    if (!isSchema(options.reply)) throw new ValidationError(`defineSignal(${JSON.stringify(String(name).slice(0, 60))}): reply must be a schema (zod, or any Standard Schema)`);
  }
  if (schema !== undefined && !isSchema(schema)) throw new ValidationError(`defineSignal(${JSON.stringify(String(name).slice(0, 60))}): the payload schema must be a schema (zod, or any Standard Schema)`);
  return Object.freeze({ kind: 'trellis.signal' as const, name: assertName(name, 'signal'), schema, ...(options ? { reply: options.reply } : {}) });
}

const SIGNAL_OPTIONS = optionNames<SignalOptions<StandardSchemaV1>>({ reply: true });

function isSchema(value: unknown): value is StandardSchemaV1 {
  return typeof value === 'object' && value !== null && typeof (value as StandardSchemaV1)['~standard']?.validate === 'function';
}

/** The payload type a sender passes for `S`: a signal definition's schema input, or anything for a bare name. */
export type SignalPayload<S> = S extends SignalDefinition<any, infer I, any, any> ? I : unknown;

/** The answer `client.request` resolves to for signal `S`: its reply schema's output as stored (unknown without one). */
export type SignalReply<S> = S extends SignalDefinition<any, any, infer R, any> ? Stored<R> : unknown;

/** The answer type a request's `ctx.reply` takes (phantom: no such property exists). */
declare const replyType: unique symbol;

/** What `waitForSignal` resolves to; `R` is the answer `ctx.reply` takes for it (the input of the reply schema of a signal defined with `{ reply }`). */
export type SignalResult<T, R = unknown> = { timedOut: false; payload: T; signalId: string | null; readonly [replyType]?: R | undefined } | { timedOut: true };
