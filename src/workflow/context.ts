/** What workflow code sees: the durable context and the step options. */
import type { WorkflowDefinition, WorkflowInput, WorkflowOutput } from './define.ts';
import type { Duration } from '../protocol/duration.ts';
import type { RetryPolicy } from './retry.ts';
import type { SignalDefinition, SignalResult } from './signal.ts';
import type { Logger } from '../protocol/logger.ts';
import type { Stored } from '../protocol/stored.ts';

/**
 * Handed to a step body on every attempt.
 *
 * @example
 * await ctx.step('charge', ({ signal, attempt, idempotencyKey }) => {
 *   ctx.log.info('charging', { attempt });
 *   return charge(orderId, { idempotencyKey, signal });
 * }, { retry: { maxAttempts: 5 }, timeout: '30s' });
 */
export interface StepContext {
  /** Aborted when the attempt times out, the run is cancelled or the worker loses its lease. Pass it to `fetch` and the like. */
  signal: AbortSignal;
  /** 1 for the first attempt, 2 for the first retry, … (an attempt interrupted by a crash counts too). */
  attempt: number;
  /** Stable across attempts and replays: `${runId}:${execution}:${seq}`. Pass it to external APIs. */
  idempotencyKey: string;
  /** The id of the run the step belongs to. */
  runId: string;
  /**
   * The newest details `saveProgress` saved for this step: by an earlier
   * attempt (one that failed, or whose worker died) or by this one;
   * `undefined` when none was saved. A retry starts where the last attempt
   * got to instead of from the beginning. (A copy: changing it changes
   * nothing saved.) Always `undefined` in a `ctx.transaction` body.
   *
   * @example
   * await ctx.step('import', async (step) => {
   *   const from = (step.progress as { row: number } | undefined)?.row ?? 0;
   *   for (let row = from; row < 1_000_000; row += 1000) {
   *     await importRows(row, row + 1000);
   *     await step.saveProgress({ row: row + 1000 });
   *   }
   * });
   */
  readonly progress: unknown;
  /**
   * Save how far this attempt got (any JSON within `max_payload_bytes`,
   * stored as a step's result is: a Date becomes its ISO string),
   * for the next attempt if this one fails or its worker dies: it reads
   * them as `step.progress`. Resolves once saved (committed, fenced by the
   * run's lease: `LeaseLostError` if the run is no longer this worker's).
   * Saves made faster than the worker writes are merged: only the newest is
   * written. A save that changes the progress also counts as the run's
   * progress for `max_lease_expiries`, so a long step on workers that keep
   * dying is retried, not parked, while it advances. Refused
   * (`ValidationError`) after the attempt ended and in a `ctx.transaction`
   * body (keep progress in your own tables there, in `tx`);
   * `PayloadTooLargeError` for details over the limit.
   *
   * @example
   * await ctx.step('reindex', async (step) => {
   *   for (const id of ids) {
   *     await reindex(id);
   *     await step.saveProgress({ done: id });
   *   }
   * });
   */
  saveProgress(details: unknown): Promise<void>;
}

/**
 * Options of `ctx.step`.
 *
 * @example
 * await ctx.step('fetch-rates', ({ signal }) => fetchJson('https://rates.example/eur', { signal }), { retry: { maxAttempts: 5 }, timeout: '10s' });
 */
export interface StepOptions {
  /**
   * Retry policy for this step (default: 3 attempts, exponential from 1s).
   *
   * @example
   * await ctx.step('notify', () => sendEmail('ada@example.com', 'hi'), { retry: { maxAttempts: 10, backoff: 'exponential', maxDelay: '5 minutes' } });
   */
  retry?: RetryPolicy | undefined;
  /**
   * Per-attempt timeout; the attempt's AbortSignal fires and it counts as a failed attempt.
   *
   * @example
   * await ctx.step('render', ({ signal }) => fetchJson('https://render.example/pdf', { signal }), { timeout: '2 minutes' });
   */
  timeout?: Duration | undefined;
}

/**
 * Handed to a `ctx.transaction` body on every attempt: a step context and
 * `tx`, a connection inside the transaction that commits with the step's
 * result. Run your queries on `tx` (or pass it as `{ tx }` to `client.start`,
 * `client.signal` and the other client calls that take one); do not commit
 * or roll it back yourself.
 *
 * @example
 * await ctx.transaction('reserve', async ({ tx }) => {
 *   await tx.query('update stock set held = held + 1 where order_id = $1', [orderId]);
 * });
 */
