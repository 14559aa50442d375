/** Signal definitions shared by sender and receiver, with one typed schema. */
import { assertName } from './names.ts';
import type { InferInput, InferOutput, StandardSchemaV1 } from './standard-schema.ts';

export interface SignalDefinition<T = unknown, TInput = T> {
  readonly kind: 'trellis.signal';
  readonly name: string;
  readonly schema: StandardSchemaV1<TInput, T> | undefined;
}

/**
 * Define a signal once; `client.signal(run, approved, payload)` validates the
 * payload before sending and `ctx.waitForSignal(approved)` returns it typed.
 *
 * @example
 * export const approved = defineSignal('approved', z.object({ by: z.string() }));
 */
export function defineSignal<S extends StandardSchemaV1>(name: string, schema: S): SignalDefinition<InferOutput<S>, InferInput<S>>;
export function defineSignal<T = unknown>(name: string): SignalDefinition<T>;
export function defineSignal(name: string, schema?: StandardSchemaV1): SignalDefinition {
  return Object.freeze({ kind: 'trellis.signal' as const, name: assertName(name, 'signal'), schema });
}

/** The payload type a sender passes for `S`: a signal definition's schema input, or anything for a bare name. */
export type SignalPayload<S> = S extends SignalDefinition<any, infer I> ? I : unknown;

/** What `waitForSignal` resolves to. */
export type SignalResult<T> = { timedOut: false; payload: T; signalId: string | null } | { timedOut: true };
