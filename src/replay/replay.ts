/**
 * The state of one execution's deterministic replay over its history. Pure: no pg. The worker
 * hands in the recorded calls of the run's current execution, its pending
 * signals and finished children, and a checkpoint sink; it gets back what the
 * run wants next (complete, fail, wait, release, pause, cancelled, continue).
 *
 * Calls are identified by call order (`seq`): each `ctx.*` call takes its
 * number synchronously, and results reach the code one per turn in the
 * recorded delivery order (delivery.ts), so inside loops and `Promise.all`
 * the code makes its calls in the same order on every replay. A step body
 * never starts before every earlier checkpoint of the run has committed (the
 * barrier), so a step's inputs are always durable. When every
 * piece of the workflow is blocked on a timer, signal or child, the execution
 * is quiescent and ends with a `wait` outcome: the worker is released.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { CancelledError, ChildFailedError, HistoryLimitError, LeaseLostError, NonDeterminismError, ValidationError } from '../errors.ts';
import { isDatabaseFault } from '../protocol/faults.ts';
import type { TransactionClient, TransactionOptions, WorkflowContext } from '../workflow/context.ts';
import type { WorkflowDefinition } from '../workflow/define.ts';
import { childLogger, type Logger } from '../protocol/logger.ts';
import { assertName } from '../workflow/names.ts';
import { nextDelay } from '../workflow/retry.ts';
import { validate } from '../workflow/standard-schema.ts';
import type { StepAbort } from './step-abort.ts';
import type { RunAbort } from './run-abort.ts';
import { RaceLostError, raceLost, type Wait } from './waits.ts';
import { Deliveries } from './delivery.ts';
import type { ChildOutcome, PendingSignal, SerializedError, StepKind, StepRecord } from '../protocol/history.ts';
import type { Checkpoint, CheckpointSink, EndOp, StepOp } from '../protocol/checkpoint.ts';
import type { ExecutionObserver } from './observer.ts';
import { encodeJson, serializeError } from '../protocol/serialize.ts';
import { longTimeout } from '../protocol/timer.ts';
import { LAST_WAIT_TIME } from '../protocol/deadline.ts';
import { isEndRunCancelled, type HookRunInfo, type WorkflowInterceptors } from '../workflow/run-control.ts';

export interface ExecuteOptions {
  runId: string;
  definition: WorkflowDefinition;
  input: unknown;
  attempt: number;
  failures: number;
  metadata: Record<string, unknown>;
  history: readonly StepRecord[] | null;
  sink: CheckpointSink;
  /** Aborted when the worker stops executing this run (lease lost, shutdown); `ctx.signal` is its signal. */
  abort: RunAbort;
  /**
   * Asked before each step body begins: false when the worker's own view of
   * the lease has run out (it then aborts `signal`), so a process that did
   * not run for a while (stopped, a blocked event loop) begins no body of a
   * run another process may have taken over.
   */
  leaseHeld?: (() => boolean) | undefined;
  maxPayloadBytes: number;
  maxHistorySteps: number;
  log: Logger;
  /** The run's execution number (continue-as-new increments it; default 1). */
  execution?: number | undefined;
  /** Engine time (trellis.now()) when the run was claimed; the execution's clock runs from it. */
  now?: Date | undefined;
  /**
   * performance.now() when the statement that leased the run was sent: its
   * trellis.now() was read after that, so `now` plus the time since is never
   * behind the engine's clock (dbNowAtLeast).
   */
  claimSentAt?: number | undefined;
  /** The run's deadline (`ctx.deadline`); none when absent or null. */
  deadline?: Date | null | undefined;
  signals?: readonly PendingSignal[] | null | undefined;
  children?: Readonly<Record<string, ChildOutcome>> | null | undefined;
  cancelRequested?: boolean | undefined;
  /** With cancelRequested: why (the message of the CancelledError the code gets). */
  cancelReason?: string | undefined;
  pauseRequested?: boolean | undefined;
  /** Called before a child run of `definition` is started (the worker registers it). */
  register?: ((definition: WorkflowDefinition) => Promise<void>) | undefined;
  /** Metrics and tracing (src/observability); none when both are off. */
  observer?: ExecutionObserver | undefined;
  /** Runs the transactions of ctx.transaction (the worker's pool); without it, ctx.transaction rejects. */
  transact?: Transact | undefined;
  /**
   * Check the code against the history only (trellis/testing checkReplay):
   * the execution halts with END_OF_HISTORY at the first call whose result
   * the history does not hold, so no step body ever runs.
   */
  replayOnly?: boolean | undefined;
}

