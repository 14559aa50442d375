/**
 * Deterministic replay of one run over its history. Pure: no pg, no timers
 * beyond step timeouts. The worker hands in the recorded steps and a
 * checkpoint sink, and gets back what the run wants next.
 *
 * Calls are identified by call order (`seq`), which is stable inside loops and
 * `Promise.all` because each `ctx.*` call takes its number synchronously. A
 * step body never starts before every earlier checkpoint of the run has
 * committed (the barrier), so a step's inputs are always durable.
 */
import { HistoryLimitError, isTrellisError, LeaseLostError, NonDeterminismError, StepFailedError, TimeoutError, ValidationError } from '../errors.ts';
import type { StepContext, StepOptions, WorkflowContext } from '../workflow/context.ts';
import type { WorkflowDefinition } from '../workflow/define.ts';
import { toMs } from '../workflow/duration.ts';
import { childLogger, type Logger } from '../workflow/logger.ts';
import { assertName } from '../workflow/names.ts';
import { nextDelay } from '../workflow/retry.ts';
import { validate } from '../workflow/standard-schema.ts';
import type { CheckpointSink, SerializedError, StepCheckpoint, StepKind, StepRecord } from './history.ts';
import { encodeJson, serializeError } from './serialize.ts';

export interface ExecuteOptions {
  runId: string;
  definition: WorkflowDefinition;
  input: unknown;
  attempt: number;
  failures: number;
  metadata: Record<string, unknown>;
  history: readonly StepRecord[] | null;
  sink: CheckpointSink;
  /** Aborted when the worker stops executing this run (lease lost, shutdown). */
  signal: AbortSignal;
  maxPayloadBytes: number;
  maxHistorySteps: number;
  log: Logger;
  /** Milliseconds since the epoch (the worker's clock, shifted by the test kit). */
  clock?: () => number;
}

export type Outcome =
  | { kind: 'completed'; output: string }
  | { kind: 'failed'; error: SerializedError }
  | { kind: 'release'; delayMs: number; error?: SerializedError; failure: boolean }
  | { kind: 'abandoned'; reason: unknown };

const WORKFLOW_RETRY_DEFAULTS = { maxAttempts: 1, backoff: 'exponential', initialDelay: 1000, factor: 2, maxDelay: 300_000, jitter: 0.2 } as const;

type AttemptResult<T> = { ok: true; value: T } | { ok: false; error: unknown } | { ok: 'halted' };

function never<T>(): Promise<T> {
  return new Promise<T>(() => {});
}

/** Execute (or resume) a run; resolves with what the worker should write next. */
export async function execute(options: ExecuteOptions): Promise<Outcome> {
  return new Execution(options).run();
}

class Execution {
  private seq = 0;
  private readonly history = new Map<number, StepRecord>();
  private readonly writes = new Set<Promise<void>>();
  private readonly attempts = new Set<Promise<unknown>>();
  private halted: Outcome | undefined;
  private resolveHalt!: (outcome: Outcome) => void;
  private readonly haltPromise = new Promise<Outcome>((resolve) => {
    this.resolveHalt = resolve;
  });
  private readonly clock: () => number;
  private readonly log: Logger;

  constructor(private readonly o: ExecuteOptions) {
    for (const rec of o.history ?? []) this.history.set(rec.seq, rec);
    this.clock = o.clock ?? Date.now;
    this.log = childLogger(o.log, { runId: o.runId, workflow: o.definition.name });
  }