export interface TransactionStepContext extends StepContext {
  /**
   * The transaction's connection: a node-postgres `PoolClient` of the
   * worker's pool (typed by the part Trellis promises; cast it for the rest
   * of pg's API). It is valid only until the body's promise settles.
   */
  tx: TransactionClient;
}

/**
 * The connection a `ctx.transaction` body runs its queries on: `query(text,
 * values)` as in node-postgres. It is also what the client calls take as
 * `tx`.
 *
 * @example
 * await ctx.transaction('count', async ({ tx }) => {
 *   const { rows } = await tx.query<{ n: number }>('select count(*)::int as n from orders');
 *   return rows[0]?.n ?? 0;
 * });
 */
export interface TransactionClient {
  query<R = any>(text: string, values?: unknown[]): Promise<{ rows: R[]; rowCount: number | null }>;
}

/**
 * Options of `ctx.transaction`: those of a step, and the transaction's
 * isolation level.
 *
 * @example
 * await ctx.transaction('book-seat', ({ tx }) => tx.query('update seats set order_id = $1 where id = (select min(id) from seats where order_id is null)', [orderId]),
 *   { isolation: 'serializable', retry: { maxAttempts: 5 } });
 */
export interface TransactionOptions extends StepOptions {
  /**
   * The transaction's isolation level (default: the database's, normally
   * read committed). A serialization failure or a deadlock rolls the
   * transaction back and runs the body again in the same attempt.
   *
   * @example
   * await ctx.transaction('mark-paid', ({ tx }) => tx.query('update orders set paid = true where id = $1', [orderId]), { isolation: 'serializable' });
   */
  isolation?: 'read committed' | 'repeatable read' | 'serializable' | undefined;
}

/**
 * Options of `ctx.child`.
 *
 * @example
 * const receipt = await ctx.child(fulfil, { orderId }, { key: `fulfil-${orderId}`, queue: 'fulfilment' });
 */
export interface ChildOptions {
  /**
   * Name of the call in the parent's history (default: the child workflow's name).
   *
   * @example
   * await Promise.all(['eu', 'us'].map((region) => ctx.child(fulfil, { orderId }, { name: `fulfil-${region}` })));
   */
  name?: string | undefined;
  /**
   * Idempotency key of the child run; a run already holding it is awaited instead.
   *
   * @example
   * await ctx.child(fulfil, { orderId }, { key: `fulfil-${orderId}` });
   */
  key?: string | undefined;
  /**
   * Queue of the child run (default: the child workflow's queue).
   *
   * @example
   * await ctx.child(fulfil, { orderId }, { queue: 'warehouse' });
   */
  queue?: string | undefined;
  /**
   * What happens to the child when the parent ends (cancelled, failed or completed) while it runs: 'cancel' (default) or 'abandon'.
   *
   * @example
   * await ctx.child(fulfil, { orderId }, { onParentCancel: 'abandon' }); // keeps running if the parent is cancelled
   */
  onParentCancel?: 'cancel' | 'abandon' | undefined;
  /**
   * Cancel the child run if it has not finished by this time (a Date or an
   * ISO timestamp; take it from `ctx.now()`, not `new Date()`, so the call
   * is the same on a replay). Not with `timeLimit`. The parent then gets
   * `ChildFailedError` ("was cancelled: deadline … passed"). See
   * docs/workflows.md#deadlines.
   *
   * @example
   * await ctx.child(fulfil, { orderId }, { deadline: new Date(ctx.now().getTime() + 86_400_000) });
   */
  deadline?: Date | string | undefined;
  /**
   * The child run's deadline as a duration from when the parent starts it.
   * Not with `deadline`.
   *
   * @example
   * await ctx.child(fulfil, { orderId }, { timeLimit: '15 minutes' });
   */
  timeLimit?: Duration | undefined;
}

/**
 * Options of `ctx.waitForRun`.
 *
 * @example
 * const invoice = await ctx.waitForRun<{ total: number }>(runId, { name: 'invoice' });
 */
