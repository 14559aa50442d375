/**
 * One attempt of a step (or side effect): wait for earlier checkpoints, mark
 * the attempt started, run the body with an AbortSignal (timeout, cancel,
 * lease loss), then checkpoint its result, its final failure, or a retry.
 */
import { CancelledError, ConfigurationError, StepFailedError, TimeoutError, ValidationError } from '../errors.ts';
import type { StepContext, StepOptions, TransactionClient, TransactionOptions, TransactionStepContext } from '../workflow/context.ts';
import { type Duration, toMs, toTimeoutMs } from '../protocol/duration.ts';
import { checkRetryPolicy } from '../workflow/retry.ts';
import { longTimeout } from '../protocol/timer.ts';
import { decideAttempt } from './attempt-decision.ts';
import type { Delivery } from './delivery.ts';
import { type Replay, type Transact, TransactionFault } from './replay.ts';
import type { StepOp } from '../protocol/checkpoint.ts';
import type { StepKind } from '../protocol/history.ts';
import { encodeJson, serializeError } from '../protocol/serialize.ts';
import { StepAbort } from './step-abort.ts';

/**
 * A result the attempt recorded comes with its delivery (its number is in the
 * checkpoint); an error it did not record (cancelled before the body) has none.
 */
export type AttemptResult<T> =
  | { ok: true; value: T; delivery: Delivery<T> }
  | { ok: false; error: unknown; delivery?: Delivery<T> | undefined }
  | { ok: 'halted' };

/**
 * `attempt` is the step's attempt number (1, 2, …, never reset); `base` is the
 * number of attempts made before an operator resumed the step from the dead
 * letter: the retry policy and `pauseAfter` count attempts from there.
 */
