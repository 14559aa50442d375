/**
 * The `ctx` object handed to workflow code: every durable call, each taking
 * the next call number, checked against the history, and checkpointed.
 *
 * Waits (sleep, waitForSignal, child) are evaluated one microtask after the
 * call, so a `ctx.race` in the same expression can claim them first: a
 * claimed wait only offers whether it could complete now, and the race lets
 * exactly one winner complete (consume its signal, complete its timer).
 *
 * Every result handed to the code (a step's value or failure, a wait's
 * completion, a race's winner) goes through `run.deliveries`: it takes a
 * delivery number, stored with its checkpoint, and reaches the code in its
 * own turn; a replay hands recorded results back in that order (delivery.ts).
 */
import { CancelledError, ChildFailedError, ERROR_CODES, IllegalTransitionError, PayloadTooLargeError, quoteValue, StepFailedError, TimeoutError, ValidationError } from '../errors.ts';
import type { ChildOptions, ReplyErrorInfo, StepContext, StepOptions, TransactionOptions, WaitForRunOptions, WaitForSignalOptions, WorkflowContext } from '../workflow/context.ts';
import { answerableKey, REPLY_PREFIX, replyKey, type ReplyRecord } from '../workflow/requests.ts';
import type { WorkflowDefinition } from '../workflow/define.ts';
import type { Logger } from '../protocol/logger.ts';
import type { Stored } from '../protocol/stored.ts';
import { toMs, type Duration } from '../protocol/duration.ts';
import type { SignalDefinition, SignalResult } from '../workflow/signal.ts';
import { type StandardSchemaV1, validate, validateNow } from '../workflow/standard-schema.ts';
import { type Delivery, isDelivered } from './delivery.ts';
import { replaySilenced } from './replay-log.ts';
import { never, type Replay } from './replay.ts';
import { RaceLostError, raceLost, type Verdict, type Wait, type WaitKind } from './waits.ts';
import { type Carried, runAttempt } from './attempt.ts';
import type { StepKind, StepRecord } from '../protocol/history.ts';
import type { StepOp } from '../protocol/checkpoint.ts';
import { assertForeignIdField, assertJsonObject, assertJsonValue, encodeJson, jsonbTextBytes, serializeError } from '../protocol/serialize.ts';
import { assertName, UUID_PATTERN } from '../workflow/names.ts';
import { deadlineOptions, LAST_WAIT_TIME } from '../protocol/deadline.ts';
import { optionNames, refuseUnknownKeys } from '../protocol/option-bounds.ts';

export function buildContext(run: Replay): WorkflowContext {
  const o = run.o;
  let log: Logger | undefined;
  const ctx: WorkflowContext = {
    runId: o.runId,
    workflow: o.definition.name,
    version: o.definition.version,
    attempt: o.attempt,
    metadata: o.metadata,
    deadline: o.deadline ?? null,
    get signal() {
      return o.abort.signal;
    },
    get log() {
      return (log ??= replaySilenced(run.log, () => run.replaying));
    },
    get cancelled() {
      return run.cancelRequested;
    },
    // The value read back from the stored JSON (attempt.ts): Stored<T>, which the type of T alone cannot show here.
    // Options checked at once, before the call takes its number (never a microtask later: the numbers follow the calls' order).
    step: (name, fn, options = {}) => handled(unknownOption(options, STEP_OPTIONS, `options of step ${name}`)
      ?? durable(run, 'step', name, fn, options)) as Promise<Stored<never>>,
    transaction: (name, fn, options = {}) => {
      let transaction: TransactionOptions;
      try {
        refuseUnknownKeys(options, TRANSACTION_OPTIONS, `options of transaction ${name}`);
        transaction = transactionOptions(name, options);
      } catch (error) {
        return handled(Promise.reject(error));
      }
      return handled(durable(run, 'step', name, fn as (step: StepContext) => unknown, options, transaction)) as never;
    },
    sideEffect: <T>(a: string | (() => Promise<T> | T), b?: () => Promise<T> | T) => {
      const [name, fn] = typeof a === 'string' ? [a, b as () => Promise<T> | T] : ['side-effect', a];
      return handled(durable<T>(run, 'side_effect', name, () => fn(), {}));
    },
    now: () => new Date(recorded(run, 'now', () => run.dbNow(), (v) => v as number)),
    random: () => recorded(run, 'random', () => Math.random(), (v) => v as number),
    uuid: () => recorded(run, 'uuid', () => crypto.randomUUID(), (v) => v as string),
    setValue: (key, value) => handled(setValue(run, key, value)),
    reply: (message, value) => handled(reply(run, message, (stored) => ({ value: replyValue(stored ? checkedAnswer(message, value) : value) }))),
    replyError: (message, error) => handled(reply(run, message, () => ({ error: refusal(error) }))),
    setMetadata: (fields) => handled(setMetadata(run, fields)),
    writeStream: (key, value) => handled(streamCall(run, key, { v: value === undefined ? null : value })),
    closeStream: (key) => handled(streamCall(run, key, { closed: true })),
    sleep: (name, duration: Duration) => handled(timer(run, name, () => deadlineIn(run, toMs(duration, `duration of sleep ${name}`), `sleep ${name}`))),
    sleepUntil: (name, until: Date) => {
      if (!(until instanceof Date) || Number.isNaN(until.getTime())) return Promise.reject(new ValidationError(`sleepUntil(${name}) needs a valid Date`));
      return handled(timer(run, name, () => waitTime(until.getTime(), `sleepUntil(${name})`)));
    },
    waitForSignal: <T>(signal: SignalDefinition<T, any> | string, options: WaitForSignalOptions<T> = {}) =>
      handled(unknownOption(options, WAIT_FOR_SIGNAL_OPTIONS, 'waitForSignal options') ?? waitForSignal<T>(run, signal, options)),
    child: (workflow, input, options = {}) => handled(unknownOption(options, CHILD_OPTIONS, 'child options') ?? child(run, workflow, input, options)) as never,
    waitForRun: (runId: string, options: WaitForRunOptions = {}) =>
      handled(unknownOption(options, WAIT_FOR_RUN_OPTIONS, 'waitForRun options') ?? waitForRun(run, runId, options)) as never,
    patched: (id: string) => patched(run, id, false),
    deprecatePatch: (id: string) => {
      patched(run, id, true);
    },
    race: (branches, name = 'race') => handled(race(run, branches, name)) as never,
    nonCancellable: (fn) => run.nonCancellable(fn),
    continueAsNew: async (input, options = {}) => {
      refuseUnknownKeys(options, ['keepHistory'], 'continueAsNew options'); // keepHistroy: true would drop the history
      run.refuseInStepBody('ctx.continueAsNew');
      await run.track(validate(o.definition.input, input, `continueAsNew input of ${o.definition.name}`));
      const text = encodeJson(input, `continueAsNew input of ${o.definition.name}`, o.maxPayloadBytes);
      await run.barrier();
      run.halt({ op: 'continue', input: text, keep: options.keepHistory ?? false });
      return never();
    },
  };
  return ctx;
}

