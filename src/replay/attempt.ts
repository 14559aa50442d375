/**
 * One attempt of a step (or side effect): wait for earlier checkpoints, mark
 * the attempt started, run the body with an AbortSignal (timeout, cancel,
 * lease loss), then checkpoint its result, its final failure, or a retry.
 */
import { CancelledError, StepFailedError, TimeoutError } from '../errors.ts';
import type { StepContext, StepOptions } from '../workflow/context.ts';
import { toTimeoutMs } from '../protocol/duration.ts';
import { checkRetryPolicy } from '../workflow/retry.ts';
import { longTimeout } from '../protocol/timer.ts';
import { decideAttempt } from './attempt-decision.ts';
import type { Delivery } from './delivery.ts';
import type { Replay } from './replay.ts';
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
  fn: (step: StepContext) => Promise<T> | T, options: StepOptions, attempt: number, base = 0): Promise<AttemptResult<T>> {
  await replay.barrier();
  if (replay.halted || replay.o.leaseHeld?.() === false) return { ok: 'halted' };
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
  const round = base ? JSON.stringify({ resumedAfter: base }) : undefined;
  void replay.write({ op: 'step', seq, name, kind, status: 'running', output: round, attempts: attempt, ms: 0 }).catch(() => undefined);
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
  const observed = replay.o.observer?.step({ seq, name, kind, attempt });
  try {
    const stepContext: StepContext = {
      get signal() {
        return controller.signal;
      },
      attempt,
      idempotencyKey: `${replay.o.runId}:${replay.o.execution ?? 1}:${seq}`,
      runId: replay.o.runId,
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
    value = await controller.race(Promise.resolve().then(() => {
      // Again in the turn the body begins: a body queued behind another that
      // blocked the event loop past the lease must not begin on a lease that
      // ran out meanwhile (another worker may have completed this step).
      if (replay.o.leaseHeld?.() === false) throw replay.o.abort.reason;
      return interceptors?.beforeStep || interceptors?.afterStep ? withStepHooks(replay, name, attempt, body) : body();
    }));
  } catch (e) {
    error = e;
    failed = true;
  } finally {
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
    });
    const serialized = { ...serializeError(error), step: name, attempts: attempt };
    if (decision.action === 'park') {
      void replay.write({
        op: 'step', seq, name, kind, status: 'retrying', output: JSON.stringify({ resumedAfter: attempt }), error: serialized, attempts: attempt, ms,
      }).catch(() => undefined);
      replay.log.warn('step failed too often, run parked', { step: name, attempt });
      replay.halt({ op: 'pause', error: serialized, seen_cancel: replay.cancelRequested });
      return { ok: 'halted' };
    }
    if (decision.action === 'fail') {
      const delivery = replay.deliveries.reserve<T>();
      try {
        await replay.write({ op: 'step', seq, name, kind, status: 'failed', error: serialized, attempts: attempt, ms, delivered: delivery.number });
      } catch (e) {
        delivery.drop();
        throw e;
      }
      if (decision.cancelled) return { ok: false, error, delivery };
      return {
        ok: false,
        delivery,
        error: new StepFailedError(name, attempt, `step "${name}" failed after ${attempt} attempt(s): ${serialized.message}`, {
          cause: error,
          details: { error: serialized },
        }),
      };
    }
    const delay = decision.delayMs;
    replay.log.info('step attempt failed, retry scheduled', { step: name, attempt, delayMs: delay });
    void replay.write({ op: 'step', seq, name, kind, status: 'retrying', output: round, error: serialized, attempts: attempt, ms }).catch(() => undefined);
    replay.halt({ op: 'release', delay_ms: delay, error: serialized, failure: false, seen_cancel: replay.cancelRequested });
    return { ok: 'halted' };
  } catch {
    // The checkpoint was refused; write() has halted the run.
    return { ok: 'halted' };
  }
}

/** A step body between its beforeStep and afterStep hooks (kind 'step' only). */
async function withStepHooks<T>(run: Replay, name: string, attempt: number, body: () => Promise<T> | T): Promise<T> {
  const info = { ...run.hookInfo(), step: name, stepAttempt: attempt };
  await run.hook('beforeStep', info);
  try {
    const value = await body();
    await run.hook('afterStep', info, undefined);
    return value;
  } catch (error) {
    await run.hook('afterStep', info, error);
    throw error;
  }
}