/** The reason of the `abandoned` outcome a replay-only execution halts with at the end of its history. */
export const END_OF_HISTORY = Symbol('trellis.endOfHistory');

/** What a transactional step (ctx.transaction) asks of the worker besides its body. */
export interface TransactRequest {
  isolation?: TransactionOptions['isolation'] | undefined;
  /** The attempt's abort signal: once it fires, the body's query is cancelled and nothing commits. */
  signal: AbortSignal;
  /**
   * Asked just before COMMIT is sent: false (the attempt was aborted) rolls
   * back instead; after true, the attempt waits for the commit's outcome.
   */
  committing: () => boolean;
}

/**
 * Runs `work` (the body, then the step op recording its result) in a
 * transaction of its own and commits the op, fenced by the run's lease, with
 * it. Rejects with the body's own error, or with a TransactionFault when the
 * transaction's own statements failed (the engine's, never the body's).
 */
export type Transact = (work: (tx: TransactionClient) => Promise<StepOp>, request: TransactRequest) => Promise<void>;

/** A transactional step's own statements (begin, the fenced record, commit) failed: `cause` says why. */
export class TransactionFault {
  constructor(readonly cause: unknown) {}
}

export type Outcome =
  | EndOp
  /** Nothing may be written for this execution (its lease is lost, the worker stops, a database fault). */
  | { op: 'abandoned'; reason: unknown };

/**
 * How stats, metrics, traces and logs name an outcome: the run status an
 * end op leads to where it names one (`complete` → completed, `fail` →
 * failed), else the op itself.
 */
export type OutcomeName = 'completed' | 'failed' | 'cancelled' | 'release' | 'wait' | 'pause' | 'continue' | 'abandoned';

export function outcomeName(outcome: Outcome): OutcomeName {
  return outcome.op === 'complete' ? 'completed' : outcome.op === 'fail' ? 'failed' : outcome.op;
}

/**
 * The workflow function awaits something that no durable call will settle:
 * nothing runs, nothing waits, and it has not returned. The run fails with
 * this error instead of holding its worker slot forever. A kind of
 * non-determinism: workflow code must await only `ctx` calls.
 */
export class WorkflowStuckError extends NonDeterminismError {
  constructor(message: string) {
    super(message);
    this.name = 'WorkflowStuckError';
  }
}

const WORKFLOW_RETRY_DEFAULTS = { maxAttempts: 1, backoff: 'exponential', initialDelay: 1000, factor: 2, maxDelay: 300_000, jitter: 0.2 } as const;

/** A durable wait (timer, signal, child) blocked until the run is resumed. */
export interface BlockedWait {
  deadline: number | null;
  fail: (error: unknown) => void;
  shielded: boolean;
}

export function never<T>(): Promise<T> {
  return new Promise<T>(() => {});
}

/**
 * The replay of one execution: its history, its calls so far, its waits and
 * attempts, and how it ends. The `ctx.*` calls live in context.ts and
 * attempt.ts; executor.ts starts it.
 */
export class Replay {
  seq = 0;
  readonly history = new Map<number, StepRecord>();
  /** The highest call number in the history (-1: none). */
  private lastRecorded = -1;
  readonly writes = new Set<Promise<void>>();
  readonly attempts = new Set<Promise<unknown>>();
  /** Child calls made that have not yet queued their start (or given up): the run's end waits for them. */
  readonly childStarts = new Set<Promise<void>>();
  readonly blocked = new Map<number, BlockedWait>();
  /** The name of the step whose body is running synchronously now (durable calls are refused meanwhile). */
  stepBody: string | undefined;