/**
 * `promise` itself, marked as handled: a ctx call the workflow never awaits
 * must not end the worker's process with an unhandled rejection (Node's
 * default); its failure is recorded in the run's history either way, and
 * awaiting it still throws.
 */
function handled<T>(promise: Promise<T>): Promise<T> {
  promise.catch(() => undefined);
  return promise;
}

function failedStep(name: string, rec: StepRecord): StepFailedError {
  const e = rec.error ?? { name: 'Error', message: 'step failed' };
  return new StepFailedError(name, rec.attempts, `step "${name}" failed after ${rec.attempts} attempt(s): ${e.message}`, { details: { error: e } });
}

/**
 * A recorded result (`outcome` returns it or throws it): handed back in its
 * delivery turn, or at once if it was recorded without a delivery number.
 */
function replayed<T>(run: Replay, rec: StepRecord, outcome: () => T): Promise<T> {
  const delivery = isDelivered(rec) ? run.deliveries.replayed<T>(rec.delivered as number) : undefined;
  try {
    const value = outcome();
    return delivery ? delivery.resolve(value) : Promise.resolve(value);
  } catch (error) {
    return delivery ? delivery.reject(error) : Promise.reject(error);
  }
}

/** A value recorded once (now, random, uuid) and replayed; its checkpoint is not awaited. */
function recorded<T>(run: Replay, kind: StepKind, make: () => T, decode: (v: unknown) => T): T {
  const call = run.next(kind, kind);
  if (!call) return make();
  if (call.rec) return decode(call.rec.output);
  const value = make();
  run.write({ op: 'step', seq: call.seq, name: kind, kind, status: 'completed', output: JSON.stringify(value), attempts: 1, ms: 0 })
    .catch(() => undefined);
  return value;
}

/**
 * `ctx.patched(id)` / `ctx.deprecatePatch(id)`: a call of kind `patch` named
 * `id`, recorded (not awaited, like `now`) where the code passes it. A replay
 * that finds the marker at this call takes it; one whose history holds
 * another call here is a run that passed this point under the code before
 * the patch: `patched` answers false and takes no call number, so the old
 * path replays as it was recorded. Where the history holds nothing yet, the
 * run has not been here: the marker is recorded and the new path taken.
 * `deprecatePatch` records and takes the marker the same way but refuses a
 * history without it (a run from before the patch, which the code no longer
 * has a path for). The first call of an id in an execution decides; later
 * ones repeat its answer without a call.
 */
function patched(run: Replay, id: string, deprecated: boolean): boolean {
  assertName(id, 'patch');
  run.refuseInStepBody(`ctx.${deprecated ? 'deprecatePatch' : 'patched'} "${id}"`);
  // Decided once per execution: a later call with the same id (in a loop,
  // in a helper called twice) gives the same answer and records nothing, so
  // one run never takes the old path and then the new one.
  let decided = patchesOf.get(run);
  if (!decided) patchesOf.set(run, decided = new Map());
  const known = decided.get(id);
  if (known !== undefined) return known;
  const answer = decide(run, id, deprecated);
  decided.set(id, answer);
  return answer;
}

/** The patches an execution has decided (ctx.patched), by id. */
const patchesOf = new WeakMap<Replay, Map<string, boolean>>();

function decide(run: Replay, id: string, deprecated: boolean): boolean {
  const rec = run.history.get(run.seq);
  if (rec && !(rec.kind === 'patch' && rec.name === id) && !run.halted) {
    if (!deprecated) return false;
    run.halt(run.nondeterministic(`call #${run.seq} is the deprecated patch "${id}" but the history has ${rec.kind} "${rec.name}" (a run from before the patch)`));
    return true;
  }
  const call = run.next('patch', id);
  if (!call || call.rec) return true;
  run.write({ op: 'step', seq: call.seq, name: id, kind: 'patch', status: 'completed', output: 'true', attempts: 1, ms: 0 })
    .catch(() => undefined);
  return true;
}

/** ctx.transaction's options, checked before the call takes its number (a bad isolation level records nothing). */
function transactionOptions(name: string, options: TransactionOptions): TransactionOptions {
  if (typeof options !== 'object' || options === null) throw new ValidationError(`options of transaction "${name}" must be an object`);
  const { isolation } = options;
  if (isolation !== undefined && !ISOLATION_LEVELS.includes(isolation)) {
    throw new ValidationError(`isolation of transaction "${name}" must be one of ${ISOLATION_LEVELS.join(', ')}, not ${JSON.stringify(isolation)}`);
  }
  return options;
}

