/**
 * `defineStateMachine`: typed statuses, a typed object, and the handlers
 * that move a run between statuses (steps, callbacks, timeouts). `build()`
 * compiles it into an ordinary workflow (compile.ts): same runs, steps,
 * claims, leases, history and test kit.
 */
import { quoteValue, ValidationError } from '../errors.ts';
import { checkMaxResumes, checkResumeAfter, type WorkflowDefinition } from '../workflow/define.ts';
import { toMs, toTimeoutMs } from '../protocol/duration.ts';
import { assertName } from '../workflow/names.ts';
import { checkRetryPolicy, type RetryPolicy } from '../workflow/retry.ts';
import type { InferOutput, StandardSchemaV1 } from '../workflow/standard-schema.ts';
import type { Duration } from '../protocol/duration.ts';
import type { Connector } from '../connectors/connector.ts';
import { compileMachine, type MachineOutput } from './compile.ts';
import type { MachineConnector, MachineConnectorFn } from './connectors.ts';
import type {
  CallbackHandler, HandlerResult, MachineHookEvent, MachineRun, MachineHookSink, MachineNode, StepHandler, TimeoutHandler, TimeoutWhen,
} from './types.ts';

/**
 * A status schema: a zod enum (anything with `options` and a Standard Schema).
 *
 * @example
 * const Status = z.enum(['created', 'done']);
 */
export type StatusSchema<S extends string> = StandardSchemaV1<S> & { readonly options: readonly S[] };

/**
 * Options of `defineStateMachine`.
 *
 * @example
 * defineStateMachine({ name: 'signup', status: Status, object: Signup, retry: { maxAttempts: 5 }, timeout: '30s' })
 */
export interface StateMachineOptions<S extends string, O extends StandardSchemaV1> {
  /** The machine's workflow name (runs are `workflow = name`). */
  name: string;
  /** The statuses, e.g. `z.enum(['created', 'verified', 'done'])`. */
  status: StatusSchema<S>;
  /** The schema of the object each run carries; checked on trigger and after every handler. */
  object: O;
  version?: string | undefined;
  queue?: string | undefined;
  /** Retry policy of each handler step (default: 3 attempts, exponential from 1s). */
  retry?: RetryPolicy | undefined;
  /** Per-attempt timeout of each handler. */
  timeout?: Duration | undefined;
  /** The status a trigger starts in when it names none (default: the first status given a handler). */
  initial?: S | undefined;
  /**
   * Start a new execution of the run (continue-as-new: same run id, its
   * history so far dropped) after this many transitions, so a long-lived
   * run stays under the history limit (default 1000).
   */
  continueAfter?: number | undefined;
}

/**
 * The built state machine: its workflow for `createWorker`, and its definition for diagrams.
 *
 * @example
 * const worker = createWorker({ pool, workflows: [signup.workflow] });
 */
export interface StateMachine<S extends string = string, T = unknown> {
  readonly kind: 'trellis.state-machine';
  readonly name: string;
  readonly statuses: readonly S[];
  readonly initial: S;
  /** Handlers per status, in the order they were added. */
  readonly nodes: ReadonlyMap<S, Readonly<MachineNode<S, T>>>;
  readonly object: StandardSchemaV1<unknown, T>;
  readonly pauseAfterErrors: number | undefined;
  /** `resumeAfter` in milliseconds, if set: a parked run is resumed after it. */
  readonly resumeAfterMs?: number | undefined;
  /** `resumeAfter`'s `maxResumes`, if set: at most that many automatic resumes. */
  readonly maxResumes?: number | undefined;
  /** Applied to the object when its data is deleted (`deleteData`); default: `{}`. */
  readonly deleteData: (object: T) => unknown;
  /** Its connectors (`.connector`), run by `runMachineConnectors`. */
  readonly connectors: readonly MachineConnector<S, T>[];
  /** The ordinary workflow it compiles to: give it to `createWorker({ workflows })`. */
  readonly workflow: WorkflowDefinition<{ status: S; object: T }, MachineOutput<S, T>>;
}

/**
 * The builder `defineStateMachine` returns; `.build()` freezes it.
 *
 * @example
 * const machine = defineStateMachine({ name: 'm', status: z.enum(['a', 'b']), object: z.object({}) }).step('a', () => 'b', 'b').build();
 */
