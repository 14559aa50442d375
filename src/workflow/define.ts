/** `defineWorkflow`: a named, versioned async function of durable steps. */
import { quoteValue, ValidationError } from '../errors.ts';
import { type Duration, toMs, toTimeoutMs } from '../protocol/duration.ts';
import { assertName } from './names.ts';
import { checkRetryPolicy, type RetryPolicy } from './retry.ts';
import type { InferInput, InferOutput, StandardSchemaV1 } from './standard-schema.ts';
import type { WorkflowContext } from './context.ts';
import type { SignalDefinition } from './signal.ts';
import { declaredHooks, type WorkflowHooks } from './hooks.ts';
import { checkInterceptors, type WorkflowInterceptors } from './run-control.ts';
import { optionNames, refuseUnknownKeys } from '../protocol/option-bounds.ts';
import type { Stored } from '../protocol/stored.ts';

/**
 * Options of {@link defineWorkflow}.
 *
 * @example
 * const welcome = defineWorkflow({ name: 'welcome', version: '2', input: z.object({ email: z.string() }), queue: 'mail', pauseAfter: 5 },
 *   async (ctx, { email }) => ctx.step('send', () => sendEmail(email, 'Welcome!')));
 */
export interface WorkflowOptions<S extends StandardSchemaV1, OS extends StandardSchemaV1 | undefined, O = any> {
  /**
   * Unique name; letters, digits, space and _ . : @ / - (no quotes).
   *
   * @example
   * defineWorkflow({ name: 'billing.monthly-invoice', input: z.object({}) }, async () => 'ok');
   */
  name: string;
  /**
   * Runs are pinned to the version they started on (default '1').
   *
   * @example
   * defineWorkflow({ name: 'invoice', version: '2024-06', input: z.object({}) }, async () => 'ok');
   */
  version?: string | undefined;
  /**
   * Schema of the input, checked by the client on start and by the worker on
   * claim. For a zod 4 schema, its shape (a JSON Schema subset) is registered
   * too, and SQL checks starts from SQL or by name against it (decision 0016).
   *
   * @example
   * defineWorkflow({ name: 'greet', input: z.object({ name: z.string().min(1) }) }, async (ctx, { name }) => `hello ${name}`);
   */
  input: S;
  /**
   * Optional schema of the output, checked before the run completes.
   *
   * @example
   * defineWorkflow({ name: 'total', input: z.object({}), output: z.number().int() }, async () => 42);
   */
  output?: OS | undefined;
  /**
   * Queue new runs go to (default 'default').
   *
   * @example
   * defineWorkflow({ name: 'report', input: z.object({}), queue: 'reports' }, async () => 'ok');
   */
  queue?: string | undefined;
  /**
   * Retries of the whole workflow function when it throws (default: no
   * retries). A retry replays from the first failed call.
   *
   * @example
   * defineWorkflow({ name: 'import', input: z.object({}), retry: { maxAttempts: 3, initialDelay: '1 minute' } }, async () => 'ok');
   */
  retry?: RetryPolicy | undefined;
  /**
   * The dead letter: park the run (status `paused`, the step's last error
   * kept on the run) once a step has failed this many consecutive attempts,
   * or earlier when its retry policy runs out first (`maxAttempts`, default
   * 3), instead of retrying or failing it. Fix the cause, then resume with
   * `client.resume()` / `trellis.run_resume()`: the step runs again with a
   * fresh count (up to `pauseAfter` more attempts and a full retry policy; the
   * attempt number handed to the step keeps counting up). Failures that say
   * "do not retry" are not parked: `NonRetryableError`, `retryIf` returning
   * false, validation and payload errors, cancellation, and side effects
   * (which run at most once) fail the step as usual, so the workflow can
   * catch them.
   *
   * @example
   * const sync = defineWorkflow({ name: 'sync', input: z.object({}), pauseAfter: 3 },
   *   async (ctx) => ctx.step('push', () => fetchJson('https://crm.example/push')));
   */
  pauseAfter?: number | undefined;
  /**
   * Resume a run parked by its own code (`pauseAfter`, a step's
   * `ParkRunRequest`) this long after it was parked, as `client.resume`
   * would (luno's pause retry): the step gets a fresh count of attempts.
   * Done by the `trellis.resumes` duty of the workers (about every second);
   * a run parks again if the step still fails, and is resumed again. An
   * operator's `pause` of a parked run holds it until an operator resumes
   * it; runs an operator paused are never resumed by this.
   *
   * @example
   * const sync = defineWorkflow({ name: 'sync', input: z.object({}), pauseAfter: 3, resumeAfter: '1 hour' },
   *   async (ctx) => ctx.step('push', () => fetchJson('https://crm.example/push')));
   */
  resumeAfter?: Duration | undefined;
  /**
   * With `resumeAfter`: resume a parked run automatically at most this many
   * times (a whole number from 1); parked once more after that, it stays
   * parked for an operator, its `resume_at` null. `trellis.runs.auto_resumes`
   * counts the automatic resumes; an operator's resume or retry starts the
   * count again. Without it, a run that keeps failing is resumed for ever.
   *
   * @example
   * const sync = defineWorkflow({ name: 'sync', input: z.object({}), pauseAfter: 3, resumeAfter: '1 hour', maxResumes: 24 },
   *   async (ctx) => ctx.step('push', () => fetchJson('https://crm.example/push')));
   */
  maxResumes?: number | undefined;
  /**
   * The signals this workflow waits for. Declared, they are registered with
   * the version (their payload shapes, as for the input), and a signal sent
   * from SQL or by name is refused (`ValidationError`, TR001) when the
   * version does not declare it or its payload does not match; nothing is
   * buffered and the run is not woken. Without `signals`, any signal is
   * buffered and its payload checked only when a wait consumes it.
   *
   * @example
   * const approved = defineSignal('approved', z.object({ by: z.string() }));
   * const approval = defineWorkflow({ name: 'approval', input: z.object({}), signals: [approved] },
   *   async (ctx) => ctx.waitForSignal(approved, { timeout: '7 days' }));
   */
  signals?: readonly SignalDefinition<any, any>[] | undefined;
  /**
   * Lifecycle hooks, run durably when a run completes, fails, is cancelled
   * or is paused: the delivery is written in the transaction that ends the
   * run, and any worker serving this workflow runs it, at least once, with
   * retries (`retry`, `timeout`); one that keeps failing is parked in
   * trellis.hook_deliveries (`trellis.hook_retry(id)` tries it again).
   *
   * @example
   * const order = defineWorkflow({ name: 'order', input: z.object({ id: z.string() }),
   *   hooks: { onComplete: async (e) => { await fetch(webhookUrl, { method: 'POST', body: JSON.stringify(e.output) }); } } },
   *   async (ctx, { id }) => ctx.step('ship', () => ship(id)));
   */
  hooks?: WorkflowHooks<InferOutput<S>, O> | undefined;
  /**
   * Events of this workflow's runs carry their output and error (default false: payloads are not copied).
   *
   * @example
   * const invoice = defineWorkflow({ name: 'invoice', input: z.object({ orderId: z.string() }), eventPayloads: true },
   *   async (ctx, { orderId }) => ctx.step('charge', ({ idempotencyKey, signal }) => charge(orderId, { idempotencyKey, signal })));
   * for await (const e of client.events({ workflows: ['invoice'], kinds: ['completed'], signal })) console.log(e.body.output);
   */
  eventPayloads?: boolean | undefined;
  /**
   * In-process interceptors around the workflow and its steps (logging,
   * metrics, auditing): `beforeWorkflow`, `afterWorkflow`, `beforeStep`,
   * `afterStep`, called in the process executing the run, not durably; see
   * `WorkflowInterceptors` for the call order. (The durable lifecycle hooks
   * are `hooks`.)
   *
   * @example
   * const audited = defineWorkflow({ name: 'audited', input: z.object({}),
   *   interceptors: { afterStep: ({ step }, error) => console.log(step, error ? 'failed' : 'ok') } },
   *   async (ctx) => ctx.step('work', () => 1));
   */
  interceptors?: WorkflowInterceptors | undefined;
}

