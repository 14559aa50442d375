/** `defineWorkflow`: a named, versioned async function of durable steps. */
import { assertName } from './names.ts';
import type { RetryPolicy } from './retry.ts';
import type { InferInput, InferOutput, StandardSchemaV1 } from './standard-schema.ts';
import type { WorkflowContext } from './context.ts';

export interface WorkflowOptions<S extends StandardSchemaV1, OS extends StandardSchemaV1 | undefined> {
  /** Unique name; letters, digits, space and _ . : @ / - (no quotes). */
  name: string;
  /** Runs are pinned to the version they started on (default '1'). */
  version?: string;
  /** Schema of the input, checked by the client on start and by the worker on claim. */
  input: S;
  /** Optional schema of the output, checked before the run completes. */
  output?: OS;
  /** Queue new runs go to (default 'default'). */
  queue?: string;
  /** Retries of the whole workflow function when it throws (default: no retries). */
  retry?: RetryPolicy;
}

export type WorkflowFn<I, O> = (ctx: WorkflowContext, input: I) => Promise<O>;

export interface WorkflowDefinition<I = any, O = any, TInput = I> {
  readonly kind: 'trellis.workflow';
  readonly name: string;
  readonly version: string;
  readonly queue: string;
  readonly input: StandardSchemaV1<TInput, I>;
  readonly output: StandardSchemaV1<unknown, O> | undefined;
  readonly retry: RetryPolicy | undefined;
  readonly fn: WorkflowFn<I, O>;
}

/** The input type a client passes to start a workflow. */
export type WorkflowInput<W> = W extends WorkflowDefinition<any, any, infer T> ? T : never;
/** The result type a client gets back. */
export type WorkflowOutput<W> = W extends WorkflowDefinition<any, infer O, any> ? O : never;

/**
 * Define a workflow.
 *
 * @example
 * import { z } from 'zod';
 * const greet = defineWorkflow({ name: 'greet', input: z.object({ name: z.string() }) },
 *   async (ctx, { name }) => {
 *     const text = await ctx.step('compose', () => `Hello, ${name}!`);
 *     return { text };
 *   });
 */
export function defineWorkflow<S extends StandardSchemaV1, O, OS extends StandardSchemaV1 | undefined = undefined>(
  options: WorkflowOptions<S, OS>,
  fn: WorkflowFn<InferOutput<S>, OS extends StandardSchemaV1 ? InferOutput<OS> : O>,
): WorkflowDefinition<InferOutput<S>, OS extends StandardSchemaV1 ? InferOutput<OS> : O, InferInput<S>> {
  assertName(options.name, 'workflow');
  const version = assertName(options.version ?? '1', 'version');
  const queue = assertName(options.queue ?? 'default', 'queue');
  if (!options.input || typeof options.input['~standard']?.validate !== 'function') {
    throw new TypeError(`workflow ${options.name}: input must be a zod (or Standard Schema) schema`);
  }
  return Object.freeze({
    kind: 'trellis.workflow' as const,
    name: options.name,
    version,
    queue,
    input: options.input as never,
    output: options.output as never,
    retry: options.retry,
    fn: fn as never,
  });
}