const ISOLATION_LEVELS: readonly unknown[] = ['read committed', 'repeatable read', 'serializable'];

function durable<T>(run: Replay, kind: StepKind, name: string, fn: (step: StepContext) => Promise<T> | T, options: StepOptions,
  transaction?: TransactionOptions): Promise<T> {
  let call;
  try {
    call = run.next(kind, name);
  } catch (error) {
    return Promise.reject(error);
  }
  if (!call) return never();
  const { seq, rec } = call;
  if (rec?.status === 'completed') return replayed(run, rec, () => rec.output as T);
  if (rec?.status === 'failed') {
    return replayed(run, rec, () => {
      throw rec.error?.code === 'cancelled' ? new CancelledError(rec.error.message) : failedStep(name, rec);
    });
  }
  const attempt = (rec?.attempts ?? 0) + 1;
  // A dead-lettered step resumed by an operator counts its attempts afresh from there.
  const recorded = rec?.output as { resumedAfter?: unknown; firstAt?: unknown; progress?: unknown } | null | undefined;
  const base = typeof recorded?.resumedAfter === 'number' ? recorded.resumedAfter : 0;
  const carried: Carried = {
    // When the first attempt began, for a retry policy's maxElapsed.
    firstAt: typeof recorded?.firstAt === 'number' ? recorded.firstAt : undefined,
    // The progress an earlier attempt saved (step.saveProgress).
    progress: recorded !== null && typeof recorded === 'object' && 'progress' in recorded ? { value: recorded.progress } : undefined,
  };
  return run.track(runAttempt<T>(run, seq, kind, name, fn, options, attempt, base, transaction, carried)).then((result) => {
    if (result.ok === true) return result.delivery.resolve(result.value);
    if (result.ok === 'halted') return never<T>();
    if (result.delivery) return result.delivery.reject(result.error);
    throw result.error;
  });
}

/**
 * Publish `value` under `key` (a call of kind value: decision 0033). The
 * value is encoded before the call takes its number, so a value that cannot
 * be stored rejects without a trace in the history; the call resolves once
 * its checkpoint has committed (readers see the value from then on), and a
 * replay hands the recorded call back without writing it again.
 */
async function setValue(run: Replay, key: string, value: unknown): Promise<void> {
  if (typeof key === 'string' && key.startsWith(REPLY_PREFIX)) {
    throw new ValidationError(`value keys starting with ${REPLY_PREFIX} are the answers of requests: answer with ctx.reply, not ctx.setValue(${quoteValue(key)})`);
  }
  return published(run, 'value', key, value, `value ${key}`);
}

/**
 * `ctx.reply` / `ctx.replyError` (decision 0044): the reply to the request
 * `message` carried is the run's value `reply:<request id>`, which the
 * caller's `client.request` waits for. Everything is checked before the
 * call takes its number, so a bad message or reply records nothing.
 */
async function reply(run: Replay, message: SignalResult<unknown> | string, record: (stored: boolean) => ReplyRecord): Promise<boolean> {
  if (typeof message === 'string') {
    // A request id the code names: one no request can carry is the code's mistake.
    const key = replyKey(message, 'the request id ctx.reply answers');
    await published(run, 'value', key, record(true), `reply to request ${message}`, 1);
    return true;
  }
  if (typeof message !== 'object' || message === null || !('timedOut' in message)) {
    throw new ValidationError(`ctx.reply answers what ctx.waitForSignal returned, or a request id, not ${quoteValue(message)}`);
  }
  if (message.timedOut) throw new ValidationError('ctx.reply was given a signal wait that timed out: there is no request to answer');
  // A message whose id no request can carry (none: a plain signal; or one a
  // value key cannot hold, which only signal_send takes) has no caller
  // waiting: nothing is recorded. Whoever sent it decides this, not the
  // code, so it must not fail the run. The answer is checked as JSON all
  // the same (the same code answers requests and plain signals); no answer
  // schema runs for it (nothing is stored, and no replay could tell).
  const key = answerableKey(message.signalId);
  if (key === undefined) {
    record(false);
    return false;
  }
  await published(run, 'value', key, record(true), `reply to request ${message.signalId}`, 1);
  return true;
}

/** Where a signal wait's result keeps the answer schema of its signal (`defineSignal(name, schema, { reply })`). */
const ANSWER_SCHEMA = Symbol('trellis.answerSchema');

function withAnswerSchema<T>(result: SignalResult<T>, schema: StandardSchemaV1): SignalResult<T> {
  if (typeof result === 'object' && result !== null && !result.timedOut) Object.defineProperty(result, ANSWER_SCHEMA, { value: schema, enumerable: false });
  return result;
}

/**
 * The answer as `ctx.reply` stores it: checked against the answer schema
 * of the message's signal, if it has one (what the schema returns), at
 * once, before the call takes its number in the same turn (a bad answer
 * records nothing; the call's place among the turn's calls is what it was
 * without a schema). On every replay too, as the JSON check: whether the
 * call takes a number must come out as it did, so the schema is part of
 * the workflow's code (a stricter one under runs in flight is a code
 * change: a new version, or `ctx.patched`).
 */
function checkedAnswer(message: unknown, value: unknown): unknown {
  const schema = typeof message === 'object' && message !== null ? (message as { [ANSWER_SCHEMA]?: StandardSchemaV1 })[ANSWER_SCHEMA] : undefined;
  return schema ? validateNow(schema, value, 'ctx.reply\'s answer') : value;
}

/**
 * The answer `ctx.reply` stores: a JSON value, checked all the way down (JSON
 * would drop a function or an undefined field, and turn NaN into null and a
 * Date into text, in silence): the caller gets exactly what was replied.
 * `undefined` alone is null.
 */