/** A workflow's function: `I` is its input as the schema outputs it, `TInput` as the schema takes it (what continueAsNew takes). */
export type WorkflowFn<I, O, TInput = unknown> = (ctx: WorkflowContext<TInput>, input: I) => Promise<O>;

export interface WorkflowDefinition<I = any, O = any, TInput = I> {
  readonly kind: 'trellis.workflow';
  readonly name: string;
  readonly version: string;
  readonly queue: string;
  readonly input: StandardSchemaV1<TInput, I>;
  readonly output: StandardSchemaV1<unknown, O> | undefined;
  readonly retry: RetryPolicy | undefined;
  readonly pauseAfter: number | undefined;
  /** `resumeAfter` in milliseconds, if given. */
  readonly resumeAfterMs?: number | undefined;
  /** `maxResumes`, if given. */
  readonly maxResumes?: number | undefined;
  /** The declared signals (`signals` option), if any. */
  readonly signals: readonly SignalDefinition<any, any>[] | undefined;
  /** The lifecycle hooks (`hooks` option), if any. */
  readonly hooks?: WorkflowHooks<any, any> | undefined;
  /** Whether its events carry output and error. */
  readonly eventPayloads?: boolean | undefined;
  /** The in-process interceptors (`interceptors` option), if any. */
  readonly interceptors?: WorkflowInterceptors | undefined;
  readonly fn: WorkflowFn<I, O, TInput>;
}