export class StateMachineBuilder<S extends string, T> {
  private readonly nodes = new Map<S, MachineNode<S, T>>();
  private readonly hooks: { complete?: HookFn<S, T> | undefined; cancel?: HookFn<S, T> | undefined; pause?: HookFn<S, T> | undefined } = {};
  private pauseAfter: number | undefined;
  private resumeAfterMs: number | undefined;
  private maxResumes: number | undefined;
  private deleter: ((object: T) => unknown) | undefined;
  private sink: MachineHookSink<S, T> | undefined;
  private readonly connectorList: MachineConnector<S, T>[] = [];
  private built = false;

  constructor(private readonly options: StateMachineOptions<S, StandardSchemaV1<unknown, T>>) {
    assertName(options.name, 'workflow');
    if (!Array.isArray(options.status?.options) || options.status.options.length === 0) {
      throw new ValidationError(`machine ${options.name}: status must be a zod enum of at least one status`);
    }
    for (const status of options.status.options) assertName(status, 'status');
    if (typeof options.object?.['~standard']?.validate !== 'function') {
      throw new ValidationError(`machine ${options.name}: object must be a zod (or Standard Schema) schema`);
    }
    if (options.initial !== undefined) this.known(options.initial, 'initial status');
    if (options.continueAfter !== undefined && (!Number.isInteger(options.continueAfter) || options.continueAfter < 1)) {
      throw new ValidationError(`machine ${options.name}: continueAfter must be a positive integer`);
    }
    if (options.timeout !== undefined) toTimeoutMs(options.timeout, `machine ${options.name}: timeout`);
    checkRetryPolicy(options.retry, `machine ${options.name}: retry`);
  }

  /**
   * A step: runs as soon as a run enters `from`, and returns one of `allowedTo` (or an outcome).
   * A literal status outside `allowedTo` is a compile error, in sync and async handlers alike
   * (no `as const` needed); at run time it is an IllegalTransitionError.
   */
  step<const D extends S>(from: S, fn: (run: MachineRun<S, T>) => ReturnsHint<NoInfer<D>>, ...allowedTo: [D, ...D[]]): this;
  step<const D extends S>(from: S, fn: (run: MachineRun<S, T>) => Returns<NoInfer<D>>, ...allowedTo: [D, ...D[]]): this;
  step(from: S, fn: StepHandler<S, T>, ...allowedTo: S[]): this {
    this.callable(fn, `the step of ${from}`);
    return this.add(from, 'step', { fn, to: this.destinations(from, allowedTo) });
  }

  /** A callback: in `from`, wait for an external payload (`callback(foreignId, from, payload)` or `trellis.machine_callback`). */
  callback<const D extends S>(from: S, fn: (run: MachineRun<S, T>, payload: unknown) => ReturnsHint<NoInfer<D>>, ...allowedTo: [D, ...D[]]): this;
  callback<const D extends S>(from: S, fn: (run: MachineRun<S, T>, payload: unknown) => Returns<NoInfer<D>>, ...allowedTo: [D, ...D[]]): this;
  callback(from: S, fn: CallbackHandler<S, T>, ...allowedTo: S[]): this {
    this.callable(fn, `the callback of ${from}`);
    return this.add(from, 'callback', { fn, to: this.destinations(from, allowedTo) });
  }

  /** A timeout: in `from`, fire `{ after }` the run entered it, or `{ at }` a time computed from the run. */
  timeout<const D extends S>(from: S, when: TimeoutWhen<S, T>, fn: (run: MachineRun<S, T>, firedAt: Date) => ReturnsHint<NoInfer<D>>,
    ...allowedTo: [D, ...D[]]): this;
  timeout<const D extends S>(from: S, when: TimeoutWhen<S, T>, fn: (run: MachineRun<S, T>, firedAt: Date) => Returns<NoInfer<D>>,
    ...allowedTo: [D, ...D[]]): this;
  timeout(from: S, when: TimeoutWhen<S, T>, fn: TimeoutHandler<S, T>, ...allowedTo: S[]): this {
    if (when?.after !== undefined) toMs(when.after, `timeout of ${from}`);
    else if (typeof when?.at !== 'function') throw new ValidationError(`timeout of ${from}: give { after: duration } or { at: (run) => Date }`);
    this.callable(fn, `the timeout of ${from}`);
    return this.add(from, 'timeout', { when, fn, to: this.destinations(from, allowedTo) });
  }