export interface WaitForRunOptions {
  /**
   * Name of the call in this run's history (default: `run:<id>`). Give one
   * when the id comes from something that may change between deploys.
   *
   * @example
   * await ctx.waitForRun(runId, { name: 'import' });
   */
  name?: string | undefined;
  /**
   * Give up after this long (engine time, from when the wait is first
   * recorded): the call throws `TimeoutError` (recorded, so a replay throws
   * it too), and the awaited run goes on. Default: wait for ever.
   *
   * @example
   * try {
   *   await ctx.waitForRun(runId, { timeout: '1 day' });
   * } catch (error) {
   *   if (!(error instanceof TimeoutError)) throw error;
   * }
   */
  timeout?: Duration | undefined;
}

/** The refusal `ctx.replyError` sends back to a request's caller. */
export interface ReplyErrorInfo {
  /** What the caller's `RequestRejectedError` says. */
  message: string;
  /** A short code the caller can branch on (`RequestRejectedError.details.error.code`). */
  code?: string | undefined;
  /** JSON the caller gets in `details.error.details`. */
  details?: Record<string, unknown> | undefined;
}

/**
 * Options of `ctx.waitForSignal`.
 *
 * @example
 * const answer = await ctx.waitForSignal('approved', { schema: z.object({ by: z.string() }), timeout: '3 days' });
 */
export interface WaitForSignalOptions<T> {
  /**
   * Validate the payload (a signal definition carries its own schema).
   *
   * @example
   * const vote = await ctx.waitForSignal('vote', { schema: z.enum(['yes', 'no']) });
   */
  schema?: import('./standard-schema.ts').StandardSchemaV1<unknown, T> | undefined;
  /**
   * Give up after this long: resolves `{ timedOut: true }`.
   *
   * @example
   * const answer = await ctx.waitForSignal(approved, { timeout: '1 hour 30 minutes' });
   * if (answer.timedOut) return 'expired';
   */
  timeout?: Duration | undefined;
  /**
   * Name of the call in the history (default: the signal name).
   *
   * @example
   * const second = await ctx.waitForSignal(approved, { name: 'second-approval' });
   */
  name?: string | undefined;
}

/** One settled branch of `ctx.race`. */
export type RaceResult<B extends Record<string, Promise<unknown>>> = {
  [K in keyof B]: { key: K; value: Awaited<B[K]> };
}[keyof B];

export type { Logger } from '../protocol/logger.ts';

/**
 * The durable context of a running workflow. Everything non-deterministic
 * (I/O, time, randomness) goes through it so a replay sees the same values.
 * `TInput` is what the workflow's input schema takes (`continueAsNew`'s
 * argument); a helper that takes any workflow's context names it
 * `WorkflowContext` (unknown).
 */
