/**
 * The Standard Schema interface (standardschema.dev), which zod, valibot and
 * arktype implement. Trellis validates every boundary through it, so any of
 * those libraries works; zod is what the docs use.
 */
export interface StandardSchemaV1<Input = unknown, Output = Input> {
  readonly '~standard': {
    readonly version: 1;
    readonly vendor: string;
    readonly validate: (value: unknown) => StandardResult<Output> | Promise<StandardResult<Output>>;
    readonly types?: { readonly input: Input; readonly output: Output } | undefined;
  };
}

export type StandardResult<Output> =
  | { readonly value: Output; readonly issues?: undefined }
  | { readonly issues: ReadonlyArray<{ readonly message: string; readonly path?: ReadonlyArray<PropertyKey | { readonly key: PropertyKey }> | undefined }> };

export type InferInput<S> = S extends StandardSchemaV1<infer I, unknown> ? I : unknown;
export type InferOutput<S> = S extends StandardSchemaV1<unknown, infer O> ? O : unknown;

import { ValidationError } from '../errors.ts';

/** Validate `value`; throws ValidationError listing every issue. */
export async function validate<S extends StandardSchemaV1>(schema: S, value: unknown, what: string): Promise<InferOutput<S>> {
  return checked(await schema['~standard'].validate(value), what) as InferOutput<S>;
}

/**
 * Validate `value` now, without a microtask: for a check that must happen
 * before a durable call takes its number in the same turn (`ctx.reply`'s
 * answer schema). A schema that validates asynchronously (an async refine)
 * is refused with ValidationError.
 */
export function validateNow<S extends StandardSchemaV1>(schema: S, value: unknown, what: string): InferOutput<S> {
  const result = schema['~standard'].validate(value);
  if (typeof (result as { then?: unknown }).then === 'function') {
    void (result as Promise<unknown>).catch(() => undefined);
    throw new ValidationError(`${what}: its schema validates asynchronously (an async refinement); give it one that validates at once`);
  }
  return checked(result as StandardResult<unknown>, what) as InferOutput<S>;
}

function checked(result: StandardResult<unknown>, what: string): unknown {
  if (result.issues) {
    const issues = result.issues.map((issue) => {
      const path = (issue.path ?? []).map((p) => (typeof p === 'object' ? String(p.key) : String(p))).join('.');
      return path ? `${path}: ${issue.message}` : issue.message;
    });
    throw new ValidationError(`${what} is invalid: ${issues.join('; ')}`, { details: { issues } });
  }
  return result.value;
}