  /**
   * Refuse a durable call made from inside a step's body (seen while the
   * body runs synchronously, up to its first await): the body runs once per
   * attempt, outside the replay, so a wait there could never be resumed
   * (the run held its slot for ever) and a step there would be recorded
   * only on the first run (NonDeterminismError at the next replay).
   */
  refuseInStepBody(what: string): void {
    if (this.stepBody === undefined) return;
    throw new ValidationError(`${what} was called inside the body of step "${this.stepBody}": durable calls (steps, sleeps, signals, `
      + 'children, values, now/random/uuid) belong to the workflow function, not to a step\'s body; make them before or after the step');
  }

  /** The clears of the timers of sleeps due while this execution still runs (block with `due`). */
  private readonly localTimers = new Set<() => void>();
  /** The abort handles of the step attempts in flight. */
  readonly controllers = new Set<{ controller: StepAbort; shielded: boolean }>();
  readonly consumed = new Set<number>();
  /** Waits of this execution that began completing so far (orders them for a race). */
  completions = 0;
  /**
   * Waits that lost a race (in this execution or, by the race's record or
   * their 'lost' mark, in the history): they never block, complete or
   * consume anything; awaiting one throws RaceLostError.
   */
  readonly disarmed = new Set<number>();
  /**
   * Marks code inside ctx.nonCancellable. Made when a shield begins and
   * disabled when the last one ends or the execution does: while any
   * AsyncLocalStorage is enabled, Node 20 runs a hook on every promise of the
   * process (measured: promises ~2.2x slower), so no store outlives its use.
   */
  private shieldStore: AsyncLocalStorage<boolean> | undefined;
  private shieldDepth = 0;
  private waitMap: WeakMap<Promise<unknown>, Wait> | undefined;
  /** Results on their way to the code, in delivery order (recorded ones first). */
  readonly deliveries: Deliveries;
  cancelRequested: boolean;
  /** The message of the CancelledError a requested cancellation throws into the code. */
  cancelReason = 'run cancelled';
  pauseRequested: boolean;
  halted: Outcome | undefined;
  /**
   * A checkpoint the worker could not write (the engine refused it, or a
   * database fault retries did not get past), when that is what halted the
   * execution, and the outcome it forced: that end op follows ops the
   * committer refused, so the worker writes it with the refusal forgotten.
   */
  refusal: { error: unknown; outcome: Outcome } | undefined;
  private runLog: Logger | undefined;
  private resolveHalt!: (outcome: Outcome) => void;
  private readonly haltPromise = new Promise<Outcome>((resolve) => {
    this.resolveHalt = resolve;
  });
  private resolveCancel!: () => void;
  /** Settles when a cancellation is requested (an in-process hook that never returns does not hold it up). */
  private readonly cancelPromise = new Promise<void>((resolve) => {
    this.resolveCancel = resolve;
  });
  private readonly startedAt = performance.now();
  private readonly claimNow: number;
  private quiescenceCheck = false;
  /** The workflow function has returned or thrown: no more parking. */
  private settled = false;

  constructor(readonly o: ExecuteOptions) {
    for (const rec of o.history ?? []) {
      this.history.set(rec.seq, rec);
      if (rec.seq > this.lastRecorded) this.lastRecorded = rec.seq;
      const output = rec.output as { lost?: unknown } | null;
      if (rec.kind === 'race' && rec.status === 'completed' && Array.isArray(output?.lost)) {
        for (const seq of output.lost) if (typeof seq === 'number') this.disarmed.add(seq);
      }
      if ((rec.kind === 'sleep' || rec.kind === 'signal') && rec.status === 'completed' && output?.lost === true) this.disarmed.add(rec.seq);
    }
    this.claimNow = o.now?.getTime() ?? Date.now();
    this.cancelRequested = o.cancelRequested ?? false;
    if (o.cancelReason) this.cancelReason = o.cancelReason;
    this.pauseRequested = o.pauseRequested ?? false;
    this.deliveries = new Deliveries(o.history ?? [], {
      halted: () => this.halted !== undefined,
      delivered: () => this.scheduleQuiescenceCheck(),
      skipped: (numbers) => this.log.warn('replay: recorded results whose calls were not made are handed back when called', { deliveries: numbers }),
    });
  }

  /** The worker's logger with the run id and workflow added (made on first use: most runs log nothing). */
  get log(): Logger {
    return (this.runLog ??= childLogger(this.o.log, { runId: this.o.runId, workflow: this.o.definition.name }));
  }

