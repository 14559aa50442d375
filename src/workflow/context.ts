/** What workflow code sees: the durable context and the step options. */
import type { WorkflowDefinition, WorkflowInput, WorkflowOutput } from './define.ts';
import type { Duration } from './duration.ts';
import type { RetryPolicy } from './retry.ts';
import type { SignalDefinition, SignalResult } from './signal.ts';
import type { Logger } from './logger.ts';

/** Handed to a step body on every attempt. */
export interface StepContext {
  /** Aborted when the attempt times out, the run is cancelled or the worker loses its lease. */
  signal: AbortSignal;
  /** 1 for the first attempt, 2 for the first retry, … */
  attempt: number;
  /** Stable across attempts and replays: `${runId}:${execution}:${seq}`. Pass it to external APIs. */
  idempotencyKey: string;
  runId: string;
}

export interface StepOptions {
  /** Retry policy for this step (default: 3 attempts, exponential from 1s). */
  retry?: RetryPolicy;
  /** Per-attempt timeout; the attempt's AbortSignal fires and it counts as a failed attempt. */
  timeout?: Duration;
}

export interface ChildOptions {
  /** Name of the call in the parent's history (default: the child workflow's name). */
  name?: string;
  /** Idempotency key of the child run; a run already holding it is awaited instead. */
  key?: string;
  /** Queue of the child run (default: the child workflow's queue). */
  queue?: string;
  /** What happens to the child when the parent ends (cancelled, failed or completed) while it runs: 'cancel' (default) or 'abandon'. */
  onParentCancel?: 'cancel' | 'abandon';
}

export interface WaitForSignalOptions<T> {
  /** Validate the payload (a signal definition carries its own schema). */
  schema?: import('./standard-schema.ts').StandardSchemaV1<unknown, T>;
  /** Give up after this long: resolves `{ timedOut: true }`. */
  timeout?: Duration;
  /** Name of the call in the history (default: the signal name). */
  name?: string;
}

/** One settled branch of `ctx.race`. */
export type RaceResult<B extends Record<string, Promise<unknown>>> = {
  [K in keyof B]: { key: K; value: Awaited<B[K]> };
}[keyof B];

export type { Logger } from './logger.ts';

/**
 * The durable context of a running workflow. Everything non-deterministic
 * (I/O, time, randomness) goes through it so a replay sees the same values.
 */
export interface WorkflowContext {
  readonly runId: string;
  readonly workflow: string;
  readonly version: string;
  /** How many times this run has been claimed (1 on the first execution). */
  readonly attempt: number;
  readonly metadata: Record<string, unknown>;
  /** Aborted when this worker stops executing the run (lease lost, shutdown). */
  readonly signal: AbortSignal;
  readonly log: Logger;
  /**
   * Run `fn` once and checkpoint its JSON result; replays return the recorded
   * result without running it. Calls are identified by call order; a replay
   * hands results back in the order they first reached the code, so
   * `Promise.all` branches of sequential calls replay as they ran. Keep the
   * calls a given sequence of results leads to deterministic.
   *
   * @example
   * const rows = await Promise.all(ids.map(async (id) => {
   *   const row = await ctx.step('fetch', () => db.find(id));
   *   return ctx.step('save', () => store.put(row));
   * }));
   */
  step<T>(name: string, fn: (step: StepContext) => Promise<T> | T, options?: StepOptions): Promise<T>;
  /**
   * The time, recorded once and replayed.
   *
   * @example
   * const dueAt = new Date(ctx.now().getTime() + 30 * 86_400_000); // the same on every replay
   */
  now(): Date;
  /**
   * A number in [0, 1), recorded once and replayed.
   *
   * @example
   * const variant = ctx.random() < 0.5 ? 'a' : 'b';
   */
  random(): number;
  /**
   * A random UUID, recorded once and replayed.
   *
   * @example
   * const invoiceId = ctx.uuid();
   * await ctx.step('bill', () => billing.create({ id: invoiceId }));
   */
  uuid(): string;
  /**
   * Run `fn` once (no retries) and record its result.
   *
   * @example
   * const region = await ctx.sideEffect('pick-region', () => process.env.REGION ?? 'eu');
   */
  sideEffect<T>(fn: () => Promise<T> | T): Promise<T>;
  sideEffect<T>(name: string, fn: () => Promise<T> | T): Promise<T>;
  /**
   * Wait durably (the worker is released meanwhile).
   *
   * @example
   * await ctx.sleep('trial-period', '14 days');
   */
  sleep(name: string, duration: Duration): Promise<void>;
  /**
   * Wait durably until a point in time.
   *
   * @example
   * await ctx.sleepUntil('renewal', new Date(subscription.renewsAt));
   */
  sleepUntil(name: string, until: Date): Promise<void>;
  /**
   * Wait for a signal. Signals sent before the wait are buffered, so none is
   * lost; each is consumed by one wait.
   *
   * @example
   * const answer = await ctx.waitForSignal(approved, { timeout: '3 days' });
   * if (answer.timedOut) return 'expired';
   * return `approved by ${answer.payload.by}`;
   */
  waitForSignal<T>(signal: SignalDefinition<T, any>, options?: WaitForSignalOptions<T>): Promise<SignalResult<T>>;
  waitForSignal<T = unknown>(name: string, options?: WaitForSignalOptions<T>): Promise<SignalResult<T>>;
  /**
   * Start a child run and wait for its output (its failure is thrown as
   * ChildFailedError). The parent holds no worker while it waits.
   *
   * @example
   * const totals = await Promise.all(regions.map((region) => ctx.child(regionTotal, { region }, { key: `total-${region}` })));
   */
  child<W extends WorkflowDefinition>(workflow: W, input: WorkflowInput<W>, options?: ChildOptions): Promise<WorkflowOutput<W>>;
  /**
   * The first of several durable calls to settle, recorded so a replay picks
   * the same winner. Losing waits are disarmed (they consume nothing later).
   *
   * @example
   * const r = await ctx.race({ ok: ctx.waitForSignal(approved), late: ctx.sleep('deadline', '7 days') });
   */
  race<B extends Record<string, Promise<unknown>>>(branches: B, name?: string): Promise<RaceResult<B>>;
  /**
   * Run `fn` so that cancelling the run does not interrupt it (cleanup, compensation).
   *
   * @example
   * try { await ctx.step('export', exportRows); }
   * catch (e) { if (ctx.cancelled) await ctx.nonCancellable(() => ctx.step('delete-partial', cleanUp)); throw e; }
   */
  nonCancellable<T>(fn: () => Promise<T>): Promise<T>;
  /** True once cancellation of this run was requested. */
  readonly cancelled: boolean;
  /**
   * End this execution and start the run again with `input` and a fresh history (same id and key).
   *
   * @example
   * if (processed >= 1000) return ctx.continueAsNew({ cursor, processed: 0 });
   */
  continueAsNew(input: unknown, options?: { keepHistory?: boolean }): Promise<never>;
}