function replyValue(value: unknown): unknown {
  if (value === undefined) return null;
  assertJsonValue(value, 'ctx.reply\'s answer', 'answer');
  return value;
}

/** What `ctx.replyError` stores: a message, and the code and JSON details given. */
function refusal(error: string | ReplyErrorInfo): Extract<ReplyRecord, { error: unknown }>['error'] {
  if (typeof error === 'string') return { message: error };
  if (typeof error !== 'object' || error === null || typeof error.message !== 'string') {
    throw new ValidationError(`ctx.replyError takes a message, or { message, code, details }, not ${quoteValue(error)}`);
  }
  if (error.code !== undefined && typeof error.code !== 'string') throw new ValidationError(`ctx.replyError's code must be a string, not ${quoteValue(error.code)}`);
  if (error.details !== undefined) assertJsonObject(error.details, 'ctx.replyError\'s details', 'details');
  return { message: error.message, ...(error.code === undefined ? {} : { code: error.code }), ...(error.details === undefined ? {} : { details: error.details }) };
}

/**
 * A call's options with a key it does not take (a misspelt `isolaton` ran
 * at read committed, `keepHistroy` dropped the history): a rejected
 * promise with that ValidationError, else undefined. Checked before the
 * call takes its number, as the code decides it the same on every replay.
 */
function unknownOption(options: unknown, keys: readonly string[], what: string): Promise<never> | undefined {
  try {
    refuseUnknownKeys(options, keys, what);
    return undefined;
  } catch (error) {
    return Promise.reject(error);
  }
}

const STEP_OPTIONS = optionNames<StepOptions>({ retry: true, timeout: true });
const TRANSACTION_OPTIONS = optionNames<TransactionOptions>({ retry: true, timeout: true, isolation: true });
const WAIT_FOR_SIGNAL_OPTIONS = optionNames<WaitForSignalOptions<unknown>>({ schema: true, timeout: true, name: true });
const CHILD_OPTIONS = optionNames<ChildOptions>({ name: true, key: true, queue: true, onParentCancel: true, deadline: true, timeLimit: true });
const WAIT_FOR_RUN_OPTIONS = optionNames<WaitForRunOptions>({ name: true, timeout: true });

/**
 * `ctx.setMetadata` (decision 0041): a completed call of kind `metadata`
 * whose output is the patch; checkpoint_apply merges it into the run's
 * metadata (sql/420_metadata.sql). Fields that are not JSON or are tracing's
 * are refused before the call takes its number (the code decides that, the
 * same on every replay). Whether the merged metadata fits the payload limit
 * depends on the row (an operator's fields, the setting), so it is decided
 * once and recorded: a call refused for its size is a failed call, which a
 * replay hands back as the same PayloadTooLargeError. The measure is this
 * execution's view of the row: the metadata its claim read (which holds the
 * patches of the calls recorded before it) with the patches this execution
 * wrote since.
 */
async function setMetadata(run: Replay, fields: Record<string, unknown>): Promise<void> {
  assertJsonObject(fields, 'ctx.setMetadata\'s fields', 'fields');
  const names = Object.keys(fields);
  if (names.some((k) => k === '' || TRACING_FIELDS.includes(k))) {
    throw new ValidationError(`ctx.setMetadata's fields may not name an empty field, traceparent or tracestate (tracing keeps them), got ${names.map((k) => JSON.stringify(k)).join(', ')}`);
  }
  assertForeignIdField(fields, 'ctx.setMetadata\'s fields');
  run.refuseInStepBody('ctx.setMetadata');
  if (names.length === 0) return;
  // What jsonb cannot store at all (U+0000, a lone surrogate): the code's doing, refused before the call.
  encodeJson(fields, 'metadata patch', Number.MAX_SAFE_INTEGER);
  const call = run.next('metadata', 'metadata');
  if (!call) return never();
  const { seq, rec } = call;
  if (rec) {
    return replayed(run, rec, () => {
      if (rec.status === 'failed') throw new PayloadTooLargeError(rec.error?.message ?? 'metadata over the payload limit', { details: { error: rec.error } });
    });
  }
  const before = metadataOf.get(run) ?? run.o.metadata;
  const merged = { ...before, ...fields };
  for (const k of names) if (fields[k] === null) delete merged[k];
  let text: string;
  try {
    text = encodeJson(fields, 'metadata patch', run.o.maxPayloadBytes);
    metadataFits(merged, before, run.o.maxPayloadBytes, `the metadata of run ${run.o.runId} with these fields`);
  } catch (error) {
    return fail(run, { seq, name: 'metadata', kind: 'metadata' }, error);
  }
  metadataOf.set(run, merged);
  const delivery = run.deliveries.reserve<void>();
  await written(run, delivery, { op: 'step', seq, name: 'metadata', kind: 'metadata', status: 'completed', output: text, attempts: 1, ms: 0 });
  return delivery.resolve(undefined);
}

/**
 * Refuse merged metadata over the limit that is larger than it was: a
 * patch that removes or shortens fields of metadata already over a lowered
 * limit is taken (as sql/420_metadata.sql's _metadata_merge does).
 */
function metadataFits(merged: Record<string, unknown>, before: Record<string, unknown>, max: number, what: string): void {
  try {
    encodeJson(merged, what, max);
  } catch (error) {
    if (!(error instanceof PayloadTooLargeError)) throw error;
    const size = (value: unknown) => jsonbTextBytes(JSON.stringify(value), Number.MAX_SAFE_INTEGER);
    if (size(merged) > size(before)) throw error;
  }
}

const TRACING_FIELDS: readonly string[] = ['traceparent', 'tracestate'];