export async function runAttempt<T>(replay: Replay, seq: number, kind: StepKind, name: string,
  fn: (step: StepContext) => Promise<T> | T, options: StepOptions, attempt: number, base = 0,
  transaction?: TransactionOptions | undefined, carried: Carried = {}): Promise<AttemptResult<T>> {
  const { firstAt } = carried;
  await replay.barrier();
  if (replay.halted || replay.o.leaseHeld?.() === false) return { ok: 'halted' };
  if (transaction && !replay.o.transact) {
    return { ok: false, error: new ConfigurationError(`ctx.transaction("${name}") needs a worker's connection pool; this execution has none`) };
  }
  const shielded = replay.shielded;
  if (replay.cancelRequested && !shielded) return { ok: false, error: new CancelledError(replay.cancelReason) };
  // Read before anything is written: a timeout that is not one (0, not a
  // duration) rejects the call with ValidationError and records nothing.
  const timeoutMs = options.timeout === undefined ? undefined : toTimeoutMs(options.timeout, `timeout of step ${name}`);
  if (options.retry !== undefined) checkRetryPolicy(options.retry, `retry of step ${name}`);
  const started = Date.now();
  // Mark the attempt as started, without waiting: if the process dies in the
  // body, the next execution sees it and counts the attempt. A fast step's
  // marker is dropped by the committer when its result is queued first.
  // With a maxElapsed, when the step's first counted attempt began (engine
  // time), carried by its markers and retry records to the next executions.
  const budgetFrom = options.retry?.maxElapsed === undefined ? undefined
    : (attempt - base > 1 && firstAt !== undefined ? firstAt : replay.dbNow());
  // The progress the step saved (step.saveProgress), carried by its markers
  // to the next attempts: { value } once saved, by an attempt before or this one.
  let saved = carried.progress;
  const markers = (resumedAfter: number, progress = saved): string | undefined =>
    resumedAfter || budgetFrom !== undefined || progress
      ? JSON.stringify({
        ...(resumedAfter ? { resumedAfter } : {}), ...(budgetFrom !== undefined ? { firstAt: budgetFrom } : {}),
        ...(progress ? { progress: progress.value } : {}),
      })
      : undefined;
  const round = markers(base);
  // A retry that would begin past the budget (late: its worker died, the
  // run was paused or waited for a worker) does not begin: the step fails
  // (or parks) as one whose budget ran out, its body not run again.
  const spent = budgetFrom !== undefined && attempt - base > 1
    && replay.dbNow() - budgetFrom > toMs(options.retry?.maxElapsed as Duration, `retry of step ${name}: maxElapsed`);
  const attemptsMade = spent ? attempt - 1 : attempt;
  if (!spent) void replay.write({ op: 'step', seq, name, kind, status: 'running', output: round, attempts: attempt, ms: 0 }).catch(() => undefined);
  // Cancellation (requestCancel) and the run's own abort (lease lost,
  // shutdown: see Run.run) reach the attempt through `controllers`.
  const controller = new StepAbort();
  const entry = { controller, shielded };
  replay.controllers.add(entry);
  if (replay.o.abort.aborted) controller.abort(replay.o.abort.reason);
  const clearTimer = timeoutMs === undefined ? undefined : longTimeout(
    () => controller.abort(new TimeoutError(`step "${name}" attempt ${attempt} timed out after ${timeoutMs} ms`)),
    timeoutMs,
  );
  let value: T | undefined;
  let error: unknown;
  let failed = false;
  let ended = false;
  const saveProgress = (details: unknown): Promise<void> => {
    if (transaction) {
      return Promise.reject(new ValidationError(`step.saveProgress in ctx.transaction("${name}"): keep the progress in your own tables, in tx, where it commits with the body`));
    }
    if (ended) return Promise.reject(new ValidationError(`step.saveProgress after attempt ${attempt} of step "${name}" ended`));
    let output: string;
    let progress: { value: unknown };
    try {
      progress = { value: JSON.parse(encodeJson(details, `progress of step "${name}"`, replay.o.maxPayloadBytes)) };
      output = encodeJson(JSON.parse(markers(base, progress) as string), `progress of step "${name}" with its markers`, replay.o.maxPayloadBytes);
    } catch (e) {
      return Promise.reject(e);
    }
    saved = progress;
    return replay.write({ op: 'step', seq, name, kind, status: 'running', output, attempts: attempt, ms: 0 });
  };
  const observed = replay.o.observer?.step({ seq, name, kind, attempt });
  try {
    if (spent) {
      throw new TimeoutError(`step "${name}": its retry budget (maxElapsed ${String(options.retry?.maxElapsed)}) ran out before attempt ${attempt} could begin`);
    }
    let stepContext: StepContext = {
      get signal() {
        return controller.signal;
      },
      attempt,
      idempotencyKey: `${replay.o.runId}:${replay.o.execution ?? 1}:${seq}`,
      runId: replay.o.runId,
      get progress() {
        return saved === undefined ? undefined : structuredClone(saved.value);
      },
      saveProgress,
    };
    const interceptors = kind === 'step' ? replay.o.definition.interceptors : undefined;
    // While the body runs synchronously, a durable ctx call is refused (Replay.next): it belongs to the workflow.
    const call = () => {
      replay.stepBody = name;
      try {
        return fn(stepContext);
      } finally {
        replay.stepBody = undefined;
      }
    };
    const body = observed ? () => observed.run(call) : call;
    const begin = () => {
      // Again in the turn the body begins: a body queued behind another that
      // blocked the event loop past the lease must not begin on a lease that
      // ran out meanwhile (another worker may have completed this step).
      if (replay.o.leaseHeld?.() === false) throw replay.o.abort.reason;
      return body();
    };
    // beforeStep and afterStep around the attempt as it ends for the run:
    // afterStep gets the attempt's outcome when it has one (a timeout, a
    // cancel, the body's own end), not whenever a body that ignored its
    // signal returns (or never).
    const hooks = interceptors?.beforeStep || interceptors?.afterStep
      ? { ...replay.hookInfo(), step: name, stepAttempt: attempt } : undefined;
    if (hooks) await replay.hook('beforeStep', hooks);
    if (!transaction) {
      try {
        value = await controller.race(Promise.resolve().then(begin));
      } catch (e) {
        if (hooks) await replay.hook('afterStep', hooks, e);
        throw e;
      }
      if (hooks) await replay.hook('afterStep', hooks, undefined);
    } else {
      // The body and the record of its result commit in one transaction:
      // nothing is written through the committer when it succeeds.
      let committed: Awaited<ReturnType<typeof transactionally<T>>>;
      try {
        committed = await transactionally<T>(replay, controller, transaction, (tx) => {
          stepContext = transactionContext(stepContext, tx);
          return Promise.resolve().then(begin);
        }, `output of step "${name}"`,
        (delivered, output) => ({ op: 'step', seq, name, kind, status: 'completed', output, attempts: attempt, ms: Date.now() - started, delivered }));
      } catch (e) {
        if (hooks) await replay.hook('afterStep', hooks, e);
        throw e;
      }
      if (hooks) await replay.hook('afterStep', hooks, committed === 'halted' ? replay.o.abort.reason : undefined);
      observed?.end(committed === 'halted' ? replay.o.abort.reason : undefined);
      if (committed === 'halted') return { ok: 'halted' };
      return { ok: true, value: JSON.parse(committed.text) as T, delivery: committed.delivery };
    }
  } catch (e) {
    error = e;
    failed = true;
  } finally {
    ended = true;
    clearTimer?.();
    replay.controllers.delete(entry);
  }
  if (replay.o.abort.aborted) {
    observed?.end(replay.o.abort.reason);
    return { ok: 'halted' };
  }
  const ms = Date.now() - started;
  let text: string | undefined;
  if (!failed) {
    try {
      text = encodeJson(value, `output of step "${name}"`, replay.o.maxPayloadBytes);
    } catch (e) {
      error = e;
      failed = true;
    }
  }
  observed?.end(failed ? error : undefined);
  try {
    if (!failed) {
      // The workflow continues on the result at once (speculatively): the
      // next step body waits at the barrier for this checkpoint, and the run's
      // end is written after it, so nothing outside the workflow function
      // sees the result before it is durable. A refused write halts the run.
      const delivery = replay.deliveries.reserve<T>();
      void replay.write({ op: 'step', seq, name, kind, status: 'completed', output: text, attempts: attempt, ms, delivered: delivery.number })
        .catch(() => delivery.drop());
      return { ok: true, value: JSON.parse(text as string) as T, delivery };
    }
    const decision = decideAttempt({
      error, kind, attempt, base, retry: options.retry, pauseAfter: replay.o.definition.pauseAfter, cancelRequested: replay.cancelRequested,
      elapsedMs: budgetFrom === undefined ? undefined : replay.dbNow() - budgetFrom,
    });
    const serialized = { ...serializeError(error), step: name, attempts: attemptsMade };
    if (decision.action === 'park') {
      void replay.write({
        op: 'step', seq, name, kind, status: 'retrying', output: markers(attemptsMade), error: serialized, attempts: attemptsMade, ms,
      }).catch(() => undefined);
      replay.log.warn('step failed too often, run parked', { step: name, attempt });
      const { resumeAfterMs: resumeAfter, maxResumes } = replay.o.definition;
      replay.halt({
        op: 'pause', error: serialized, seen_cancel: replay.cancelRequested,
        ...(resumeAfter ? { delay_ms: resumeAfter, ...(maxResumes !== undefined ? { max_resumes: maxResumes } : {}) } : {}),
      });
      return { ok: 'halted' };
    }
    if (decision.action === 'fail') {
      const delivery = replay.deliveries.reserve<T>();
      try {
        await replay.write({ op: 'step', seq, name, kind, status: 'failed', error: serialized, attempts: attemptsMade, ms, delivered: delivery.number });
      } catch (e) {
        delivery.drop();
        throw e;
      }
      if (decision.cancelled) return { ok: false, error, delivery };
      return {
        ok: false,
        delivery,
        error: new StepFailedError(name, attemptsMade, `step "${name}" failed after ${attemptsMade} attempt(s): ${serialized.message}`, {
          cause: error,
          details: { error: serialized },
        }),
      };
    }
    const delay = decision.delayMs;
    replay.log.info('step attempt failed, retry scheduled', { step: name, attempt, delayMs: delay });
    void replay.write({ op: 'step', seq, name, kind, status: 'retrying', output: markers(base), error: serialized, attempts: attempt, ms }).catch(() => undefined);
    replay.halt({ op: 'release', delay_ms: delay, error: serialized, failure: false, seen_cancel: replay.cancelRequested });
    return { ok: 'halted' };
  } catch {
    // The checkpoint was refused; write() has halted the run.
    return { ok: 'halted' };
  }
}