  /** Engine time now: the claim's trellis.now() plus the time elapsed since. */
  dbNow(): number {
    return Math.round(this.claimNow + (performance.now() - this.startedAt));
  }

  /**
   * Engine time now, never behind it: the claim's trellis.now() plus the time
   * since its statement was sent (dbNow, counted from when the reply was
   * read, is never ahead). A new timer counts from this, and is due by
   * dbNow, so a sleep never ends before its duration has passed on the
   * engine's clock, however long the claim's reply took to arrive.
   */
  dbNowAtLeast(): number {
    return Math.ceil(this.claimNow + (performance.now() - (this.o.claimSentAt ?? this.startedAt)));
  }

  /** The code has not yet passed the last recorded call: it is replaying what an earlier execution did (ctx.log is silent). */
  get replaying(): boolean {
    return this.seq <= this.lastRecorded;
  }

  get shielded(): boolean {
    return this.shieldStore?.getStore() === true;
  }

  /** Run `fn` shielded from cancellation (ctx.nonCancellable). */
  nonCancellable<T>(fn: () => Promise<T>): Promise<T> {
    const store = (this.shieldStore ??= new AsyncLocalStorage<boolean>());
    this.shieldDepth++;
    const end = () => {
      // A store the end of the execution disabled is not this one's to count.
      if (this.shieldStore === store && --this.shieldDepth === 0) this.endShield();
    };
    let result: Promise<T>;
    try {
      result = Promise.resolve(store.run(true, fn));
    } catch (error) {
      end();
      return Promise.reject(error);
    }
    return result.finally(end);
  }

  private endShield(): void {
    this.shieldStore?.disable();
    this.shieldStore = undefined;
    this.shieldDepth = 0;
  }

  /** The durable wait behind each wait promise, so `race` can claim and disarm it (made on first use). */
  get waits(): WeakMap<Promise<unknown>, Wait> {
    return (this.waitMap ??= new WeakMap());
  }

  /** Run the workflow function with `ctx` (built by context.ts) to this execution's outcome. */
  async run(ctx: WorkflowContext): Promise<Outcome> {
    const { definition, abort } = this.o;
    if (abort.aborted) return { op: 'abandoned', reason: abort.reason };
    abort.listen((reason) => {
      this.halt({ op: 'abandoned', reason });
      // Lease lost or shutdown: every attempt stops, shielded or not.
      for (const c of this.controllers) c.controller.abort(reason);
    });
    try {
      let input: unknown;
      try {
        input = await validate(definition.input, this.o.input, `input of ${definition.name}`);
      } catch (error) {
        return { op: 'fail', error: serializeError(error) };
      }
      // Before the first call and its quiescence check: an async hook cannot look stuck.
      if (definition.interceptors?.beforeWorkflow) {
        await this.hook('beforeWorkflow', this.hookInfo());
        if (this.halted) return await this.settleHalt();
      }
      this.deliveries.begin(); // the start is the first turn
      const body = (async () => definition.fn(ctx, input))().then(
        (value) => ({ ok: true as const, value }),
        (error: unknown) => ({ ok: false as const, error }),
      );
      this.scheduleQuiescenceCheck();
      const first = await Promise.race([body, this.haltPromise]);
      if ('op' in first || this.halted) return await this.settleHalt();
      this.settled = true;
      this.releaseLocal();
      // Children the code started and did not await are started before the
      // run ends (their ops are queued ahead of its end), so an unawaited
      // child is never silently dropped: with onParentCancel 'abandon' it
      // outlives the run, else the run's end cancels it.
      if (this.childStarts.size) {
        await Promise.allSettled([...this.childStarts]);
        if (this.halted) return await this.settleHalt();
      }
      if (definition.interceptors?.afterWorkflow) await this.hook('afterWorkflow', this.hookInfo(), first.ok ? undefined : first.error, first.ok ? first.value : undefined);
      // The end is reported while the last checkpoints may still be queued:
      // the worker writes it after them (often in the same transaction), and
      // the committer refuses it if any of them failed; `settle()` then says why.
      if (this.cancelRequested) return this.cancelledOutcome(first.ok ? undefined : first.error);
      return first.ok ? await this.finish(first.value) : this.failure(first.error);
    } finally {
      abort.listen(undefined);
    }
  }