/** An execution's view of its run's metadata after the ctx.setMetadata calls it wrote (absent: as claimed). */
const metadataOf = new WeakMap<Replay, Record<string, unknown>>();

/**
 * `ctx.writeStream` / `ctx.closeStream` (decision 0040): a call of kind
 * `stream` named by the stream's key, its output `{"v": value}` or
 * `{"closed": true}`, committed as a value is.
 */
async function streamCall(run: Replay, key: string, entry: { v: unknown } | { closed: true }): Promise<void> {
  return published(run, 'stream', key, entry, `stream ${key} entry`, 1);
}

/** A value or stream entry: checked and encoded, then a completed call of `kind` named `key`, resolved once committed. */
async function published(run: Replay, kind: 'value' | 'stream', key: string, output: unknown, what: string, wrapped = 0): Promise<void> {
  assertName(key, kind);
  const text = encodeJson(output, what, run.o.maxPayloadBytes, wrapped);
  const call = run.next(kind, key);
  if (!call) return never();
  if (call.rec) return replayed(run, call.rec, () => undefined);
  const delivery = run.deliveries.reserve<void>();
  await written(run, delivery, { op: 'step', seq: call.seq, name: key, kind, status: 'completed', output: text, attempts: 1, ms: 0 });
  return delivery.resolve(undefined);
}

/** Resolve call `seq` with `output` once its checkpoint has committed, in its delivery turn. */
async function complete<T>(run: Replay, seq: number, name: string, kind: StepKind, output: unknown, signal?: number, adopt?: (value: T) => T): Promise<T> {
  const text = JSON.stringify(output);
  const delivery = run.deliveries.reserve<T>();
  await written(run, delivery, { op: 'step', seq, name, kind, status: 'completed', output: text, attempts: 1, ms: 0, signal });
  const value = JSON.parse(text) as T;
  return delivery.resolve(adopt ? adopt(value) : value);
}

/** Fail call `seq` with `error` once its checkpoint has committed, in its delivery turn. */
async function fail<T>(run: Replay, checkpoint: Omit<StepOp, 'op' | 'status' | 'error' | 'attempts' | 'ms'>, error: unknown): Promise<T> {
  const delivery = run.deliveries.reserve<T>();
  await written(run, delivery, { op: 'step', status: 'failed', error: serializeError(error), attempts: 1, ms: 0, ...checkpoint });
  return delivery.reject(error);
}

/** Write the checkpoint recording `delivery`'s result (a refused one gives the delivery up). */
async function written(run: Replay, delivery: Pick<Delivery, 'number' | 'drop'>, checkpoint: StepOp): Promise<void> {
  try {
    await run.write({ ...checkpoint, delivered: delivery.number });
  } catch (error) {
    delivery.drop();
    throw error;
  }
}

/** Settling waits in the order their results reach the code: recorded ones first. */
function bySettling(a: Wait, b: Wait): number {
  const x = a.settling as { recorded: boolean; rank: number };
  const y = b.settling as { recorded: boolean; rank: number };
  return x.recorded === y.recorded ? x.rank - y.rank : x.recorded ? -1 : 1;
}

interface Ready<T> {
  complete: () => Promise<T>;
  /** Undo a reservation (a buffered signal) when the wait does not complete now. */
  release?: (() => void) | undefined;
}

/**
 * Replay a wait: `ready` says (without writing) whether it can complete now and
 * how; otherwise `block` records it and blocks the execution.
 */
function startWait<T>(run: Replay, seq: number, name: string, kind: WaitKind,
  ready: () => Ready<T> | undefined, block: () => Promise<T>): Promise<T> {
  const wait: Wait = { seq, name, kind, evaluated: false, done: false };
  const promise = (async () => {
    await undefined; // a race in the same expression claims the wait before this line
    wait.evaluated = true;
    if (run.disarmed.has(seq)) {
      void wait.claim?.(false);
      throw raceLost(seq, name);
    }
    // A requested cancellation wins over a wait that could complete now (a
    // timer due, a signal buffered, a child ended): the wait throws
    // CancelledError (block), as it did in the execution that first saw the
    // request while it waited. Else a later execution, claimed once the
    // timer was due, would complete the wait and go on past the clean-up
    // the first one recorded (NonDeterminismError).
    const readyNow = () => (run.cancelRequested && !run.shielded ? undefined : ready());
    let now = readyNow();
    if (wait.claim) {
      const verdict = await wait.claim(now !== undefined);
      if (verdict !== 'win') now?.release?.();
      if (verdict === 'lose') throw raceLost(seq, name);
      if (verdict === 'block') now = undefined;
      if (verdict === 'free') now = readyNow();
    }
    if (!now) return block();
    wait.settling = { recorded: false, rank: run.completions++ };
    return now.complete();
  })();
  promise.then(() => (wait.done = true), () => (wait.done = true));
  run.waits.set(promise, wait);
  return promise;
}

/**
 * The engine time `ms` from now, for a wait of `what` (checked as `waitTime`).
 */
function deadlineIn(run: Replay, ms: number, what: string): number {
  return waitTime(run.dbNowAtLeast() + ms, what);
}

/**
 * `at` if a wait's timer can be set for it: a ValidationError when it falls
 * past the end of year 9999 (LAST_WAIT_TIME). A wait recorded with a later
 * time (a finite but huge timeout) made every worker that claimed the run
 * crash, or its checkpoints be refused.
 */
function waitTime(at: number, what: string): number {
  if (!(at <= LAST_WAIT_TIME)) throw new ValidationError(`${what} would end past 9999-12-31, the last time a wait can be set for`);
  return at;
}

/**
 * A wait whose result the history holds: handed back in its delivery turn,
 * and known to a race at once as settled (a race that claimed the wait and
 * recorded it as the winner may have lost its own checkpoint).
 */
