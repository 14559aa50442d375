/**
 * The Trellis error family. Every error has a stable string `code`, an
 * optional `cause`, and a `Symbol.for` brand so `isTrellisError` works across
 * copies of the package. SQLSTATE → class mapping lives in src/db/errors.ts.
 */

const BRAND = Symbol.for('trellis.error');

export const ERROR_CODES = {
  validation: 'validation',
  notFound: 'not_found',
  leaseLost: 'lease_lost',
  illegalTransition: 'illegal_transition',
  payloadTooLarge: 'payload_too_large',
  nonDeterminism: 'non_determinism',
  timeout: 'timeout',
  cancelled: 'cancelled',
  schemaVersion: 'schema_version',
  stepFailed: 'step_failed',
  workflowFailed: 'workflow_failed',
  childFailed: 'child_failed',
  requestRejected: 'request_rejected',
  historyLimit: 'history_limit',
  configuration: 'configuration',
  database: 'database',
} as const;
export type ErrorCode = (typeof ERROR_CODES)[keyof typeof ERROR_CODES];

export interface TrellisErrorOptions {
  cause?: unknown;
  details?: Record<string, unknown> | undefined;
}

/**
 * A bad value as an error message quotes it: JSON, cut to its first `max`
 * characters (then ending in ...), so a huge or hostile value is never
 * echoed whole.
 *
 * @example
 * throw new ValidationError(`unknown region ${quoteValue(input.region)}`);
 */
export function quoteValue(value: unknown, max = 100): string {
  let text: string;
  try {
    // Numbers JSON has no form for (NaN, Infinity) and an invalid Date
    // would read as null, naming the wrong value: said as they are.
    text = typeof value === 'number' && !Number.isFinite(value) ? String(value)
      : value instanceof Date && Number.isNaN(value.getTime()) ? 'Invalid Date'
      : typeof value === 'string' ? JSON.stringify(value) : (JSON.stringify(value) ?? String(value));
  } catch {
    text = Object.prototype.toString.call(value);
  }
  return text.length > max ? `${text.slice(0, max)}...` : text;
}

/** Base class of every error Trellis throws. */
export class TrellisError extends Error {
  readonly code: ErrorCode;
  readonly details: Record<string, unknown>;
  readonly [BRAND] = true;

  constructor(code: ErrorCode, message: string, options: TrellisErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.details = options.details ?? {};
  }
}

/**
 * True for any Trellis error, even one thrown by another copy of the package.
 *
 * @example
 * try {
 *   await client.cancel(runId);
 * } catch (error) {
 *   if (isTrellisError(error) && error.code === 'illegal_transition') console.log('already finished');
 *   else throw error;
 * }
 */
export function isTrellisError(error: unknown): error is TrellisError {
  return typeof error === 'object' && error !== null && (error as Record<symbol, unknown>)[BRAND] === true;
}

/** Bad input: a name, option, payload or schema check failed. Nothing was written. */
export class ValidationError extends TrellisError {
  constructor(message: string, options?: TrellisErrorOptions) {
    super(ERROR_CODES.validation, message, options);
  }
}

/** A payload (input, output, step result, metadata) is over the size limit. Nothing was written. */
export class PayloadTooLargeError extends TrellisError {
  constructor(message: string, options?: TrellisErrorOptions) {
    super(ERROR_CODES.payloadTooLarge, message, options);
  }
}

/** An unknown workflow, version or run. */
export class NotFoundError extends TrellisError {
  constructor(message: string, options?: TrellisErrorOptions) {
    super(ERROR_CODES.notFound, message, options);
  }
}

/** A worker's lease token is stale: another worker owns the run now. */
export class LeaseLostError extends TrellisError {
  constructor(message: string, options?: TrellisErrorOptions) {
    super(ERROR_CODES.leaseLost, message, options);
  }
}

/** The run is not in a state that allows the requested change. */
export class IllegalTransitionError extends TrellisError {
  constructor(message: string, options?: TrellisErrorOptions) {
    super(ERROR_CODES.illegalTransition, message, options);
  }
}

/** Replay asked for a different step than the run's history holds: the code changed under a running run. */
export class NonDeterminismError extends TrellisError {
  constructor(message: string, options?: TrellisErrorOptions) {
    super(ERROR_CODES.nonDeterminism, message, options);
  }
}

/** A step attempt ran past its timeout, or `client.result()` gave up waiting. (`waitForSignal` returns `{ timedOut: true }` instead.) */
export class TimeoutError extends TrellisError {
  constructor(message: string, options?: TrellisErrorOptions) {
    super(ERROR_CODES.timeout, message, options);
  }
}