  requestCancel(reason?: string): void {
    if (this.cancelRequested || this.halted) return;
    this.cancelRequested = true;
    if (reason) this.cancelReason = reason;
    this.resolveCancel();
    this.log.info('cancellation requested', { reason: this.cancelReason });
    this.deliveries.begin(); // a turn of its own: no delivery while the code reacts
    const error = new CancelledError(this.cancelReason);
    for (const c of this.controllers) if (!c.shielded) c.controller.abort(error);
    for (const [seq, wait] of this.blocked) {
      if (wait.shielded) continue;
      this.blocked.delete(seq);
      wait.fail(error);
    }
  }

  requestPause(): void {
    if (this.pauseRequested || this.halted) return;
    this.pauseRequested = true;
    this.scheduleQuiescenceCheck();
  }

  /** Let running attempts record what they finished, then report the halt. */
  private async settleHalt(): Promise<Outcome> {
    await Promise.allSettled([...this.attempts]);
    await this.settleWrites();
    return this.halted as Outcome;
  }

  async settleWrites(): Promise<void> {
    while (this.writes.size) await Promise.allSettled([...this.writes]);
  }

  private cancelledOutcome(error: unknown): Outcome {
    const cause = error instanceof CancelledError ? error : new CancelledError(this.cancelReason);
    return { op: 'cancelled', error: serializeError(cause) };
  }

  private async finish(value: unknown): Promise<Outcome> {
    const extra = [...this.history.keys()].filter((seq) => seq >= this.seq);
    if (extra.length) {
      return this.nondeterministic(
        `the workflow returned after ${this.seq} durable calls but the history holds calls up to #${Math.max(...extra)}`,
      );
    }
    try {
      const output = this.o.definition.output
        ? await validate(this.o.definition.output, value, `output of ${this.o.definition.name}`)
        : value;
      return { op: 'complete', output: encodeJson(output, `output of ${this.o.definition.name}`, this.o.maxPayloadBytes) };
    } catch (error) {
      return { op: 'fail', error: serializeError(error) };
    }
  }

  hookInfo(): HookRunInfo {
    return { runId: this.o.runId, workflow: this.o.definition.name, version: this.o.definition.version, attempt: this.o.attempt, input: this.o.input };
  }

  /**
   * Call one in-process hook of the definition; a hook that throws is
   * logged, never fails the run. A hook that has not returned when the
   * execution halts (lease lost, shutdown) or a cancellation is requested
   * is left running on its own, so it cannot hold the run (its cancel, the
   * worker's stop) for ever.
   */
  async hook<K extends keyof WorkflowInterceptors>(name: K, ...args: Parameters<NonNullable<WorkflowInterceptors[K]>>): Promise<void> {
    const fn = this.o.definition.interceptors?.[name] as ((...a: unknown[]) => unknown) | undefined;
    if (!fn) return;
    const called = (async () => fn(...args))().then(() => true, (error: unknown) => {
      this.log.warn(`${name} hook threw`, { error: String(error) });
      return true;
    });
    // (A cancellation requested before the call does not cut it short: the
    // hooks of the code's reaction to it are awaited as any.)
    const stops = this.cancelRequested ? [this.haltPromise] : [this.haltPromise, this.cancelPromise];
    const returned = await Promise.race([called, ...stops.map((p) => p.then(() => false))]);
    if (!returned) this.log.warn(`${name} hook had not returned when the run was cancelled or its execution stopped: left running, not awaited`);
  }

  private failure(error: unknown): Outcome {
    // The workflow ended itself as cancelled (a state machine's cancel).
    if (isEndRunCancelled(error)) return { op: 'cancelled', error: serializeError(new CancelledError(error.message)) };
    if (error instanceof ValidationError || error instanceof NonDeterminismError || error instanceof ChildFailedError
      || error instanceof RaceLostError) {
      return { op: 'fail', error: serializeError(error) };
    }
    const delay = nextDelay(this.o.definition.retry, this.o.failures + 1, error, WORKFLOW_RETRY_DEFAULTS);
    if (delay === null) return { op: 'fail', error: serializeError(error) };
    this.log.warn('workflow attempt failed, retrying', { delayMs: delay, error: String(error) });
    return { op: 'release', delay_ms: delay, error: serializeError(error), failure: true };
  }