function recordedWait<T>(run: Replay, rec: StepRecord, kind: WaitKind, promise: Promise<T>): Promise<T> {
  const wait: Wait = { seq: rec.seq, name: rec.name, kind, evaluated: true, done: false,
    settling: { recorded: true, rank: typeof rec.delivered === 'number' ? rec.delivered : 0 } };
  promise.then(() => (wait.done = true), () => (wait.done = true));
  run.waits.set(promise, wait);
  return promise;
}

function lostPromise<T>(seq: number, name: string): Promise<T> {
  const p = Promise.reject<T>(raceLost(seq, name));
  p.catch(() => undefined);
  return p;
}

function timer(run: Replay, name: string, until: () => number): Promise<void> {
  let call;
  let fresh: number;
  try {
    // Before the call takes its number: a bad duration records nothing.
    fresh = until();
    call = run.next('sleep', name);
  } catch (error) {
    return Promise.reject(error);
  }
  if (!call) return never();
  const { seq, rec } = call;
  if (run.disarmed.has(seq)) return lostPromise(seq, name);
  if (rec?.status === 'completed') return recordedWait(run, rec, 'sleep', replayed(run, rec, () => undefined));
  const at = rec ? (rec.output as { until: number }).until : fresh;
  return startWait<void>(run, seq, name, 'sleep',
    () => (at <= run.dbNow() ? { complete: async () => void (await complete(run, seq, name, 'sleep', { until: at })) } : undefined),
    async () => {
      if (!rec) await run.write({ op: 'step', seq, name, kind: 'sleep', status: 'waiting', output: JSON.stringify({ until: at }), attempts: 1, ms: 0 });
      return run.block<void>(seq, at, async () => void (await complete(run, seq, name, 'sleep', { until: at })));
    });
}

function waitForSignal<T>(run: Replay, signal: SignalDefinition<T, any> | string, options: WaitForSignalOptions<T>): Promise<SignalResult<T>> {
  const signalName = typeof signal === 'string' ? signal : signal.name;
  const schema = options.schema ?? (typeof signal === 'string' ? undefined : signal.schema);
  // A request's answer schema rides on the result (not enumerable, not stored), for ctx.reply to check;
  // set as the result is made, live or replayed, so the promise the code awaits is the wait's own (ctx.race finds it).
  const answer = typeof signal === 'string' ? undefined : signal.reply;
  const adopt = (r: SignalResult<T>) => (answer ? withAnswerSchema(r, answer) : r);
  const name = options.name ?? signalName;
  let call;
  let fresh: number | null;
  try {
    // Before the call takes its number: a bad timeout records nothing.
    fresh = options.timeout === undefined ? null : deadlineIn(run, toMs(options.timeout, 'timeout'), `timeout of signal wait ${name}`);
    call = run.next('signal', name);
  } catch (error) {
    return Promise.reject(error);
  }
  if (!call) return never();
  const { seq, rec } = call;
  if (run.disarmed.has(seq)) return lostPromise(seq, name);
  if (rec?.status === 'completed') return recordedWait(run, rec, 'signal', replayed(run, rec, () => adopt(rec.output as SignalResult<T>)));
  if (rec?.status === 'failed') {
    return recordedWait(run, rec, 'signal', replayed(run, rec, () => {
      throw new ValidationError(rec.error?.message ?? 'invalid signal');
    }));
  }
  const waiting = rec?.output as { until: number | null } | undefined;
  const until = waiting ? waiting.until : fresh;
  const deliver = async (found: { id: number; payload: unknown; signal_id: string | null }): Promise<SignalResult<T>> => {
    let payload: unknown = found.payload;
    if (schema) {
      try {
        payload = await run.track(validate(schema, found.payload, `payload of signal ${signalName}`));
      } catch (error) {
        return fail(run, { seq, name, kind: 'signal', signal: found.id }, error);
      }
    }
    return complete(run, seq, name, 'signal', { timedOut: false, payload, signalId: found.signal_id }, found.id, adopt);
  };
  return startWait<SignalResult<T>>(run, seq, name, 'signal',
    () => {
      // The oldest buffered signal of the name that no other wait of this execution took.
      const found = (run.o.signals ?? []).find((s) => s.name === signalName && !run.consumed.has(s.id));
      if (found) {
        run.consumed.add(found.id);
        return { complete: () => deliver(found), release: () => run.consumed.delete(found.id) };
      }
      if (until !== null && until <= run.dbNow()) return { complete: () => complete(run, seq, name, 'signal', { timedOut: true }) };
      return undefined;
    },
    async () => {
      if (!rec) await run.write({ op: 'step', seq, name, kind: 'signal', status: 'waiting', output: JSON.stringify({ signal: signalName, until }), attempts: 1, ms: 0 });
      return run.block<SignalResult<T>>(seq, until);
    });
}

