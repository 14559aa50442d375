/** The shapes of a state machine definition: statuses, handlers, outcomes, hooks. */
import type { StepContext } from '../workflow/context.ts';
import type { Duration } from '../protocol/duration.ts';

const OUTCOME = Symbol.for('trellis.machine-outcome');

/**
 * What a handler may return instead of a next status.
 *
 * @example
 * const mirror = defineStateMachine({ name: 'mirror', status: z.enum(['syncing', 'synced']), object: z.object({ tries: z.number() }) })
 *   .step('syncing', (run) => {
 *     run.object.tries += 1;
 *     return remote.busy ? run.saveAndRepeat() : 'synced';
 *   }, 'synced')
 *   .build();
 */
export type MachineOutcome =
  | { readonly [OUTCOME]: 'pause'; readonly reason: string }
  | { readonly [OUTCOME]: 'cancel'; readonly reason: string }
  | { readonly [OUTCOME]: 'skip' }
  | { readonly [OUTCOME]: 'repeat' };

export function outcomeOf(value: unknown): MachineOutcome | undefined {
  return typeof value === 'object' && value !== null && OUTCOME in value ? (value as MachineOutcome) : undefined;
}

export function outcomeKind(outcome: MachineOutcome): 'pause' | 'cancel' | 'skip' | 'repeat' {
  return outcome[OUTCOME];
}

export function makeOutcome(kind: 'pause' | 'cancel', reason: string): MachineOutcome;
export function makeOutcome(kind: 'skip' | 'repeat'): MachineOutcome;
export function makeOutcome(kind: 'pause' | 'cancel' | 'skip' | 'repeat', reason?: string): MachineOutcome {
  return Object.freeze(kind === 'pause' || kind === 'cancel' ? { [OUTCOME]: kind, reason: reason ?? kind } : { [OUTCOME]: kind }) as MachineOutcome;
}

/**
 * The run as a handler sees it: its status and a copy of its object to
 * change. Return the next status, or one of the outcomes below.
 *
 * @example
 * const signup = defineStateMachine({ name: 'signup', status: Status, object: Signup })
 *   .step('created', async (run) => {
 *     run.object.mailedAt = new Date().toISOString();
 *     await mail.send(run.object.email, { idempotencyKey: run.step.idempotencyKey });
 *     return 'emailed'; // a literal outside the allowed destinations would not compile
 *   }, 'emailed')
 *   .build();
 */
export interface MachineRun<S extends string, T> {
  readonly runId: string;
  readonly foreignId: string;
  /** The status the handler runs for. */
  readonly status: S;
  /** The typed object; changes are saved with the transition (validated against the schema first). */
  object: T;
  /** The step attempt (retries, timeout signal, idempotency key). */
  readonly step: StepContext;
  /** Park the run (status `paused`); after resume this handler runs again. Object changes are not saved. */
  pause(reason?: string): MachineOutcome;
  /** Save the object and end the run as `cancelled`. */
  cancel(reason?: string): MachineOutcome;
  /** Save nothing and stay: a step runs again, a callback waits for the next one, a timeout is re-armed. */
  skip(): MachineOutcome;
  /** Save the object and stay: the same handler runs again (a step) or waits again (callback, timeout). */
  saveAndRepeat(): MachineOutcome;
}

export type HandlerResult<S extends string> = S | MachineOutcome;
export type StepHandler<S extends string, T> = (run: MachineRun<S, T>) => Promise<HandlerResult<S>> | HandlerResult<S>;
export type CallbackHandler<S extends string, T> = (run: MachineRun<S, T>, payload: unknown) => Promise<HandlerResult<S>> | HandlerResult<S>;
export type TimeoutHandler<S extends string, T> = (run: MachineRun<S, T>, firedAt: Date) => Promise<HandlerResult<S>> | HandlerResult<S>;

/**
 * When a timeout fires: a fixed time after the run entered the status, or at a time computed from the run (recorded once).
 *
 * @example
 * const trials = defineStateMachine({ name: 'trials', status: z.enum(['trial', 'expired']), object: z.object({ trialEndsAt: z.string() }) })
 *   .timeout('trial', { at: (run) => new Date(run.object.trialEndsAt) }, () => 'expired', 'expired')
 *   .build();
 */
export type TimeoutWhen<S extends string, T> =
  | { after: Duration; at?: undefined }
  | { at: (run: { status: S; object: T; foreignId: string }) => Date; after?: undefined };

export interface MachineNode<S extends string, T> {
  step?: { fn: StepHandler<S, T>; to: readonly S[] } | undefined;
  callback?: { fn: CallbackHandler<S, T>; to: readonly S[] } | undefined;
  timeout?: { when: TimeoutWhen<S, T>; fn: TimeoutHandler<S, T>; to: readonly S[] } | undefined;
}

/**
 * What a machine hook is told: the run's machine status and object as they
 * are when the hook runs (for `onPause` on a run resumed before the delivery
 * ran, the status and object it moved to), and `reason`, the run's error
 * message as the move that fired the hook left it (kept with the delivery:
 * a resumed run's `onPause` still gets the pause's reason).
 *
 * @example
 * const signup = defineStateMachine({ name: 'signup', status: Status, object: Signup })
 *   .step('created', (run) => (run.object.email.includes('@') ? 'emailed' : run.pause('no valid email')), 'emailed')
 *   .onPause(({ machine, foreignId, status, reason }) => pager.alert(`${machine} ${foreignId} paused in ${status}: ${reason}`))
 *   .build();
 */
export interface MachineHookEvent<S extends string, T> {
  event: 'complete' | 'cancel' | 'pause';
  machine: string;
  runId: string;
  foreignId: string;
  status: S;
  object: T;
  reason?: string | undefined;
}

/**
 * Where machine hook events go. The default calls the `onComplete`,
 * `onCancel` and `onPause` functions; `hookSink` replaces them with one
 * function for every event. Either way the events are delivered durably by
 * the outbox's lifecycle hooks (at least once: make `emit` idempotent, the
 * run id is a good key).
 *
 * @example
 * const signup = defineStateMachine({ name: 'signup', status: Status, object: Signup })
 *   .step('created', () => 'emailed', 'emailed')
 *   .hookSink({ emit: (event) => queue.publish('machine-events', event) })
 *   .build();
 */
export interface MachineHookSink<S extends string, T> {
  emit(event: MachineHookEvent<S, T>): Promise<unknown> | unknown;
}