export interface WorkflowContext<TInput = unknown> {
  /** The run's id. */
  readonly runId: string;
  /** The workflow's name. */
  readonly workflow: string;
  /** The workflow version the run is pinned to. */
  readonly version: string;
  /** How many times this run has been claimed (1 on the first execution). */
  readonly attempt: number;
  /**
   * The run's metadata as this execution found it when it began: what the
   * run was started with (`{}` if none), and the fields set since by
   * `setMetadata` calls of earlier executions or attempts and by operators
   * (`client.setMetadata`). Not updated by this execution's own
   * `setMetadata` calls; a replay can see fields the first execution set
   * only later, so decide on the input or on a step's result, not on fields
   * the run sets itself.
   */
  readonly metadata: Record<string, unknown>;
  /**
   * The run's deadline, or null when it has none (see the start options
   * `deadline` and `timeLimit`). It is engine time, as `ctx.now()` is: once
   * it passes, the run is cancelled. It stays the same for the whole run
   * (through retries of steps, waits and continue-as-new); only
   * `run_retry` of a run that ended clears a deadline that has passed.
   *
   * @example
   * // Give a call no longer than the run has left (and at most a minute).
   * const left = ctx.deadline ? ctx.deadline.getTime() - ctx.now().getTime() : Infinity;
   * await ctx.step('quote', ({ signal }) => fetchJson('https://quotes.example/q', { signal }), { timeout: Math.max(1, Math.min(60_000, left)) });
   */
  readonly deadline: Date | null;
  /** Aborted when this worker stops executing the run (lease lost, shutdown). */
  readonly signal: AbortSignal;
  /** A logger that adds the run id and workflow name to every line. */
  readonly log: Logger;
  /**
   * Run `fn` once and checkpoint its JSON result; replays return the recorded
   * result without running it. Calls are identified by call order; a replay
   * hands results back in the order they first reached the code, so
   * `Promise.all` branches of sequential calls replay as they ran. Keep the
   * calls a given sequence of results leads to deterministic.
   *
   * @example
   * const rows = await Promise.all(ids.map(async (id) => {
   *   const row = await ctx.step('fetch', () => fetchJson(`https://api.example/items/${id}`));
   *   return ctx.step('save', () => store.put(row));
   * }));
   */
  step<T>(name: string, fn: (step: StepContext) => Promise<T> | T, options?: StepOptions): Promise<Stored<T>>;
  /**
   * A step whose body runs inside a database transaction that also records
   * its result: the body's writes and the step's checkpoint commit together
   * or not at all, so its database effects happen exactly once, however
   * often the worker crashes, loses its lease or retries. The body gets `tx`
   * (a connection of the worker's pool, in the transaction) and the step
   * context; an error it throws rolls everything back and counts as a
   * failed attempt (the retry policy applies, as for `ctx.step`). A
   * serialization failure, a deadlock or a lost connection before the
   * commit runs the body again in a new transaction (the same attempt).
   * Keep effects outside the database out of the body: those may happen
   * again. Replays return the recorded result, as for `ctx.step`.
   *
   * @example
   * // The order row and the step's record commit together.
   * const invoiceId = await ctx.transaction('create-invoice', async ({ tx }) => {
   *   const { rows } = await tx.query<{ id: number }>('insert into invoices (order_id) values ($1) returning id', [orderId]);
   *   return rows[0]?.id;
   * });
   * // Start another workflow or signal another run exactly once: pass `tx` to the client.
   * await ctx.transaction('notify-shipping', ({ tx }) => client.signal({ workflow: 'shipment', key: `order-${orderId}` }, 'paid', { invoiceId }, { tx }));
   */
  transaction<T>(name: string, fn: (step: TransactionStepContext) => Promise<T> | T, options?: TransactionOptions): Promise<Stored<T>>;
  /**
   * The time, recorded once and replayed.
   *
   * @example
   * const dueAt = new Date(ctx.now().getTime() + 30 * 86_400_000); // the same on every replay
   */
  now(): Date;
  /**
   * A number in [0, 1), recorded once and replayed.
   *
   * @example
   * const variant = ctx.random() < 0.5 ? 'a' : 'b';
   */
  random(): number;
  /**
   * A random UUID, recorded once and replayed.
   *
   * @example
   * const invoiceId = ctx.uuid();
   * await ctx.step('bill', () => billing.create({ id: invoiceId }));
   */
  uuid(): string;
  /**
   * Publish a JSON value under `key` for readers outside the run while it
   * goes on: `client.waitForValue(runId, key)` (an HTTP handler waiting
   * for a payment link while the run waits for the payment), `client.value`,
   * `trellis.run_value(run, key)` in SQL. It is a call of the run's history
   * (kind `value`), so it commits with the progress before it and is not
   * written again on a replay; the promise resolves once it has committed.
   * Setting a key again replaces what readers see. `key` follows the rules
   * of step names (keys starting with `reply:` are `ctx.reply`'s); the
   * value the payload limit (`max_payload_bytes`); a value that cannot be
   * stored rejects with `ValidationError` or `PayloadTooLargeError` and
   * records nothing.
   *
   * @example
   * const session = await ctx.step('checkout', () => payments.createSession(orderId));
   * await ctx.setValue('payment-url', session.url);
   * const paid = await ctx.waitForSignal<{ ok: boolean }>('paid', { timeout: '1 hour' });
   */
  setValue(key: string, value: unknown): Promise<void>;
  /**
   * Merge `fields` into the run's metadata, where searches find it:
   * `client.list({ metadata })`, `trellis ls --metadata`, the bulk controls'
   * filters, `metadata @> ...` in SQL (with the index recipes of
   * docs/operations.md). A field given a value is set; a field given `null`
   * is removed; fields not named are kept. So a run can say how far it got
   * (an order's state, the customer's tier it looked up) for the searches
   * an operator or a dashboard makes. Recorded as a call (kind `metadata`),
   * so it commits with the progress before it and is not written again on
   * a replay; the promise resolves once it has committed. Each value must
   * be JSON (ValidationError for `undefined`, a function, a Date, NaN…) and
   * `traceparent` and `tracestate` belong to tracing: such a call records
   * nothing. The merged metadata must fit `max_payload_bytes` unless the
   * patch shrinks it (PayloadTooLargeError, recorded as a failed call, so a
   * replay refuses it again). An empty `fields` records nothing.
   *
   * @example
   * await ctx.setMetadata({ stage: 'shipped', carrier: 'dhl' });
   * await ctx.setMetadata({ carrier: null }); // removes the field
   */
  setMetadata(fields: Record<string, unknown>): Promise<void>;
  /**
   * Append `value` to the run's stream `key`: readers get every entry, in
   * order (`client.readStream(runId, key)`, `trellis.run_stream`), as each
   * commits — progress, tokens of a model's answer, rows found so far.
   * Recorded as a call (kind `stream`), so an entry is written once however
   * often the run replays, and only with the progress before it. At most
   * `max_payload_bytes` per entry; a stream ends with `closeStream` or with
   * the run. See docs/workflows.md#streams.
   *
   * @example
   * for (const id of ids) await ctx.writeStream('progress', { id, of: ids.length });
   */
  writeStream(key: string, value: unknown): Promise<void>;
  /**
   * Close the run's stream `key`: its readers stop after the entries before
   * it, though the run goes on. (The run's end closes every stream.)
   *
   * @example
   * await ctx.closeStream('tokens');
   */
  closeStream(key: string): Promise<void>;
  /**
   * Run `fn` once (no retries) and record its result.
   *
   * @example
   * const region = await ctx.sideEffect('pick-region', () => process.env.REGION ?? 'eu');
   */
  sideEffect<T>(fn: () => Promise<T> | T): Promise<Stored<T>>;
  sideEffect<T>(name: string, fn: () => Promise<T> | T): Promise<Stored<T>>;
  /**
   * Wait durably (the worker is released meanwhile).
   *
   * @example
   * await ctx.sleep('trial-period', '14 days');
   */
  sleep(name: string, duration: Duration): Promise<void>;
  /**
   * Wait durably until a point in time.
   *
   * @example
   * await ctx.sleepUntil('renewal', new Date(subscription.renewsAt));
   */
  sleepUntil(name: string, until: Date): Promise<void>;
  /**
   * Wait for a signal. Signals sent before the wait are buffered, so none is
   * lost; each is consumed by one wait.
   *
   * @example
   * const answer = await ctx.waitForSignal(approved, { timeout: '3 days' });
   * if (answer.timedOut) return 'expired';
   * return `approved by ${answer.payload.by}`;
   */
  waitForSignal<T, R = unknown>(signal: SignalDefinition<T, any, any, R>, options?: WaitForSignalOptions<T>): Promise<SignalResult<T, R>>;
  waitForSignal<T = unknown>(name: string, options?: WaitForSignalOptions<T>): Promise<SignalResult<T>>;
  /**
   * Answer a request: `client.request(run, signal, payload)` sent
   * `message` (a signal whose id is the request's id) and waits for this
   * reply. Stored as the run's value `reply:<request id>` (a call of kind
   * `value`: it commits with the progress before it, is not written again
   * on a replay, and the promise resolves once it has committed, when the
   * caller has it): resolves `true`. `message` is what
   * `ctx.waitForSignal` returned, or the request id. A message no request
   * can have sent (a plain signal, without an id, or with an id a request
   * cannot carry: only `signal_send` takes those) has no caller waiting:
   * nothing is recorded and it resolves `false`, so one code can answer
   * requests and plain signals alike, and no sender can fail the run. A
   * message that timed out, a request id given as text that a request
   * cannot carry, or a reply that cannot be stored as given (JSON all the
   * way down: no function, `undefined`, `NaN` or `Date` in it) rejects with
   * `ValidationError` / `PayloadTooLargeError` and records nothing.
   * Replying again to the same request replaces the reply for callers
   * that have not read it. For a signal defined with `{ reply }` the
   * answer is typed by that schema and checked against it (a bad one
   * rejects with `ValidationError` and records nothing), and what the
   * schema returns is stored.
   *
   * @example
   * const ask = await ctx.waitForSignal(quote);
   * if (!ask.timedOut) await ctx.reply(ask, { price: 42 * ask.payload.qty });
   */
  reply<R = unknown>(message: SignalResult<unknown, R> | string, value: NoInfer<R>): Promise<boolean>;
  /**
   * Refuse a request: `client.request` rejects with `RequestRejectedError`
   * carrying `error`'s message, `code` and `details` (JSON). The run goes
   * on; nothing else about it changes. Recorded as `ctx.reply` is (and,
   * as it, `false` for a message no request can have sent).
   *
   * @example
   * const ask = await ctx.waitForSignal(withdraw);
   * if (!ask.timedOut && ask.payload.amount > balance) {
   *   await ctx.replyError(ask, { message: 'insufficient funds', code: 'funds' });
   * }
   */
  replyError(message: SignalResult<unknown> | string, error: string | ReplyErrorInfo): Promise<boolean>;
  /**
   * Start a child run and wait for its output (its failure is thrown as
   * ChildFailedError). The parent holds no worker while it waits.
   *
   * @example
   * const totals = await Promise.all(regions.map((region) => ctx.child(regionTotal, { region }, { key: `total-${region}` })));
   */
  child<W extends WorkflowDefinition>(workflow: W, input: WorkflowInput<W>, options?: ChildOptions): Promise<WorkflowOutput<W>>;
  /**
   * Wait for the end of a run this run did not start (started by a client,
   * another run, a schedule) and return its output; its failure or
   * cancellation is thrown as ChildFailedError (`details.error` holds its
   * error; code `not_found` in it for an id no run has). Durable like
   * `ctx.child`: the run holds no worker while it waits and is woken when
   * that run ends, however long it takes. Combine with `ctx.sleep` in
   * `ctx.race` for a time limit. The awaited run is not cancelled when this
   * one ends. See docs/workflows.md#waiting-for-another-run.
   *
   * @example
   * const receipt = await ctx.waitForRun<{ receiptId: string }>(runId);
   */
  waitForRun<T = unknown>(runId: string, options?: WaitForRunOptions): Promise<T>;
  /**
   * Change the code of a workflow version under runs already in flight:
   * true where this run takes the patched path, false for a run that passed
   * this point under the code before the patch (its history holds another
   * call here), which then replays the old path as recorded. A run that had
   * not reached this point when the patch was deployed takes the new path.
   * The answer is recorded (a call of kind `patch` named `id`), so it is the
   * same on every replay; the first call of an id in an execution decides,
   * later ones return the same answer. Once no run from before the patch is in flight,
   * replace the call and the old branch with `ctx.deprecatePatch(id)`. See
   * docs/workflows.md#patching-code-under-runs-in-flight.
   *
   * @example
   * if (ctx.patched('send-sms')) await ctx.step('sms', () => sendReceipt(ctx.runId));
   * else await ctx.step('email', () => sendReceipt(ctx.runId));
   */
  patched(id: string): boolean;
  /**
   * The second stage of a patch: records and accepts the marker `ctx.patched(id)`
   * recorded, without a branch, and stops a run from before the patch with
   * NonDeterminismError (the code has no old path any more). Remove it when
   * no run that recorded the marker is in flight.
   *
   * @example
   * ctx.deprecatePatch('send-sms');
   * await ctx.step('sms', () => sendReceipt(ctx.runId));
   */
  deprecatePatch(id: string): void;
  /**
   * The first of several durable calls to settle, recorded so a replay picks
   * the same winner. Losing waits are disarmed (they consume nothing later).
   *
   * @example
   * const r = await ctx.race({ ok: ctx.waitForSignal(approved), late: ctx.sleep('deadline', '7 days') });
   */
  race<B extends Record<string, Promise<unknown>>>(branches: B, name?: string): Promise<RaceResult<B>>;
  /**
   * Run `fn` so that cancelling the run does not interrupt it (cleanup, compensation).
   *
   * @example
   * try { await ctx.step('export', exportRows); }
   * catch (e) { if (ctx.cancelled) await ctx.nonCancellable(() => ctx.step('delete-partial', cleanUp)); throw e; }
   */
  nonCancellable<T>(fn: () => Promise<T>): Promise<T>;
  /** True once cancellation of this run was requested. */
  readonly cancelled: boolean;
  /**
   * End this execution and start the run again with `input` and a fresh history (same id and key).
   *
   * @example
   * if (processed >= 1000) return ctx.continueAsNew({ cursor, processed: 0 });
   */
  continueAsNew(input: TInput, options?: { keepHistory?: boolean | undefined }): Promise<never>;
}
