/** What workflow code sees: the durable context and the step options. */
import type { Duration } from './duration.ts';
import type { RetryPolicy } from './retry.ts';

/** Handed to a step body on every attempt. */
export interface StepContext {
  /** Aborted when the attempt times out, the run is cancelled or the worker loses its lease. */
  signal: AbortSignal;
  /** 1 for the first attempt, 2 for the first retry, … */
  attempt: number;
  /** Stable across attempts and replays: `${runId}:${seq}`. Pass it to external APIs. */
  idempotencyKey: string;
  runId: string;
}

export interface StepOptions {
  /** Retry policy for this step (default: 3 attempts, exponential from 1s). */
  retry?: RetryPolicy;
  /** Per-attempt timeout; the attempt's AbortSignal fires and it counts as a failed attempt. */
  timeout?: Duration;
}

export interface Logger {
  debug(message: string, fields?: Record<string, unknown>): void;
  info(message: string, fields?: Record<string, unknown>): void;
  warn(message: string, fields?: Record<string, unknown>): void;
  error(message: string, fields?: Record<string, unknown>): void;
}

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
   * result without running it. Calls inside loops and `Promise.all` are
   * identified by call order, so keep that order deterministic.
   */
  step<T>(name: string, fn: (step: StepContext) => Promise<T> | T, options?: StepOptions): Promise<T>;
  /** The time, recorded once and replayed. */
  now(): Date;
  /** A number in [0, 1), recorded once and replayed. */
  random(): number;
  /** A random UUID, recorded once and replayed. */
  uuid(): string;
  /** Run `fn` once (no retries) and record its result. */
  sideEffect<T>(fn: () => Promise<T> | T): Promise<T>;
  sideEffect<T>(name: string, fn: () => Promise<T> | T): Promise<T>;
}