/** The run (or the worker's hold on it) was cancelled. */
export class CancelledError extends TrellisError {
  constructor(message: string, options?: TrellisErrorOptions) {
    super(ERROR_CODES.cancelled, message, options);
  }
}

/** The database schema is newer than this code, or not installed / behind it. */
export class SchemaVersionError extends TrellisError {
  constructor(message: string, options?: TrellisErrorOptions) {
    super(ERROR_CODES.schemaVersion, message, options);
  }
}

/**
 * An install-time setting was given a value it cannot take, or one that can no
 * longer change (SQLSTATE TR008): e.g. a bucket count that is not a power of
 * two from 1 to 4096, or a new bucket count once runs exist. Nothing changed.
 *
 * @example
 * try {
 *   await migrate(pool, { buckets: 256 });
 * } catch (error) {
 *   if (error instanceof ConfigurationError) console.error(`fix the setting: ${error.message}`);
 * }
 */
export class ConfigurationError extends TrellisError {
  constructor(message: string, options?: TrellisErrorOptions) {
    super(ERROR_CODES.configuration, message, options);
  }
}

/** The run's history reached the configured maximum number of steps. */
export class HistoryLimitError extends TrellisError {
  constructor(message: string, options?: TrellisErrorOptions) {
    super(ERROR_CODES.historyLimit, message, options);
  }
}

/**
 * Any other database error, wrapped with its SQLSTATE in `details.sqlstate`.
 * `retryable` is true when running the same call again can succeed: a
 * serialization failure or deadlock (class 40, e.g. an idempotent start under
 * REPEATABLE READ racing another), a lost or refused connection (class 08,
 * 57P01-57P03, 53300, socket errors). Nothing of a failed call was committed.
 *
 * @example
 * for (let attempt = 1; ; attempt++) {
 *   try { return await client.start(fulfil, { orderId }, { key: `fulfil-${orderId}` }); }
 *   catch (e) { if (!(e instanceof DatabaseError && e.retryable) || attempt === 3) throw e; }
 * }
 */
export class DatabaseError extends TrellisError {
  readonly retryable: boolean;
  constructor(message: string, options?: TrellisErrorOptions & { retryable?: boolean | undefined }) {
    super(ERROR_CODES.database, message, options);
    this.retryable = options?.retryable ?? false;
  }
}

/**
 * A step failed for good (retries exhausted or non-retryable). Thrown into the
 * workflow at the step's `await`, on the first run and identically on replay.
 */
export class StepFailedError extends TrellisError {
  readonly step: string;
  readonly attempts: number;
  constructor(step: string, attempts: number, message: string, options?: TrellisErrorOptions) {
    super(ERROR_CODES.stepFailed, message, options);
    this.step = step;
    this.attempts = attempts;
  }
}

/** A run awaited with `ctx.child` or `ctx.waitForRun` failed, was cancelled or (waitForRun) does not exist. `details.error` holds its error (code `not_found` for a missing run). */
export class ChildFailedError extends TrellisError {
  readonly childRunId: string;
  constructor(childRunId: string, message: string, options?: TrellisErrorOptions) {
    super(ERROR_CODES.childFailed, message, options);
    this.childRunId = childRunId;
  }
}

/**
 * `client.request()` whose run answered with `ctx.replyError`: the run
 * refused the request and goes on. `details` holds `runId`, `requestId`
 * and `error` (the message, and the `code` and `details` the run gave).
 */
export class RequestRejectedError extends TrellisError {
  readonly runId: string;
  readonly requestId: string;
  constructor(runId: string, requestId: string, message: string, options?: TrellisErrorOptions) {
    super(ERROR_CODES.requestRejected, message, options);
    this.runId = runId;
    this.requestId = requestId;
  }
}

/** `client.result()` of a run that failed. `details.error` holds the recorded error. */
export class WorkflowFailedError extends TrellisError {
  constructor(message: string, options?: TrellisErrorOptions) {
    super(ERROR_CODES.workflowFailed, message, options);
  }
}

/**
 * Throw this from a step (or a workflow) to fail at once, without retries.
 *
 * @example
 * await ctx.step('charge', async () => {
 *   if (card.expired) throw new NonRetryableError('card expired');
 * });
 */
export class NonRetryableError extends Error {
  readonly nonRetryable = true;
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'NonRetryableError';
  }
}

/**
 * Throw this from a step to retry after a specific delay (e.g. a 429's Retry-After),
 * overriding the policy's backoff for that attempt.
 */
export class RetryAfterError extends Error {
  readonly retryAfterMs: number;
  constructor(message: string, retryAfterMs: number, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'RetryAfterError';
    this.retryAfterMs = retryAfterMs;
  }
}