  /** Park a run (status `paused`) after this many consecutive failed attempts of a handler; resume it to retry. */
  pauseAfterErrors(count: number): this {
    if (!Number.isInteger(count) || count < 1) throw new ValidationError(`machine ${this.options.name}: pauseAfterErrors needs a positive integer`);
    this.pauseAfter = count;
    return this;
  }

  /**
   * Called when a run completes (reaches a status without handlers). Durable:
   * delivered through the outbox's lifecycle hooks by a worker serving the
   * machine, at least once, retried, parked when it keeps failing (docs/events.md).
   */
  onComplete(fn: HookFn<S, T>): this {
    this.hooks.complete = this.callable(fn, 'onComplete');
    return this;
  }

  /** Called when a run ends cancelled (by a handler or from outside). Durable, as `onComplete`. */
  onCancel(fn: HookFn<S, T>): this {
    this.hooks.cancel = this.callable(fn, 'onCancel');
    return this;
  }

  /**
   * Resume a run parked after `pauseAfterErrors` (or by a handler's `pause`)
   * this long after it was parked (luno's pause retry): see the workflow
   * options `resumeAfter` and `maxResumes` (at most that many automatic
   * resumes, then parked for an operator).
   *
   * @example
   * defineStateMachine({ name: 'payout', status: z.enum(['new', 'paid']), object: z.object({}) })
   *   .step('new', () => 'paid', 'paid').pauseAfterErrors(3).resumeAfter('1 hour', { maxResumes: 24 });
   */
  resumeAfter(after: Duration, options: { maxResumes?: number | undefined } = {}): this {
    this.resumeAfterMs = checkResumeAfter(after, `machine ${this.options.name}`);
    if (typeof options !== 'object' || options === null || Array.isArray(options)
      || Object.keys(options).some((k) => k !== 'maxResumes')) {
      throw new ValidationError(`machine ${this.options.name}: resumeAfter's options are { maxResumes? }, not ${quoteValue(options)}`);
    }
    this.maxResumes = checkMaxResumes(options.maxResumes, this.resumeAfterMs, `machine ${this.options.name}`);
    return this;
  }

  /**
   * Called when the run is parked: a handler's `pause`, `pauseAfterErrors`
   * reached, or a pause from outside. Durable, as `onComplete`; the event's
   * status and object are the run's as the hook runs.
   */
  onPause(fn: HookFn<S, T>): this {
    this.hooks.pause = this.callable(fn, 'onPause');
    return this;
  }

  /** Send every hook event (complete, cancel, pause) to `sink` instead of the `onComplete`/`onCancel`/`onPause` functions; delivered durably as they are. */
  hookSink(sink: MachineHookSink<S, T>): this {
    this.callable(sink?.emit, 'hookSink\'s emit');
    this.sink = sink;
    return this;
  }

  /**
   * An event stream that triggers runs of this machine or advances them
   * (luno/workflow's connectors): `fn` gets each event of `source` and the
   * machine bound to the batch's transaction, with the event's id as the
   * trigger key and callback id (a redelivered event changes nothing).
   * `runMachineConnectors` runs them. Sources: `outboxConnector` (another
   * Trellis workflow's events), `tableConnector`, or your own `Connector`.
   */
  connector(source: Connector, fn: MachineConnectorFn<S, T>): this {
    if (this.built) throw new ValidationError(`machine ${this.options.name} was built already`);
    if (typeof source?.read !== 'function') throw new ValidationError(`machine ${this.options.name}: a connector source needs read(db, cursor, limit)`);
    assertName(source.name, 'connector');
    if (typeof fn !== 'function') throw new ValidationError(`machine ${this.options.name}: connector ${source.name} needs a function`);
    if (this.connectorList.some((c) => c.source.name === source.name)) {
      throw new ValidationError(`machine ${this.options.name}: connector ${source.name} was added already`);
    }
    this.connectorList.push(Object.freeze({ source, fn }));
    return this;
  }

  /** What the object becomes when its data is deleted (PII). Default: `{}`. */
  deleteData(fn: (object: T) => unknown): this {
    this.deleter = this.callable(fn, 'deleteData');
    return this;
  }