function child(run: Replay, workflow: WorkflowDefinition, input: unknown, options: ChildOptions): Promise<unknown> {
  let call;
  try {
    call = run.next('child', options.name ?? workflow.name);
  } catch (error) {
    return Promise.reject(error);
  }
  if (!call) return never();
  const { seq, rec } = call;
  const name = options.name ?? workflow.name;
  const childError = (id: string, e: { message?: string | undefined; code?: string | undefined } | null) =>
    new ChildFailedError(id, `child run ${id} (${workflow.name}) ${e?.code === 'cancelled' ? 'was cancelled' : 'failed'}: ${e?.message ?? 'unknown error'}`, { details: { error: e } });
  if (rec?.status === 'completed') return recordedWait(run, rec, 'child', replayed(run, rec, () => rec.output));
  if (rec?.status === 'failed') {
    return recordedWait(run, rec, 'child', replayed(run, rec, () => {
      throw childError((rec.output as { child?: string | undefined } | null)?.child ?? '?', awaitedError(rec.error));
    }));
  }
  const started = (rec?.output as { child: string } | undefined)?.child;
  // Until its start is queued, the run's end waits for this call (Replay.childStarts).
  let startQueued = () => {};
  if (!started) {
    const phase = new Promise<void>((resolve) => {
      startQueued = () => {
        run.childStarts.delete(phase);
        resolve();
      };
    });
    run.childStarts.add(phase);
  }
  const promise = startWait<unknown>(run, seq, name, 'child',
    () => {
      // A child's result belongs to its call alone (no shared buffer), so a
      // child that lost a race can still complete later.
      const outcome = started ? run.o.children?.[started] : undefined;
      if (!started || !outcome) return undefined;
      return {
        complete: async () => {
          if (outcome.status === 'completed') return complete(run, seq, name, 'child', outcome.output);
          return fail(run, { seq, name, kind: 'child', output: JSON.stringify({ child: started }) }, childError(started, outcome.error));
        },
      };
    },
    async () => {
      if (!started) {
        if (run.cancelRequested && !run.shielded) throw new CancelledError(run.cancelReason);
        await run.track(validate(workflow.input, input, `input of child ${workflow.name}`));
        const text = encodeJson(input, `input of child ${workflow.name}`, run.o.maxPayloadBytes);
        await run.track(Promise.resolve(run.o.register?.(workflow)).catch((error: unknown) => {
          run.haltOnFault(error);
          throw error;
        }));
        const deadline = deadlineOptions(options);
        const write = run.write({
          op: 'child', seq, name, child: crypto.randomUUID(), workflow: workflow.name, version: workflow.version, input: text,
          key: options.key, queue: options.queue, close: options.onParentCancel ?? 'cancel',
          metadata: run.o.observer?.childMetadata(), ...deadline,
        });
        startQueued();
        await write;
      }
      return run.block(seq, null);
    });
  // Refused before its start (bad input, a lost race, a cancel): nothing to wait for.
  promise.then(startQueued, startQueued);
  return promise;
}

/**
 * The awaited run's own error, from a failed child call's record: the call
 * recorded the ChildFailedError it threw, whose details hold that error, so
 * a replay throws the same message as the first execution did.
 */
function awaitedError(e: StepRecord['error']): { message?: string | undefined; code?: string | undefined } | null {
  const inner = e?.code === 'child_failed' ? (e.details as { error?: unknown } | undefined)?.error : undefined;
  return inner !== null && typeof inner === 'object' ? inner as { message?: string; code?: string } : (e ?? null);
}

/**
 * `ctx.waitForRun`: a call of kind `child` that waits on a run this run did
 * not start (decision 0039). It is recorded waiting with the run's id, as a
 * child's call is; the database wakes this run when that one ends
 * (trellis.run_watches), and the claim hands over its end as a child's.
 */
function waitForRun(run: Replay, runId: string, options: WaitForRunOptions): Promise<unknown> {
  if (typeof runId !== 'string' || !UUID_PATTERN.test(runId)) {
    return Promise.reject(new ValidationError(`ctx.waitForRun needs a run id (a UUID), got ${quoteValue(runId)}`));
  }
  const id = runId.toLowerCase();
  if (id === run.o.runId) return Promise.reject(new ValidationError(`run ${id} cannot wait for its own end`));
  const name = options.name ?? `run:${id}`;
  let call;
  let fresh: number | null;
  try {
    // Checked before the call takes its number: a bad timeout records nothing.
    fresh = options.timeout === undefined ? null : deadlineIn(run, toMs(options.timeout, 'timeout'), `timeout of wait ${name}`);
    call = run.next('child', name);
  } catch (error) {
    return Promise.reject(error);
  }
  if (!call) return never();
  const { seq, rec } = call;
  const awaited = (rec?.output as { child?: string | undefined } | null | undefined)?.child;
  if (rec && awaited !== undefined && awaited !== id) {
    run.halt(run.nondeterministic(`call #${seq} "${name}" waits for run ${id} but the history has it waiting for run ${awaited}`));
    return never();
  }
  const failure = (e: { message?: string | undefined; code?: string | undefined } | null | undefined) =>
    new ChildFailedError(id, e?.code === 'not_found' ? `run ${id} does not exist`
      : `run ${id} ${e?.code === 'cancelled' ? 'was cancelled' : 'failed'}: ${e?.message ?? 'unknown error'}`, { details: { error: e ?? null } });
  if (rec?.status === 'completed') return recordedWait(run, rec, 'child', replayed(run, rec, () => rec.output));
  if (rec?.status === 'failed') {
    return recordedWait(run, rec, 'child', replayed(run, rec, () => {
      if (rec.error?.code === ERROR_CODES.timeout) throw new TimeoutError(rec.error.message, { details: { run: id } });
      throw failure(awaitedError(rec.error));
    }));
  }
  // The time limit, in engine time, fixed when the wait is first recorded.
  const until = rec ? ((rec.output as { until?: number | null } | null)?.until ?? null) : fresh;
  // The call failed with `error`, its record naming the awaited run.
  const failed = (error: Error) => fail(run, { seq, name, kind: 'child', output: JSON.stringify({ child: id }) }, error);
  return startWait<unknown>(run, seq, name, 'child',
    () => {
      const outcome = rec ? run.o.children?.[id] : undefined;
      if (outcome) {
        return {
          complete: async () => {
            if (outcome.status === 'completed') return complete(run, seq, name, 'child', outcome.output);
            return failed(failure(outcome.error));
          },
        };
      }
      if (until !== null && until <= run.dbNow()) {
        return { complete: () => failed(new TimeoutError(`run ${id} did not end within the wait's timeout`, { details: { run: id } })) };
      }
      return undefined;
    },
    async () => {
      if (!rec) {
        await run.write({ op: 'step', seq, name, kind: 'child', status: 'waiting',
          output: JSON.stringify(until === null ? { child: id } : { child: id, until }), attempts: 1, ms: 0 });
      }
      return run.block(seq, until);
    });
}

