/**
 * The registry of a template worker: the named step functions templates
 * are made of (ewf's activities), their default policies, and named hooks.
 * One registry per app (no globals): pass it to the worker's template
 * workflows and to `connectTemplates`.
 */
import { ValidationError } from '../errors.ts';
import type { StepContext } from '../workflow/context.ts';
import type { WorkflowDefinition } from '../workflow/define.ts';
import type { Duration } from '../protocol/duration.ts';
import { toTimeoutMs } from '../protocol/duration.ts';
import { assertName } from '../workflow/names.ts';
import { checkRetryPolicy, type RetryPolicy } from '../workflow/retry.ts';
import { refuseUnknownKeys } from '../protocol/option-bounds.ts';

const END = Symbol.for('trellis.template-end');

/**
 * The shared JSON state of a template run: every step reads and changes it; it is saved after each step.
 *
 * @example
 * registry.registerStep('count', (state: TemplateState) => { state.n = ((state.n as number) ?? 0) + 1; });
 */
export type TemplateState = Record<string, unknown>;

/**
 * What a template step function is handed besides the state.
 *
 * @example
 * registry.registerStep('fetch', async (state, ctx) => {
 *   const rows = await api.read({ signal: ctx.signal, idempotencyKey: ctx.idempotencyKey });
 *   if (rows.length === 0) return ctx.end();
 *   state.rows = rows;
 * });
 */
export interface TemplateStepContext extends StepContext {
  /** The template being run, and this entry's name in it. */
  template: string;
  entry: string;
  /** Return this to end the run now (completed, with the state as it is). */
  end(): TemplateEnd;
}

/**
 * What `ctx.end()` returns: end the run now.
 *
 * @example
 * registry.registerStep('stop-if-empty', (state, ctx) => ((state.rows as unknown[]).length ? undefined : ctx.end()));
 */
export type TemplateEnd = { readonly [END]: true };
export const templateEnd: TemplateEnd = Object.freeze({ [END]: true as const });
export const isTemplateEnd = (value: unknown): boolean => typeof value === 'object' && value !== null && END in value;

/**
 * A template step function.
 *
 * @example
 * const fetch: TemplateStepFn = async (state) => { state.rows = await source.read(); };
 */
export type TemplateStepFn = (state: TemplateState, ctx: TemplateStepContext) => void | TemplateEnd | Promise<void | TemplateEnd>;

/**
 * Defaults of a registered step; a template entry's own retry and timeout win.
 *
 * @example
 * registry.registerStep('charge', async (state, { idempotencyKey, signal }) => {
 *   state.receipt = await charge(state.orderId as string, { idempotencyKey, signal });
 * }, { retry: { maxAttempts: 5 }, timeout: '30s' });
 */
export interface TemplateStepDefaults {
  retry?: RetryPolicy | undefined;
  timeout?: Duration | undefined;
}

/**
 * What a template hook is told.
 *
 * @example
 * registry.registerHook('audit', ({ template, entry, runId, error }) => audit.log({ template, entry, runId, ok: !error }));
 */
export interface TemplateHookEvent {
  template: string;
  version: number;
  runId: string;
  state: TemplateState;
  /** The entry, for step hooks. */
  entry?: string | undefined;
  /** True for the step that compensates `entry` (its `compensate` step, run after a later entry failed with `onFailure: 'compensate'`). */
  compensation?: boolean | undefined;
  /** The error, for after-hooks of something that failed. */
  error?: unknown;
}
/**
 * A template hook function.
 *
 * @example
 * const log: TemplateHookFn = ({ entry }) => console.log('step', entry);
 */
export type TemplateHookFn = (event: TemplateHookEvent) => Promise<unknown> | unknown;

/**
 * Registered steps and hooks; create it with `createStepRegistry()`.
 *
 * @example
 * const steps = createStepRegistry().registerStep('noop', () => {});
 */
export class StepRegistry {
  private readonly steps = new Map<string, { fn: TemplateStepFn; defaults: TemplateStepDefaults }>();
  private readonly hooks = new Map<string, TemplateHookFn>();
  /** The compiled workflow of each template name and queue (see templateWorkflow). */
  readonly workflows = new Map<string, WorkflowDefinition>();

  /** Register a step function under `name`. */
  registerStep(name: string, fn: TemplateStepFn, defaults: TemplateStepDefaults = {}): this {
    assertName(name, 'step');
    if (this.steps.has(name)) throw new ValidationError(`step ${name} is registered already`);
    if (typeof fn !== 'function') throw new ValidationError(`step ${name}: fn must be a function`);
    refuseUnknownKeys(defaults, ['retry', 'timeout'], `defaults of step ${name}`);
    checkRetryPolicy(defaults.retry, `retry of step ${name}`);
    if (defaults.timeout !== undefined) toTimeoutMs(defaults.timeout, `timeout of step ${name}`);
    this.steps.set(name, { fn, defaults });
    return this;
  }

  /** Register a hook function under `name`, for a template's `hooks` to name. */
  registerHook(name: string, fn: TemplateHookFn): this {
    assertName(name, 'hook');
    if (this.hooks.has(name)) throw new ValidationError(`hook ${name} is registered already`);
    this.hooks.set(name, fn);
    return this;
  }

  step(name: string): { fn: TemplateStepFn; defaults: TemplateStepDefaults } | undefined {
    return this.steps.get(name);
  }

  hook(name: string): TemplateHookFn | undefined {
    return this.hooks.get(name);
  }
}

/**
 * A registry of template steps and hooks.
 *
 * @example
 * const steps = createStepRegistry()
 *   .registerStep('fetch', async (state) => { state.rows = await source.read(state.since as string); },
 *     { retry: { maxAttempts: 5 }, timeout: '30s' })
 *   .registerHook('audit', ({ template, entry }) => audit.log({ template, entry }));
 */
export function createStepRegistry(): StepRegistry {
  return new StepRegistry();
}
