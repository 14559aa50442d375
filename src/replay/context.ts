/**
 * The `ctx` object handed to workflow code: every durable call, each taking
 * the next call number, checked against the history, and checkpointed.
 */
import { CancelledError, ChildFailedError, StepFailedError, ValidationError } from '../errors.ts';
import type { ChildOptions, StepContext, StepOptions, WaitForSignalOptions, WorkflowContext } from '../workflow/context.ts';
import type { WorkflowDefinition } from '../workflow/define.ts';
import { toMs, type Duration } from '../workflow/duration.ts';
import type { SignalDefinition, SignalResult } from '../workflow/signal.ts';
import { validate } from '../workflow/standard-schema.ts';
import { never, type Run } from './executor.ts';
import type { StepKind, StepRecord } from './history.ts';
import { encodeJson, serializeError } from './serialize.ts';

export function buildContext(run: Run): WorkflowContext {
  const o = run.o;
  const ctx: WorkflowContext = {
    runId: o.runId,
    workflow: o.definition.name,
    version: o.definition.version,
    attempt: o.attempt,
    metadata: o.metadata,
    signal: o.signal,
    log: run.log,
    get cancelled() {
      return run.cancelRequested;
    },
    step: (name, fn, options = {}) => durable(run, 'step', name, fn, options),
    sideEffect: <T>(a: string | (() => Promise<T> | T), b?: () => Promise<T> | T) => {
      const [name, fn] = typeof a === 'string' ? [a, b as () => Promise<T> | T] : ['side-effect', a];
      return durable<T>(run, 'side_effect', name, () => fn(), {});
    },
    now: () => new Date(recorded(run, 'now', () => run.dbNow(), (v) => v as number)),
    random: () => recorded(run, 'random', () => Math.random(), (v) => v as number),
    uuid: () => recorded(run, 'uuid', () => crypto.randomUUID(), (v) => v as string),
    sleep: (name, duration: Duration) => timer(run, name, () => run.dbNow() + toMs(duration, `duration of sleep ${name}`)),
    sleepUntil: (name, until: Date) => {
      if (!(until instanceof Date) || Number.isNaN(until.getTime())) return Promise.reject(new ValidationError(`sleepUntil(${name}) needs a valid Date`));
      return timer(run, name, () => until.getTime());
    },
    waitForSignal: <T>(signal: SignalDefinition<T, any> | string, options: WaitForSignalOptions<T> = {}) =>
      waitForSignal<T>(run, signal, options),
    child: (workflow, input, options = {}) => child(run, workflow, input, options) as never,
    race: (branches, name = 'race') => race(run, branches, name) as never,
    nonCancellable: (fn) => run.shield.run(true, fn),
    continueAsNew: async (input, options = {}) => {
      await validate(o.definition.input, input, `continueAsNew input of ${o.definition.name}`);
      const text = encodeJson(input, `continueAsNew input of ${o.definition.name}`, o.maxPayloadBytes);
      await run.barrier();
      run.halt({ kind: 'continue', input: text, keep: options.keepHistory ?? false });
      return never();
    },
  };
  return ctx;
}

function failedStep(name: string, rec: StepRecord): StepFailedError {
  const e = rec.error ?? { name: 'Error', message: 'step failed' };
  return new StepFailedError(name, rec.attempts, `step "${name}" failed after ${rec.attempts} attempt(s): ${e.message}`, { details: { error: e } });
}

/** A value recorded once (now, random, uuid) and replayed; its checkpoint is not awaited. */
function recorded<T>(run: Run, kind: StepKind, make: () => T, decode: (v: unknown) => T): T {
  const call = run.next(kind, kind);
  if (!call) return make();
  if (call.rec) return decode(call.rec.output);
  const value = make();
  run.write({ type: 'step', seq: call.seq, name: kind, kind, status: 'completed', output: JSON.stringify(value), attempts: 1, ms: 0 })
    .catch(() => undefined);
  return value;
}