  async run(): Promise<Outcome> {
    const { definition, signal } = this.o;
    const onAbort = () => this.halt({ kind: 'abandoned', reason: signal.reason });
    if (signal.aborted) return { kind: 'abandoned', reason: signal.reason };
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      let input: unknown;
      try {
        input = await validate(definition.input, this.o.input, `input of ${definition.name}`);
      } catch (error) {
        return { kind: 'failed', error: serializeError(error) };
      }
      const body = (async () => definition.fn(this.context(), input))().then(
        (value) => ({ ok: true as const, value }),
        (error: unknown) => ({ ok: false as const, error }),
      );
      const first = await Promise.race([body, this.haltPromise]);
      if ('kind' in first) return await this.settleHalt();
      if (this.halted) return await this.settleHalt();
      return first.ok ? await this.finish(first.value) : this.failure(first.error);
    } finally {
      signal.removeEventListener('abort', onAbort);
    }
  }

  /** Let running step attempts record what they finished, then report the halt. */
  private async settleHalt(): Promise<Outcome> {
    await Promise.allSettled([...this.attempts]);
    await Promise.allSettled([...this.writes]);
    return this.halted as Outcome;
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
      const text = encodeJson(output, `output of ${this.o.definition.name}`, this.o.maxPayloadBytes);
      await Promise.all([...this.writes]);
      return { kind: 'completed', output: text };
    } catch (error) {
      if (error instanceof LeaseLostError) return { kind: 'abandoned', reason: error };
      return { kind: 'failed', error: serializeError(error) };
    }
  }

  private failure(error: unknown): Outcome {
    if (error instanceof ValidationError || error instanceof NonDeterminismError) {
      return { kind: 'failed', error: serializeError(error) };
    }
    const delay = nextDelay(this.o.definition.retry, this.o.failures + 1, error, WORKFLOW_RETRY_DEFAULTS);
    if (delay === null) return { kind: 'failed', error: serializeError(error) };
    this.log.warn('workflow attempt failed, retrying', { delayMs: delay, error: String(error) });
    return { kind: 'release', delayMs: delay, error: serializeError(error), failure: true };
  }

  private halt(outcome: Outcome): void {
    if (this.halted) return;
    this.halted = outcome;
    this.resolveHalt(outcome);
  }

  private nondeterministic(message: string): Outcome {
    const error = new NonDeterminismError(
      `run ${this.o.runId} (${this.o.definition.name}@${this.o.definition.version}): ${message}. ` +
        'The code changed under a running run; deploy such changes as a new workflow version.',
    );
    this.log.error(error.message);
    return { kind: 'failed', error: serializeError(error) };
  }

  /** Take the next call number and check it against the history. */
  private next(kind: StepKind, name: string): { seq: number; rec: StepRecord | undefined } | undefined {
    const seq = this.seq++;
    if (this.halted) return undefined;
    if (seq >= this.o.maxHistorySteps) {
      this.halt({
        kind: 'failed',
        error: serializeError(
          new HistoryLimitError(
            `run ${this.o.runId} reached the history limit of ${this.o.maxHistorySteps} steps (trellis.settings max_history_steps)`,
          ),
        ),
      });
      return undefined;
    }
    const rec = this.history.get(seq);
    if (rec && (rec.kind !== kind || rec.name !== name)) {
      this.halt(this.nondeterministic(`call #${seq} is ${kind} "${name}" but the history has ${rec.kind} "${rec.name}"`));
      return undefined;
    }
    return { seq, rec };
  }

  private write(checkpoint: StepCheckpoint): Promise<void> {
    const promise = this.o.sink.record(checkpoint);
    this.writes.add(promise);
    promise.then(
      () => this.writes.delete(promise),
      (error: unknown) => {
        this.writes.delete(promise);
        if (error instanceof LeaseLostError) this.halt({ kind: 'abandoned', reason: error });
        else this.halt({ kind: 'failed', error: serializeError(error) });
      },
    );
    return promise;
  }

  private async barrier(): Promise<void> {
    while (this.writes.size) await Promise.all([...this.writes]);
  }

  private recorded<T>(kind: StepKind, name: string, make: () => T, decode: (v: unknown) => T): T {
    const call = this.next(kind, name);
    if (!call) return make();
    if (call.rec) return decode(call.rec.output);
    const value = make();
    this.write({ seq: call.seq, name, kind, status: 'completed', output: JSON.stringify(value), attempts: 1, ms: 0 })
      .catch(() => undefined);
    return value;
  }

  private durable<T>(kind: StepKind, name: string, fn: (step: StepContext) => Promise<T> | T, options: StepOptions): Promise<T> {
    try {
      assertName(name, 'step');
    } catch (error) {
      return Promise.reject(error);
    }
    const call = this.next(kind, name);
    if (!call) return never();
    const { seq, rec } = call;
    if (rec?.status === 'completed') return Promise.resolve(rec.output as T);
    if (rec?.status === 'failed') {
      const e = rec.error ?? { name: 'Error', message: 'step failed' };
      return Promise.reject(new StepFailedError(name, rec.attempts, `step "${name}" failed after ${rec.attempts} attempt(s): ${e.message}`, { details: { error: e } }));
    }
    const attempt = (rec?.attempts ?? 0) + 1;
    const pending = this.attempt<T>(seq, kind, name, fn, options, attempt);
    this.attempts.add(pending);
    void pending.finally(() => this.attempts.delete(pending));
    return pending.then((result) => {
      if (result.ok === true) return result.value;
      if (result.ok === 'halted') return never<T>();
      throw result.error;
    });
  }

  private async attempt<T>(seq: number, kind: StepKind, name: string, fn: (step: StepContext) => Promise<T> | T,
    options: StepOptions, attempt: number): Promise<AttemptResult<T>> {
    await this.barrier();
    if (this.halted) return { ok: 'halted' };
    const started = Date.now();
    // Mark the attempt as started, without waiting: if the process dies in the
    // body, the next execution sees it and counts the attempt. A fast step's
    // marker is dropped by the committer when its result is queued first.
    void this.write({ seq, name, kind, status: 'running', attempts: attempt, ms: 0 }).catch(() => undefined);
    const controller = new AbortController();
    const onRunAbort = () => controller.abort(this.o.signal.reason);
    this.o.signal.addEventListener('abort', onRunAbort, { once: true });
    const timeoutMs = options.timeout === undefined ? undefined : toMs(options.timeout, `timeout of step ${name}`);
    const timer = timeoutMs === undefined ? undefined : setTimeout(
      () => controller.abort(new TimeoutError(`step "${name}" attempt ${attempt} timed out after ${timeoutMs} ms`)),
      timeoutMs,
    );
    let value: T | undefined;
    let error: unknown;
    let failed = false;
    try {
      const stepContext: StepContext = { signal: controller.signal, attempt, idempotencyKey: `${this.o.runId}:${seq}`, runId: this.o.runId };
      value = await raceAbort(Promise.resolve().then(() => fn(stepContext)), controller.signal);
    } catch (e) {
      error = e;
      failed = true;
    } finally {
      if (timer) clearTimeout(timer);
      this.o.signal.removeEventListener('abort', onRunAbort);
    }
    if (this.o.signal.aborted) return { ok: 'halted' };
    const ms = Date.now() - started;
    let text: string | undefined;
    if (!failed) {
      try {
        text = encodeJson(value, `output of step "${name}"`, this.o.maxPayloadBytes);
      } catch (e) {
        error = e;
        failed = true;
      }
    }
    try {
      if (!failed) {
        await this.write({ seq, name, kind, status: 'completed', output: text, attempts: attempt, ms });
        return { ok: true, value: JSON.parse(text as string) as T };
      }
      const policy = kind === 'side_effect' ? { maxAttempts: 1 } : options.retry;
      const delay = isTrellisError(error) && (error.code === 'validation' || error.code === 'payload_too_large')
        ? null
        : nextDelay(policy, attempt, error);
      const serialized = { ...serializeError(error), step: name, attempts: attempt };
      if (delay === null) {
        await this.write({ seq, name, kind, status: 'failed', error: serialized, attempts: attempt, ms });
        return {
          ok: false,
          error: new StepFailedError(name, attempt, `step "${name}" failed after ${attempt} attempt(s): ${serialized.message}`, {
            cause: error,
            details: { error: serialized },
          }),
        };
      }
      this.log.info('step attempt failed, retry scheduled', { step: name, attempt, delayMs: delay });
      void this.write({ seq, name, kind, status: 'retrying', error: serialized, attempts: attempt, ms }).catch(() => undefined);
      this.halt({ kind: 'release', delayMs: delay, error: serialized, failure: false });
      return { ok: 'halted' };
    } catch {
      // The checkpoint was refused; write() has halted the run.
      return { ok: 'halted' };
    }
  }

  private context(): WorkflowContext {
    const o = this.o;
    const self = this;
    return {
      runId: o.runId,
      workflow: o.definition.name,
      version: o.definition.version,
      attempt: o.attempt,
      metadata: o.metadata,
      signal: o.signal,
      log: this.log,
      step: (name, fn, options = {}) => self.durable('step', name, fn, options),
      now: () => new Date(self.recorded('now', 'now', () => self.clock(), (v) => v as number)),
      random: () => self.recorded('random', 'random', () => Math.random(), (v) => v as number),
      uuid: () => self.recorded('uuid', 'uuid', () => crypto.randomUUID(), (v) => v as string),
      sideEffect: <T>(a: string | (() => Promise<T> | T), b?: () => Promise<T> | T) => {
        const [name, fn] = typeof a === 'string' ? [a, b as () => Promise<T> | T] : ['side-effect', a];
        return self.durable<T>('side_effect', name, () => fn(), {});
      },
    };
  }
}

function raceAbort<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(e);
      },
    );
  });
}