/** The input type a client passes to start a workflow. */
export type WorkflowInput<W> = W extends WorkflowDefinition<any, any, infer T> ? T : never;
/** The result type a client gets back. */
export type WorkflowOutput<W> = W extends WorkflowDefinition<any, infer O, any> ? Stored<O> : never;

/** Every option defineActivity takes. */
const ACTIVITY_OPTIONS = optionNames<ActivityOptions<StandardSchemaV1>>({ name: true, queue: true, version: true, input: true, retry: true, timeout: true });

/** Every option defineWorkflow takes (a misspelt one is refused). */
const WORKFLOW_OPTIONS = optionNames<WorkflowOptions<StandardSchemaV1, undefined>>({
  name: true, version: true, input: true, output: true, queue: true, retry: true, pauseAfter: true, resumeAfter: true,
  maxResumes: true, signals: true, hooks: true, eventPayloads: true, interceptors: true,
});

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
  options: WorkflowOptions<S, OS, NoInfer<OS extends StandardSchemaV1 ? InferOutput<OS> : O>>,
  fn: WorkflowFn<InferOutput<S>, OS extends StandardSchemaV1 ? InferOutput<OS> : O, InferInput<S>>,
): WorkflowDefinition<InferOutput<S>, OS extends StandardSchemaV1 ? InferOutput<OS> : O, InferInput<S>> {
  if (typeof options !== 'object' || options === null) throw new ValidationError('defineWorkflow needs options: { name, input }');
  assertName(options.name, 'workflow');
  refuseUnknownKeys(options, WORKFLOW_OPTIONS, `workflow ${options.name}`);
  const version = assertName(options.version ?? '1', 'version');
  const queue = assertName(options.queue ?? 'default', 'queue');
  if (options.pauseAfter !== undefined && (!Number.isInteger(options.pauseAfter) || options.pauseAfter < 1)) {
    throw new ValidationError(`workflow ${options.name}: pauseAfter must be a positive integer`);
  }
  const resumeAfterMs = checkResumeAfter(options.resumeAfter, `workflow ${options.name}`);
  const maxResumes = checkMaxResumes(options.maxResumes, resumeAfterMs, `workflow ${options.name}`);
  if (!options.input || typeof options.input['~standard']?.validate !== 'function') {
    throw new ValidationError(`workflow ${options.name}: input must be a zod (or Standard Schema) schema`);
  }
  if (options.signals !== undefined) {
    const names = new Set<string>();
    for (const signal of options.signals) {
      if (signal?.kind !== 'trellis.signal') throw new ValidationError(`workflow ${options.name}: signals must be defineSignal() definitions`);
      if (names.has(signal.name)) throw new ValidationError(`workflow ${options.name}: signal ${signal.name} is declared twice`);
      names.add(signal.name);
    }
  }
  declaredHooks(options.hooks);
  checkRetryPolicy(options.retry, `workflow ${options.name}: retry`, { steps: false });
  if (options.eventPayloads !== undefined && typeof options.eventPayloads !== 'boolean') {
    throw new ValidationError(`workflow ${options.name}: eventPayloads must be true or false`);
  }
  return Object.freeze({
    kind: 'trellis.workflow' as const,
    name: options.name,
    version,
    queue,
    input: options.input as never,
    output: options.output as never,
    retry: options.retry,
    pauseAfter: options.pauseAfter,
    resumeAfterMs,
    maxResumes,
    signals: options.signals ? Object.freeze([...options.signals]) : undefined,
    hooks: options.hooks ? Object.freeze({ ...options.hooks }) as never : undefined,
    eventPayloads: options.eventPayloads ?? false,
    interceptors: checkInterceptors(options.interceptors, `workflow ${options.name}`),
    fn: fn as never,
  });
}

/**
 * Options of {@link defineActivity}.
 *
 * @example
 * const resize = defineActivity({ name: 'resize', queue: 'gpu', input: z.object({ url: z.string() }), retry: { maxAttempts: 5 }, timeout: '2 minutes' },
 *   async ({ url }, { signal }) => fetchJson(url, { signal }));
 */