function durable<T>(run: Run, kind: StepKind, name: string, fn: (step: StepContext) => Promise<T> | T, options: StepOptions): Promise<T> {
  let call;
  try {
    call = run.next(kind, name);
  } catch (error) {
    return Promise.reject(error);
  }
  if (!call) return never();
  const { seq, rec } = call;
  if (rec?.status === 'completed') return Promise.resolve(rec.output as T);
  if (rec?.status === 'failed') return Promise.reject(rec.error?.code === 'cancelled' ? new CancelledError(rec.error.message) : failedStep(name, rec));
  const attempt = (rec?.attempts ?? 0) + 1;
  return run.track(run.attempt<T>(seq, kind, name, fn, options, attempt)).then((result) => {
    if (result.ok === true) return result.value;
    if (result.ok === 'halted') return never<T>();
    throw result.error;
  });
}

/** Resolve call `seq` with `output` once its checkpoint has committed. */
async function complete<T>(run: Run, seq: number, name: string, kind: StepKind, output: unknown, signal?: number): Promise<T> {
  const text = JSON.stringify(output);
  await run.write({ type: 'step', seq, name, kind, status: 'completed', output: text, attempts: 1, ms: 0, signal });
  return JSON.parse(text) as T;
}

function timer(run: Run, name: string, until: () => number): Promise<void> {
  let call;
  try {
    call = run.next('sleep', name);
  } catch (error) {
    return Promise.reject(error);
  }
  if (!call) return never();
  const { seq, rec } = call;
  if (rec?.status === 'completed') return Promise.resolve();
  run.waitInfo.set(seq, { name, kind: 'sleep' });
  const at = rec ? (rec.output as { until: number }).until : until();
  const promise = (async () => {
    if (!rec) await run.write({ type: 'step', seq, name, kind: 'sleep', status: 'waiting', output: JSON.stringify({ until: at }), attempts: 1, ms: 0 });
    if (at <= run.dbNow()) {
      await complete(run, seq, name, 'sleep', { until: at });
      return;
    }
    return run.block<void>(seq, at);
  })();
  run.waitSeqs.set(promise, seq);
  return promise;
}

function waitForSignal<T>(run: Run, signal: SignalDefinition<T, any> | string, options: WaitForSignalOptions<T>): Promise<SignalResult<T>> {
  const signalName = typeof signal === 'string' ? signal : signal.name;
  const schema = options.schema ?? (typeof signal === 'string' ? undefined : signal.schema);
  const name = options.name ?? signalName;
  let call;
  try {
    call = run.next('signal', name);
  } catch (error) {
    return Promise.reject(error);
  }
  if (!call) return never();
  const { seq, rec } = call;
  if (rec?.status === 'completed') return Promise.resolve(rec.output as SignalResult<T>);
  if (rec?.status === 'failed') return Promise.reject(new ValidationError(rec.error?.message ?? 'invalid signal'));
  run.waitInfo.set(seq, { name, kind: 'signal' });
  const promise = (async (): Promise<SignalResult<T>> => {
    const waiting = rec?.output as { until: number | null } | undefined;
    const until = waiting ? waiting.until : options.timeout === undefined ? null : run.dbNow() + toMs(options.timeout, 'timeout');
    if (run.disarmed.has(seq)) return never<SignalResult<T>>();
    const found = (run.o.signals ?? []).find((s) => s.name === signalName && !run.consumed.has(s.id));
    if (found) {
      run.consumed.add(found.id);
      let payload: unknown = found.payload;
      if (schema) {
        try {
          payload = await validate(schema, found.payload, `payload of signal ${signalName}`);
        } catch (error) {
          await run.write({ type: 'step', seq, name, kind: 'signal', status: 'failed', error: serializeError(error), attempts: 1, ms: 0, signal: found.id });
          throw error;
        }
      }
      return complete(run, seq, name, 'signal', { timedOut: false, payload, signalId: found.signal_id }, found.id);
    }
    if (!rec) await run.write({ type: 'step', seq, name, kind: 'signal', status: 'waiting', output: JSON.stringify({ signal: signalName, until }), attempts: 1, ms: 0 });
    if (until !== null && until <= run.dbNow()) return complete(run, seq, name, 'signal', { timedOut: true });
    return run.block<SignalResult<T>>(seq, until);
  })();
  run.waitSeqs.set(promise, seq);
  return promise;
}