/** The step context of a transactional body: the attempt's, with the transaction's connection. */
function transactionContext(step: StepContext, tx: TransactionClient): TransactionStepContext {
  return {
    get signal() {
      return step.signal;
    },
    attempt: step.attempt,
    idempotencyKey: step.idempotencyKey,
    runId: step.runId,
    progress: undefined,
    saveProgress: step.saveProgress,
    tx,
  };
}

/** What a step's markers carry from its earlier attempts to the next one. */
export interface Carried {
  /** When the step's first counted attempt began (engine ms), for a retry policy's maxElapsed. */
  firstAt?: number | undefined;
  /** The newest progress an attempt saved (step.saveProgress). */
  progress?: { value: unknown } | undefined;
}

/**
 * Run a transactional step's body through the worker (Replay.o.transact):
 * the body, then the record of its result (`op`, with the delivery number
 * reserved for it), in one transaction. Resolves with the committed output
 * and its delivery; rejects with the body's error, or with the abort reason
 * when the attempt is aborted before the commit began (the worker then
 * cancels the body's query and rolls back); 'halted' when the
 * transaction's own statements failed (the run is halted: a lost lease or
 * a database fault gives the execution up, anything else fails it).
 */
async function transactionally<T>(replay: Replay, controller: StepAbort, options: TransactionOptions, body: (tx: TransactionClient) => Promise<T>,
  what: string, op: (delivered: number, output: string) => StepOp): Promise<{ text: string; delivery: Delivery<T> } | 'halted'> {
  let delivery: Delivery<T> | undefined;
  let text: string | undefined;
  let committing = false;
  const drop = () => {
    delivery?.drop();
    delivery = undefined;
  };
  const transact = replay.o.transact as Transact;
  // The attempt's marker commits first: it must not change the run's row
  // after the snapshot of a transaction above read committed (the record
  // would fail to serialize), nor hold the run's row in a grouped commit
  // while the body holds rows that commit waits for.
  await replay.settleWrites();
  const settled = transact(async (tx) => {
    drop(); // the body runs again after a serialization failure, a deadlock or a lost connection
    committing = false;
    text = encodeJson(await body(tx), what, replay.o.maxPayloadBytes);
    delivery = replay.deliveries.reserve<T>();
    return op(delivery.number, text);
  }, {
    isolation: options.isolation,
    signal: controller.signal,
    committing: () => !controller.aborted && (committing = true),
  }).then(() => ({ text: text as string, delivery: delivery as Delivery<T> }), (error: unknown) => {
    drop();
    throw error;
  });
  settled.catch(() => undefined);
  try {
    return await new Promise((resolve, reject) => {
      settled.then(resolve, reject);
      const abort = () => {
        if (!committing) reject(controller.reason);
      };
      if (controller.aborted) abort();
      else controller.signal.addEventListener('abort', abort, { once: true });
    });
  } catch (error) {
    if (!(error instanceof TransactionFault)) throw error;
    if (!replay.haltOnFault(error.cause)) replay.halt({ op: 'fail', error: serializeError(error.cause) });
    return 'halted';
  }
}