  halt(outcome: Outcome): void {
    if (this.halted) return;
    this.halted = outcome;
    this.releaseLocal();
    this.resolveHalt(outcome);
  }

  /** The execution is over: no timer of its own fires, no shield keeps its store enabled. */
  private releaseLocal(): void {
    for (const clear of this.localTimers) clear();
    this.localTimers.clear();
    this.endShield();
  }

  nondeterministic(message: string): Outcome {
    const error = new NonDeterminismError(
      `run ${this.o.runId} (${this.o.definition.name}@${this.o.definition.version}): ${message}. ` +
        'The code changed under a running run; deploy such changes as a new workflow version.',
    );
    this.log.error(error.message);
    return { op: 'fail', error: serializeError(error) };
  }

  /**
   * Take the next call number and check it against the history. Undefined
   * means the execution has halted (or just did): the call must not proceed.
   */
  next(kind: StepKind, name: string): { seq: number; rec: StepRecord | undefined } | undefined {
    assertName(name, kind === 'signal' ? 'signal' : 'step');
    this.refuseInStepBody(`ctx.${kind === 'step' ? 'step' : kind} "${name}"`);
    const seq = this.seq++;
    if (this.halted) return undefined;
    if (seq >= this.o.maxHistorySteps) {
      this.halt({
        op: 'fail',
        error: serializeError(new HistoryLimitError(
          `run ${this.o.runId} reached the history limit of ${this.o.maxHistorySteps} calls (trellis.settings max_history_steps)`,
        )),
      });
      return undefined;
    }
    const rec = this.history.get(seq);
    if (rec && (rec.kind !== kind || rec.name !== name)) {
      this.halt(this.nondeterministic(`call #${seq} is ${kind} "${name}" but the history has ${rec.kind} "${rec.name}"`));
      return undefined;
    }
    if (this.o.replayOnly && rec?.status !== 'completed' && rec?.status !== 'failed') {
      this.halt({ op: 'abandoned', reason: END_OF_HISTORY });
      return undefined;
    }
    if (this.pauseRequested && rec?.status !== 'completed' && rec?.status !== 'failed') {
      this.halt({ op: 'pause' });
      return undefined;
    }
    return { seq, rec };
  }

  write(checkpoint: Checkpoint): Promise<void> {
    const promise = this.o.sink.record(checkpoint);
    this.writes.add(promise);
    promise.then(
      () => {
        this.writes.delete(promise);
        this.scheduleQuiescenceCheck();
      },
      (error: unknown) => {
        this.writes.delete(promise);
        const before = this.halted;
        if (!this.haltOnFault(error)) this.halt({ op: 'fail', error: serializeError(error) });
        if (!before && this.halted && !(error instanceof LeaseLostError)) this.refusal = { error, outcome: this.halted };
      },
    );
    return promise;
  }

  /**
   * Only the workflow's own errors fail a run: a lost lease or a database
   * fault the worker could not retry away or a schema behind the code (a
   * checkpoint, a child workflow's registration) gives this execution up, whatever the workflow code does
   * with the rejection it sees. True if `error` was such a fault.
   */
  haltOnFault(error: unknown): boolean {
    if (!(error instanceof LeaseLostError || isDatabaseFault(error))) return false;
    this.halt({ op: 'abandoned', reason: error });
    return true;
  }

  /** Wait until every checkpoint queued so far has settled (a failed one halts the run). */
  async barrier(): Promise<void> {
    await this.settleWrites();
  }

  /** Track a step attempt (body plus its checkpoint) until it settles. */
  track<T>(attempt: Promise<T>): Promise<T> {
    this.attempts.add(attempt);
    // The bookkeeping branch must not surface the attempt's rejection a second
    // time: the caller handles it (an unhandled rejection would crash the worker).
    attempt.finally(() => {
      this.attempts.delete(attempt);
      this.scheduleQuiescenceCheck();
    }).catch(() => undefined);
    return attempt;
  }