function child(run: Run, workflow: WorkflowDefinition, input: unknown, options: ChildOptions): Promise<unknown> {
  let call;
  try {
    call = run.next('child', options.name ?? workflow.name);
  } catch (error) {
    return Promise.reject(error);
  }
  if (!call) return never();
  const { seq, rec } = call;
  const name = options.name ?? workflow.name;
  const childError = (id: string, e: { message?: string; code?: string } | null) =>
    new ChildFailedError(id, `child run ${id} (${workflow.name}) ${e?.code === 'cancelled' ? 'was cancelled' : 'failed'}: ${e?.message ?? 'unknown error'}`, { details: { error: e } });
  if (rec?.status === 'completed') return Promise.resolve(rec.output);
  if (rec?.status === 'failed') return Promise.reject(childError((rec.output as { child?: string } | null)?.child ?? '?', rec.error));
  run.waitInfo.set(seq, { name, kind: 'child' });
  const promise = (async () => {
    let id = (rec?.output as { child: string } | undefined)?.child;
    if (!id) {
      if (run.cancelRequested && !run.shielded) throw new CancelledError('run cancelled');
      await validate(workflow.input, input, `input of child ${workflow.name}`);
      const text = encodeJson(input, `input of child ${workflow.name}`, run.o.maxPayloadBytes);
      await run.o.register?.(workflow);
      id = crypto.randomUUID();
      await run.write({
        type: 'child', seq, name, child: id, workflow: workflow.name, version: workflow.version, input: text,
        key: options.key, queue: options.queue, close: options.onParentCancel ?? 'cancel',
      });
      return run.block(seq, null);
    }
    const outcome = run.o.children?.[id];
    if (!outcome) return run.block(seq, null);
    if (outcome.status === 'completed') return complete(run, seq, name, 'child', outcome.output);
    const error = childError(id, outcome.error);
    await run.write({ type: 'step', seq, name, kind: 'child', status: 'failed', output: JSON.stringify({ child: id }), error: serializeError(error), attempts: 1, ms: 0 });
    throw error;
  })();
  run.waitSeqs.set(promise, seq);
  return promise;
}

async function race(run: Run, branches: Record<string, Promise<unknown>>, name: string): Promise<{ key: string; value: unknown }> {
  const keys = Object.keys(branches);
  if (!keys.length) throw new ValidationError('race needs at least one branch');
  const call = run.next('race', name);
  if (!call) return never();
  const { seq, rec } = call;
  if (rec?.status === 'completed') {
    const key = (rec.output as { key: string }).key;
    const branch = branches[key];
    if (!branch) {
      run.halt(run.nondeterministic(`race #${seq} "${name}" was won by "${key}", which is no longer a branch`));
      return never();
    }
    return { key, value: await branch };
  }
  const settled = await Promise.race(keys.map((key) => (branches[key] as Promise<unknown>).then(
    (value) => ({ key, ok: true as const, value }),
    (error: unknown) => ({ key, ok: false as const, error }),
  )));
  await run.write({ type: 'step', seq, name, kind: 'race', status: 'completed', output: JSON.stringify({ key: settled.key }), attempts: 1, ms: 0 });
  // Disarm the losers: their waits resolve as lost, so they consume nothing later.
  for (const key of keys) {
    const loser = key === settled.key ? undefined : run.waitSeqs.get(branches[key] as Promise<unknown>);
    if (loser === undefined) continue;
    const info = run.waitInfo.get(loser);
    if (!info || run.history.get(loser)?.status === 'completed') continue;
    run.disarmed.add(loser);
    run.blocked.delete(loser);
    void run.write({ type: 'step', seq: loser, name: info.name, kind: info.kind, status: 'completed', output: JSON.stringify({ lost: true }), attempts: 1, ms: 0 })
      .catch(() => undefined);
  }
  if (!settled.ok) throw settled.error;
  return { key: settled.key, value: settled.value };
}
