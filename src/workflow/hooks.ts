/**
 * Lifecycle hooks of a workflow: functions run when a run completes, fails,
 * is cancelled or is paused, delivered durably (at least once, with retries)
 * by any worker serving the workflow. See docs/events.md.
 */
import { ValidationError } from '../errors.ts';
import type { Queryable } from '../protocol/queryable.ts';
import type { Duration } from '../protocol/duration.ts';
import { durationIn, optionNames, refuseUnknownKeys } from '../protocol/option-bounds.ts';
import { checkRetryPolicy, type RetryPolicy } from './retry.ts';

/**
 * The hooks a workflow can declare, by the run status that fires them.
 *
 * @example
 * HOOK_NAMES.includes('onComplete'); // true
 */
export const HOOK_NAMES = ['onComplete', 'onFail', 'onCancel', 'onPause'] as const;
export type HookName = (typeof HOOK_NAMES)[number];

/**
 * What a hook receives: the run's status and error as the transition that
 * fired the hook left them (an onPause delivered after a resume still gets
 * the pause and its reason), and its key, input, output and metadata.
 *
 * @example
 * const onFail = async (e: HookEvent) => page(`${e.workflow} run ${e.runId} failed: ${String(e.error)}`);
 */
export interface HookEvent<I = unknown, O = unknown> {
  hook: HookName;
  runId: string;
  workflow: string;
  version: string;
  key: string | null;
  /** The run's status the transition that fired the hook gave it (completed, failed, cancelled, paused), even if the run moved on since. */
  status: string;
  input: I;
  /** The run's output (onComplete). */
  output: O | undefined;
  /** The run's error as that transition left it (onFail, onCancel, and onPause: the pause's reason). */
  error: unknown;
  metadata: Record<string, unknown>;
  /** This delivery's attempt (1 on the first). */
  attempt: number;
  /** Aborted when the hook runs past its timeout. */
  signal: AbortSignal;
}

/**
 * What a hook gets besides the event: the delivering worker's database
 * handle, for reads the hook needs (a state machine's hooks read the run's
 * status and object with it). Writes made with it are not part of the
 * delivery: make them idempotent, as the hook itself.
 *
 * @example
 * const onComplete = async (e: HookEvent, { db }: HookContext) => {
 *   const { rows } = await db.query('select count(*) from trellis.steps where run_id = $1', [e.runId]);
 *   console.log(e.runId, rows[0]);
 * };
 */
export interface HookContext {
  db: Queryable;
}

export type HookFn<I, O> = (event: HookEvent<I, O>, context: HookContext) => unknown;

/**
 * The `hooks` option of `defineWorkflow`.
 *
 * @example
 * const hooks: WorkflowHooks = { onComplete: (e) => notify(e.runId), retry: { maxAttempts: 10 }, timeout: '10s' };
 */
export interface WorkflowHooks<I = unknown, O = unknown> {
  onComplete?: HookFn<I, O> | undefined;
  onFail?: HookFn<I, O> | undefined;
  onCancel?: HookFn<I, O> | undefined;
  onPause?: HookFn<I, O> | undefined;
  /** Retries of a hook that throws or times out (default: 5 attempts, exponential from 1 s); then the delivery is parked. */
  retry?: RetryPolicy | undefined;
  /** How long one attempt may take before it counts as failed (default 30 s, at most 12 hours). */
  timeout?: Duration | undefined;
}

/** The longest hook timeout: a delivery's lease is the longest timeout plus 30 s, and a lease is at most a day. */
export const HOOK_TIMEOUT_MAX_MS = 12 * 3_600_000;

/** Every key a workflow's hooks take: the hook names, retry and timeout. */
const HOOK_OPTIONS = optionNames<WorkflowHooks>({ onComplete: true, onFail: true, onCancel: true, onPause: true, retry: true, timeout: true });

/** The hook names a definition's hooks declare (registered with its version). */
export function declaredHooks(hooks: WorkflowHooks<any, any> | undefined): HookName[] {
  if (!hooks) return [];
  // A misspelt hook (onFailure) would never run, and nothing would say so.
  refuseUnknownKeys(hooks, HOOK_OPTIONS, 'hooks');
  if (hooks.timeout !== undefined) durationIn(hooks.timeout, 'hooks.timeout', [1, HOOK_TIMEOUT_MAX_MS]);
  checkRetryPolicy(hooks.retry, 'hooks.retry', { steps: false });
  return HOOK_NAMES.filter((name) => {
    const fn = hooks[name];
    if (fn !== undefined && typeof fn !== 'function') throw new ValidationError(`hooks.${name} must be a function`);
    return fn !== undefined;
  });
}