export interface ActivityOptions<S extends StandardSchemaV1> {
  /**
   * The activity's name (a workflow name: letters, digits, `_ - . :`).
   *
   * @example
   * defineActivity({ name: 'thumbnail', queue: 'gpu', input: z.string() }, (url) => url);
   */
  name: string;
  /**
   * The queue whose workers execute this activity (another service, a bigger machine).
   *
   * @example
   * defineActivity({ name: 'ocr', queue: 'ocr-boxes', input: z.string() }, (url) => url);
   */
  queue: string;
  /**
   * Its version (default '1'); runs stay pinned to the version they started on.
   *
   * @example
   * defineActivity({ name: 'ocr', version: '2', queue: 'ocr-boxes', input: z.string() }, (url) => url);
   */
  version?: string | undefined;
  /**
   * Schema of the input (zod or any Standard Schema), checked before the run starts.
   *
   * @example
   * defineActivity({ name: 'ocr', queue: 'ocr-boxes', input: z.object({ url: z.string().url() }) }, ({ url }) => url);
   */
  input: S;
  /**
   * Retry policy of its one step (default: 3 attempts, exponential from 1s).
   *
   * @example
   * defineActivity({ name: 'ocr', queue: 'ocr-boxes', input: z.string(), retry: { maxAttempts: 10 } }, (url) => url);
   */
  retry?: RetryPolicy | undefined;
  /**
   * Per-attempt timeout of its step.
   *
   * @example
   * defineActivity({ name: 'ocr', queue: 'ocr-boxes', input: z.string(), timeout: '5 minutes' }, (url) => url);
   */
  timeout?: import('../protocol/duration.ts').Duration | undefined;
}

/**
 * An activity: one step executed by a worker serving `queue`, awaited by a
 * workflow with `ctx.child(activity, input)`. The calling run waits without
 * holding a worker and wakes on its own queue when the activity finishes.
 *
 * @example
 * const resize = defineActivity({ name: 'resize', queue: 'gpu', input: z.object({ url: z.string() }) },
 *   async ({ url }, { signal }) => render(url, { signal }));
 */
export function defineActivity<S extends StandardSchemaV1, O>(
  options: ActivityOptions<S>,
  fn: (input: InferOutput<S>, step: import('./context.ts').StepContext) => Promise<O> | O,
): WorkflowDefinition<InferOutput<S>, O, InferInput<S>> {
  if (typeof options !== 'object' || options === null) throw new ValidationError('defineActivity needs options: { name, queue, input }');
  refuseUnknownKeys(options, ACTIVITY_OPTIONS, `activity ${String(options.name).slice(0, 60)}`);
  checkRetryPolicy(options.retry, `activity ${String(options.name)}: retry`);
  if (options.timeout !== undefined) toTimeoutMs(options.timeout, `activity ${String(options.name)}: timeout`);
  return defineWorkflow({ name: options.name, version: options.version, queue: options.queue, input: options.input },
    async (ctx, input) => ctx.step(options.name, (step) => fn(input as InferOutput<S>, step), { retry: options.retry, timeout: options.timeout }),
  ) as never;
}

/** 1000 years as a duration reads them: the longest wait a release (delay_ms) takes. */
const MAX_RESUME_AFTER_MS = 31_536_000_000_000;

/** A definition's `maxResumes` (undefined: none); ValidationError naming `what` unless a whole number from 1 to 1,000,000 given with a `resumeAfter`. */
export function checkMaxResumes(maxResumes: unknown, resumeAfterMs: number | undefined, what: string): number | undefined {
  if (maxResumes === undefined) return undefined;
  if (typeof maxResumes !== 'number' || !Number.isInteger(maxResumes) || maxResumes < 1 || maxResumes > 1_000_000) {
    throw new ValidationError(`${what}: maxResumes must be a whole number from 1 to 1000000, not ${typeof maxResumes === 'number' ? String(maxResumes) : quoteValue(maxResumes)}`);
  }
  if (resumeAfterMs === undefined) throw new ValidationError(`${what}: maxResumes needs resumeAfter (it caps the automatic resumes)`);
  return maxResumes;
}

/** A definition's `resumeAfter` in milliseconds (undefined: none); ValidationError naming `what` for anything but a duration from 1 ms to 1000 years. */
export function checkResumeAfter(resumeAfter: Duration | undefined, what: string): number | undefined {
  if (resumeAfter === undefined) return undefined;
  const ms = toMs(resumeAfter, `${what}: resumeAfter`);
  if (ms < 1 || ms > MAX_RESUME_AFTER_MS) {
    throw new ValidationError(`${what}: resumeAfter must be a duration longer than 0 and at most 1000 years, not ${quoteValue(resumeAfter)}`);
  }
  return ms;
}