  /** Freeze the definition and compile it to a workflow. */
  build(): StateMachine<S, T> {
    if (this.built) throw new ValidationError(`machine ${this.options.name} was built already`);
    if (this.nodes.size === 0) throw new ValidationError(`machine ${this.options.name} has no steps, callbacks or timeouts`);
    this.built = true;
    const hooks = this.hooks;
    // The hooks are durable (delivered through the outbox); only the events listened to are declared.
    const events = this.sink ? (['complete', 'cancel', 'pause'] as const) : (['complete', 'cancel', 'pause'] as const).filter((e) => hooks[e]);
    const sink: MachineHookSink<S, T> | undefined = this.sink ?? (events.length === 0 ? undefined : {
      emit: (event: MachineHookEvent<S, T>) => hooks[event.event]?.(event),
    });
    const initial = this.options.initial ?? (this.nodes.keys().next().value as S);
    const machine = {
      kind: 'trellis.state-machine' as const,
      name: this.options.name,
      statuses: Object.freeze([...this.options.status.options]),
      initial,
      nodes: this.nodes as ReadonlyMap<S, MachineNode<S, T>>,
      object: this.options.object,
      pauseAfterErrors: this.pauseAfter,
      resumeAfterMs: this.resumeAfterMs,
      maxResumes: this.maxResumes,
      deleteData: this.deleter ?? (() => ({})),
      connectors: Object.freeze([...this.connectorList]),
    };
    const workflow = compileMachine(machine, this.options, sink, events);
    return Object.freeze({ ...machine, workflow });
  }

  private known(status: unknown, what: string): S {
    if (typeof status !== 'string' || !this.options.status.options.includes(status as S)) {
      throw new ValidationError(`machine ${this.options.name}: unknown ${what} ${JSON.stringify(String(status).slice(0, 60))}`);
    }
    return status as S;
  }

  private destinations(from: S, to: S[]): readonly S[] {
    this.known(from, 'status');
    if (to.length === 0) throw new ValidationError(`machine ${this.options.name}: a handler of ${from} needs at least one allowed destination`);
    for (const status of to) this.known(status, 'destination status');
    return Object.freeze([...new Set(to)]);
  }

  /** `fn`, if it is a function and the machine is not built yet; else ValidationError naming `what`. */
  private callable<F>(fn: F, what: string): F {
    if (this.built) throw new ValidationError(`machine ${this.options.name} was built already`);
    if (typeof fn !== 'function') throw new ValidationError(`machine ${this.options.name}: ${what} must be a function, not ${quoteValue(fn)}`);
    return fn;
  }

  private add<K extends keyof MachineNode<S, T>>(from: S, kind: K, handler: NonNullable<MachineNode<S, T>[K]>): this {
    if (this.built) throw new ValidationError(`machine ${this.options.name} was built already`);
    const node = this.nodes.get(from) ?? {};
    if (node[kind]) throw new ValidationError(`machine ${this.options.name}: ${from} has a ${kind} already`);
    if (kind === 'step' ? node.callback || node.timeout : node.step) {
      throw new ValidationError(`machine ${this.options.name}: ${from} cannot have both a step and a callback or timeout (a step runs at once)`);
    }
    node[kind] = handler;
    this.nodes.set(from, node);
    return this;
  }
}

/** What a handler with destinations `D` may return, sync or async. */
type Returns<D extends string> = HandlerResult<D> | Promise<HandlerResult<D>>;
/**
 * Only a typing hint (no value has this type): as the first overload's return
 * type it makes TypeScript keep a literal status returned by an async handler
 * (`async () => 'done'`) instead of widening it to `string` — the async
 * contextual type must be a Promise for that — and the second overload then
 * checks it against the allowed destinations.
 */
type ReturnsHint<D extends string> = Promise<HandlerResult<D>> & HandlerResult<D>;

type HookFn<S extends string, T> = (event: MachineHookEvent<S, T>) => Promise<unknown> | unknown;

/**
 * Define a state machine. Chain `.step`, `.callback`, `.timeout` and the
 * options, then `.build()`.
 *
 * @example
 * const Status = z.enum(['created', 'emailed', 'verified', 'expired']);
 * const signup = defineStateMachine({ name: 'signup', status: Status, object: z.object({ email: z.string() }) })
 *   .step('created', async (run) => { await mail.send(run.object.email); return 'emailed'; }, 'emailed')
 *   .callback('emailed', (run, payload) => ((payload as { ok: boolean }).ok ? 'verified' : run.skip()), 'verified')
 *   .timeout('emailed', { after: '2 days' }, () => 'expired', 'expired')
 *   .build();
 */
export function defineStateMachine<S extends string, O extends StandardSchemaV1>(
  options: StateMachineOptions<S, O>,
): StateMachineBuilder<S, InferOutput<O>> {
  return new StateMachineBuilder<S, InferOutput<O>>(options as never);
}