  /**
   * Register a blocked wait; returns a promise that only cancellation (or
   * losing a race) settles in this execution — or, with `due` (a sleep),
   * its own time: if this execution still runs at `deadline` (engine time;
   * a step in flight kept it from parking), `due` completes the wait here,
   * as it would have completed had the run parked and been claimed again,
   * so a `ctx.race` of a step against a sleep is won by whichever settles
   * first. The timer is cleared when the wait fails or the execution ends.
   */
  block<T>(seq: number, deadline: number | null, due?: () => Promise<T>): Promise<T> {
    if (this.disarmed.has(seq)) return Promise.reject(raceLost(seq, `#${seq}`));
    if (this.cancelRequested && !this.shielded) return Promise.reject(new CancelledError(this.cancelReason));
    return new Promise<T>((resolve, reject) => {
      let clear: (() => void) | undefined;
      const fail = (error: unknown) => {
        if (clear) this.localTimers.delete(clear);
        clear?.();
        reject(error);
      };
      this.blocked.set(seq, { deadline, fail, shielded: this.shielded });
      if (due && deadline !== null) {
        clear = longTimeout(() => {
          if (clear) this.localTimers.delete(clear);
          if (this.halted || this.settled || this.blocked.get(seq)?.fail !== fail) return;
          this.blocked.delete(seq);
          due().then(resolve, reject);
        }, Math.max(0, deadline - this.dbNow()), true);
        this.localTimers.add(clear);
      }
      this.scheduleQuiescenceCheck();
    });
  }

  /** A wait lost a race: it never blocks again, and a blocked one fails with `error`. */
  disarm(seq: number, error: unknown): void {
    this.disarmed.add(seq);
    const wait = this.blocked.get(seq);
    if (!wait) return;
    this.blocked.delete(seq);
    wait.fail(error);
  }

  /**
   * After the workflow's microtasks have run: if nothing can make progress in
   * this process (no attempt, no write, no delivery due), park the run when
   * something is blocked; when nothing is, the function awaits something no durable call
   * will ever settle, and the run fails (WorkflowStuckError) instead of
   * holding its worker slot forever.
   */
  scheduleQuiescenceCheck(): void {
    if (this.quiescenceCheck || this.halted || this.settled) return;
    this.quiescenceCheck = true;
    setImmediate(() => {
      this.quiescenceCheck = false;
      // Whatever goes wrong in deciding how the execution parks ends this
      // run's execution with that error, never the worker process (an
      // uncaught throw here took every run of the process down with it).
      try {
        this.quiesce();
      } catch (error) {
        if (!this.halted && !this.settled) this.halt({ op: 'fail', error: serializeError(error) });
      }
    });
  }

  /** The quiescence check itself: park, pause, or fail as stuck, once nothing is in flight. */
  private quiesce(): void {
    if (this.halted || this.settled || this.attempts.size || this.writes.size) return;
    // A result is due: another check follows its delivery.
    if (!this.deliveries.idle()) return;
    if (this.deliveries.unstick()) return this.scheduleQuiescenceCheck();
    if (this.pauseRequested) return this.halt({ op: 'pause', seen_cancel: this.cancelRequested });
    if (!this.blocked.size) return this.halt(this.stuck());
    const deadlines = [...this.blocked.values()].map((w) => w.deadline).filter((d): d is number => d !== null);
    // The deadline itself, not a delay from this execution's estimate of
    // the engine's clock: a clock that moved meanwhile (the test kit's
    // advance) makes a passed deadline due at once, not one delay later.
    // Never past the last time a wait can be set for: a wait recorded with
    // a later one (before waits were bounded) threw here on every claim.
    const deadline = deadlines.length ? new Date(Math.min(...deadlines, LAST_WAIT_TIME)).toISOString() : null;
    const signal = Math.max(0, ...(this.o.signals ?? []).map((s) => s.id));
    this.halt({ op: 'wait', deadline, signal, seen_cancel: this.cancelRequested });
  }

  private stuck(): Outcome {
    const error = new WorkflowStuckError(
      `run ${this.o.runId} (${this.o.definition.name}@${this.o.definition.version}) is stuck: its function has not returned, ` +
        'but no step is running and no durable wait is blocked. It awaits something that will never settle here ' +
        '(a promise that is not a ctx call, such as a bare setTimeout, I/O outside a step, or a never-settling promise). ' +
        'Await only ctx calls in workflow code.',
    );
    this.log.error(error.message);
    return { op: 'fail', error: serializeError(error) };
  }

}
