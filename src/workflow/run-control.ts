/**
 * Run controls that workflow code (and the layers compiled onto it: state
 * machines, step templates) can ask for from inside the run, plus the
 * in-process hooks of a workflow definition. The replay layer recognises the
 * requests by brand, so they work across copies of the package.
 */
import { ValidationError } from '../errors.ts';

const PARK = Symbol.for('trellis.park-run');
const END_CANCELLED = Symbol.for('trellis.end-run-cancelled');

/**
 * Thrown from a step body: park the run (status `paused`, the reason kept as
 * its error) instead of failing or retrying the step. After `run_resume` the
 * step runs again with a fresh count of attempts. Nothing the step returned
 * is recorded.
 *
 * @example
 * await ctx.step('check-stock', () => {
 *   if (stock.unknown) throw new ParkRunRequest('stock service is down: investigate, then resume');
 * });
 */
export class ParkRunRequest extends Error {
  readonly [PARK] = true;
  constructor(reason: string) {
    super(reason);
    this.name = 'ParkRunRequest';
  }
}

/**
 * Thrown from the workflow function (not a step): end the run as
 * `cancelled` with this reason, as if it had been cancelled from outside.
 *
 * @example
 * const order = defineWorkflow({ name: 'order', input: z.object({ id: z.string() }) }, async (ctx, { id }) => {
 *   const { voided } = await ctx.step('load', () => loadOrder(id));
 *   if (voided) throw new EndRunCancelled('order voided by the customer');
 *   return ctx.step('ship', () => ship(id));
 * });
 */
export class EndRunCancelled extends Error {
  readonly [END_CANCELLED] = true;
  constructor(reason: string) {
    super(reason);
    this.name = 'EndRunCancelled';
  }
}

export function isParkRunRequest(error: unknown): error is ParkRunRequest {
  return typeof error === 'object' && error !== null && (error as Record<symbol, unknown>)[PARK] === true;
}

export function isEndRunCancelled(error: unknown): error is EndRunCancelled {
  return typeof error === 'object' && error !== null && (error as Record<symbol, unknown>)[END_CANCELLED] === true;
}

/**
 * What a workflow hook is told about the run.
 *
 * @example
 * const beforeWorkflow = ({ runId, attempt }: HookRunInfo) => log.info('execution', { runId, attempt });
 */
export interface HookRunInfo {
  runId: string;
  workflow: string;
  version: string;
  /** How many times the run has been claimed (1 on its first execution). */
  attempt: number;
  /** The run's input (as stored). */
  input: unknown;
}

/**
 * What a step hook is told about the step attempt.
 *
 * @example
 * const afterStep = ({ step, stepAttempt }: HookStepInfo, error: unknown) => metrics.observe(step, stepAttempt, !error);
 */
export interface HookStepInfo extends HookRunInfo {
  step: string;
  /** The step's attempt number (1, 2, …). */
  stepAttempt: number;
}

/**
 * In-process hooks of a workflow (logging, metrics, auditing). They are not
 * durable: they run in the worker executing the run, at least once per
 * event. Call order: `beforeWorkflow` at the start of every execution (each
 * claim, before the function runs), then for each step attempt that really
 * runs (not on replay) `beforeStep`, the body, `afterStep`; `afterWorkflow`
 * once the function returned or threw (not when the execution stops to wait).
 * A hook that throws is logged and ignored.
 *
 * @example
 * const interceptors: WorkflowInterceptors = {
 *   beforeStep: ({ step }) => metrics.inc('step_started', { step }),
 *   afterStep: ({ step }, error) => metrics.inc(error ? 'step_failed' : 'step_done', { step }),
 * };
 */
export interface WorkflowInterceptors {
  beforeWorkflow?: ((run: HookRunInfo) => Promise<unknown> | unknown) | undefined;
  /** `output` is what the function returned (undefined when it threw). */
  afterWorkflow?: ((run: HookRunInfo, error: unknown, output: unknown) => Promise<unknown> | unknown) | undefined;
  beforeStep?: ((step: HookStepInfo) => Promise<unknown> | unknown) | undefined;
  afterStep?: ((step: HookStepInfo, error: unknown) => Promise<unknown> | unknown) | undefined;
}

const HOOK_NAMES = ['beforeWorkflow', 'afterWorkflow', 'beforeStep', 'afterStep'] as const;

/** Check a hooks option (a plain object of functions). */
export function checkInterceptors(hooks: unknown, owner: string): WorkflowInterceptors | undefined {
  if (hooks === undefined) return undefined;
  if (typeof hooks !== 'object' || hooks === null) throw new ValidationError(`${owner}: hooks must be an object`);
  for (const [key, value] of Object.entries(hooks)) {
    if (!(HOOK_NAMES as readonly string[]).includes(key)) throw new ValidationError(`${owner}: unknown hook ${JSON.stringify(key.slice(0, 40))}`);
    if (value !== undefined && typeof value !== 'function') throw new ValidationError(`${owner}: hook ${key} must be a function`);
  }
  return Object.freeze({ ...(hooks as WorkflowInterceptors) });
}