type Settled = { key: string; ok: true; value: unknown } | { key: string; ok: false; error: unknown };

/**
 * `ctx.race`: the winner is recorded (with the waits it disarmed), so a replay
 * picks the same one. Among branches that can complete at once, a branch that
 * had already settled wins, else the first ready wait in key order; only the
 * winner completes. Losing sleeps and signal waits are disarmed (they consume
 * nothing, now or on any replay); a losing child stays a live call.
 */
async function race(run: Replay, branches: Record<string, Promise<unknown>>, name: string): Promise<{ key: string; value: unknown }> {
  const keys = Object.keys(branches);
  if (!keys.length) throw new ValidationError('race needs at least one branch');
  const call = run.next('race', name);
  if (!call) return never();
  const { seq, rec } = call;
  // Claim, synchronously, the waits passed directly that are not evaluated yet.
  const verdicts = new Map<string, (v: Verdict) => void>();
  const offers = new Map<string, Promise<boolean>>();
  for (const key of keys) {
    const wait = run.waits.get(branches[key] as Promise<unknown>);
    if (!wait || wait.evaluated || wait.claim) continue;
    let decide!: (v: Verdict) => void;
    const verdict = new Promise<Verdict>((resolve) => (decide = resolve));
    let offered!: (ready: boolean) => void;
    offers.set(key, new Promise<boolean>((resolve) => (offered = resolve)));
    verdicts.set(key, decide);
    wait.claim = (ready) => (offered(ready), verdict);
  }
  const settledOrder: string[] = [];
  const settled = keys.map((key) => (branches[key] as Promise<unknown>).then(
    (value): Settled => (settledOrder.push(key), { key, ok: true, value }),
    (error: unknown): Settled => (settledOrder.push(key), { key, ok: false, error }),
  ));
  const waitOf = (key: string) => run.waits.get(branches[key] as Promise<unknown>);

  if (rec?.status === 'completed') {
    const out = rec.output as { key: string; lost?: number[] | undefined };
    if (!(out.key in branches)) {
      run.halt(run.nondeterministic(`race #${seq} "${name}" was won by "${out.key}", which is no longer a branch`));
      return never();
    }
    // Records written before losers were stored: every non-child loser lost.
    const lost = (wait: Wait, key: string) => (out.lost ? out.lost.includes(wait.seq) : key !== out.key && wait.kind !== 'child');
    for (const key of keys) {
      const wait = waitOf(key);
      if (!wait) continue;
      if (verdicts.has(key)) (verdicts.get(key) as (v: Verdict) => void)(lost(wait, key) ? 'lose' : 'free');
      else if (!wait.done && lost(wait, key)) run.disarm(wait.seq, raceLost(wait.seq, wait.name));
    }
    const winner = branches[out.key] as Promise<unknown>;
    if (!isDelivered(rec)) return { key: out.key, value: await winner };
    // The race's own result reaches the code in its recorded turn, after the winner's.
    const delivery = run.deliveries.replayed<{ key: string; value: unknown }>(rec.delivered as number);
    winner.then((value) => void delivery.resolve({ key: out.key, value }), (error: unknown) => void delivery.reject(error));
    return delivery.promise;
  }

  const readyKeys = new Set<string>();
  for (const [key, offer] of offers) if (await offer) readyKeys.add(key);
  // Decided now if a branch settled meanwhile, a wait branch is settling (its
  // result is recorded, or it found its signal, timer or child before the
  // race and is completing: it consumed already, so it must be the winner
  // over any wait that is merely ready now), or a claimed wait is ready;
  // otherwise the claimed waits block and the first branch to settle wins.
  const settling = keys.filter((k) => waitOf(k)?.settling && !verdicts.has(k))
    .sort((a, b) => bySettling(waitOf(a) as Wait, waitOf(b) as Wait));
  const decided = settledOrder[0] ?? settling[0] ?? keys.find((k) => readyKeys.has(k));
  for (const [key, decide] of verdicts) {
    if (decided === undefined) decide('block');
    else if (key === decided) decide('win');
    else decide(waitOf(key)?.kind === 'child' ? 'free' : 'lose');
  }
  const result = decided === undefined ? await Promise.race(settled) : await (settled[keys.indexOf(decided)] as Promise<Settled>);
  const winner = result.key;
  // Disarm the losing sleeps and signal waits that did not complete (or begin
  // to) before the race (blocked ones are failed with RaceLostError), and
  // record them. One that did keeps its result, as a branch that had settled.
  const lost: Wait[] = [];
  for (const key of keys) {
    const wait = waitOf(key);
    if (!wait || key === winner || wait.kind === 'child' || (!verdicts.has(key) && (wait.done || wait.settling))) continue;
    run.disarm(wait.seq, raceLost(wait.seq, wait.name));
    lost.push(wait);
  }
  const delivery = run.deliveries.reserve<{ key: string; value: unknown }>();
  await written(run, delivery, {
    op: 'step', seq, name, kind: 'race', status: 'completed', output: JSON.stringify({ key: winner, lost: lost.map((w) => w.seq) }), attempts: 1, ms: 0,
  });
  for (const wait of lost) {
    void run.write({ op: 'step', seq: wait.seq, name: wait.name, kind: wait.kind, status: 'completed', output: JSON.stringify({ lost: true }), attempts: 1, ms: 0 })
      .catch(() => undefined);
  }
  return result.ok ? delivery.resolve({ key: winner, value: result.value }) : delivery.reject(result.error);
}
