/** The options and argument types of the client (src/client/client.ts). */
import type { Pool } from '../db/pg.ts';
import type { ConnectionTimeouts } from '../db/connection.ts';
import type { Executor } from '../db/queryable.ts';
import type { RunState } from '../db/tables.ts';
import type { WorkflowDefinition } from '../workflow/define.ts';
import type { Duration } from '../protocol/duration.ts';
import type { Logger } from '../protocol/logger.ts';
import type { TracingOption } from '../observability/tracing.ts';

/**
 * Options of {@link createClient}. Give a `pool` (shared with your code) or a
 * `connectionString` (the client opens its own pool and closes it in
 * `close()`).
 *
 * @example
 * const client = createClient({ pool, resultPollInterval: '2s' });
 */
export interface ClientOptions extends ConnectionTimeouts {
  /**
   * A `pg` Pool to run on; the client does not close it. The
   * `connectTimeout`, `queryTimeout` and `keepAlive` options apply to the
   * client's own pool and to its LISTEN connection (for `result()`); a pool
   * you pass keeps its own settings (see docs/reliability.md).
   *
   * @example
   * const client = createClient({ pool: new pg.Pool({ connectionString: process.env.DATABASE_URL }) });
   */
  pool?: Pool | undefined;
  /**
   * A connection string for a pool of the client's own, closed by `close()`.
   *
   * @example
   * const client = createClient({ connectionString: 'postgres://app@db/app' });
   */
  connectionString?: string | undefined;
  /**
   * A pool (or a connection string for a pool of the client's own, closed
   * by `close()`) on a streaming standby of the primary, for reads: `list`,
   * `get`, `history`, `queueStats`, `events`, `schedules.get/list` and
   * `roles.list` go there. Writes, `result()` and `eventConsumer` stay on
   * the primary, and so does every read this client makes before the
   * standby has replayed the client's own last write (read your writes); a
   * run or history the standby lacks yet is read from the primary. Reads
   * take `{ consistency: 'primary' }` to skip the standby. See
   * docs/scaling.md, "Read replicas".
   *
   * @example
   * const client = createClient({ connectionString: 'postgres://app@primary/app', readPool: 'postgres://app@standby/app' });
   */
  readPool?: Pool | string | undefined;
  /**
   * Where the client logs (default: the console, warnings and errors).
   *
   * @example
   * const client = createClient({ pool, logger: silentLogger });
   */
  logger?: Logger | undefined;
  /**
   * Where the LISTEN connection of `result()` goes, when not where the pool
   * goes: a direct connection string to PostgreSQL, for a pool through
   * PgBouncer in transaction mode. See docs/pgbouncer.md.
   *
   * @example
   * const client = createClient({ connectionString: 'postgres://app@pgbouncer:6432/app', listenUrl: 'postgres://app@db:5432/app' });
   */
  listenUrl?: string | undefined;
  /**
   * Run the hot statements (starts, signals, result reads) as named
   * prepared statements, planned once per connection. `'auto'` (default):
   * prepared, and if the connection refuses one (a pooler in transaction
   * mode that cannot keep them: PgBouncer before 1.21, or without
   * `max_prepared_statements`) unnamed from then on. `true`: always
   * prepared; a refusal is a DatabaseError saying what to change. `false`:
   * never. See docs/pgbouncer.md.
   *
   * @example
   * const client = createClient({ pool, preparedStatements: false }); // behind PgBouncer 1.20
   */
  preparedStatements?: boolean | 'auto' | undefined;
  /**
   * Safety-net poll of `result()` in case a NOTIFY is missed (default 5s).
   *
   * @example
   * const client = createClient({ pool, resultPollInterval: '1s' });
   */
  resultPollInterval?: Duration | undefined;
  /**
   * Hand a started run straight to a worker in this process that joined this
   * client (`createWorker({ client })`) and serves its workflow, version and queue, when that worker
   * has a free slot and no backlog (default true). The start then leases the
   * run to that worker in its own statement, and the run begins when the
   * start commits, with no NOTIFY and no claim in between; `result()` hears
   * of the end from the worker. The run is as durable as any other: if this
   * process dies, the lease expires and another worker continues it. Not for
   * starts inside a caller's transaction (`tx`), for starts by name without a
   * version, or for a future `runAt`. See docs/decisions/0015-local-hand-off.md.
   *
   * @example
   * const client = createClient({ pool, handoff: false }); // every start goes through the queue
   */
  handoff?: boolean | undefined;
  /**
   * Carry the caller's OpenTelemetry trace context into the runs it starts
   * (needs the optional package @opentelemetry/api; off by default): the
   * active span's W3C `traceparent` is stored in the run's `metadata`, and
   * workers with `tracing` on parent the run's spans to it.
   *
   * @example
   * const client = createClient({ pool, tracing: true });
   */
  tracing?: TracingOption | undefined;
}

/**
 * What a start does with a key another run holds: see `StartOptions.keyPolicy`.
 *
 * @example
 * const policy: KeyPolicy = 'reuse';
 */
export type KeyPolicy = 'return' | 'reuse' | 'replace' | 'supersede';

/**
 * Options of `client.start`.
 *
 * @example
 * await client.start(onboard, { email: 'ada@example.com' }, { key: 'onboard-ada', priority: 10 });
 */
export interface StartOptions {
  /**
   * Idempotency key: a second start with the same (workflow, key) returns the first run.
   *
   * @example
   * await client.start(onboard, { email: 'ada@example.com' }, { key: 'onboard-ada' });
   */
  key?: string | undefined;
  /**
   * What this start does when another run holds its `key` (needs a key;
   * docs/workflows.md#keys):
   * - `'return'` (default): returns that run, whatever its status: a key
   *   names one run for good (until retention purges it).
   * - `'reuse'`: a run that has finished (completed, failed or cancelled)
   *   gives the key to a new run, and keeps it as `formerKey`; one that has
   *   not finished is returned. At most one unfinished run per key: a
   *   singleton.
   * - `'replace'`: as `'reuse'`, and a run that has not begun (pending,
   *   never claimed) takes this start's input, `runAt`, `priority` and
   *   `metadata` (its queue, version, concurrency key and deadline stay):
   *   a debounce, with `runAt` a moment ahead. A `replaced` event is written.
   * - `'supersede'`: as `'reuse'`, and a run that has not finished is
   *   cancelled (as `client.cancel`: its children too; one under way ends
   *   after its code sees `CancelledError`, its cleanup included) and gives
   *   the key to the new run at once: cancel in progress, the newest start
   *   wins. The cancelled run keeps the key as `formerKey`.
   *
   * @example
   * // One onboarding per address at a time, begun 5 s after the last of a burst of starts.
   * await client.start(onboard, { email: 'ada@example.com' }, {
   *   key: 'onboard-ada', keyPolicy: 'replace', runAt: new Date(Date.now() + 5_000),
   * });
   */
  keyPolicy?: KeyPolicy | undefined;
  /**
   * The queue to run on (default: the workflow's `queue`, else `'default'`).
   *
   * @example
   * await client.start(onboard, { email: 'ada@example.com' }, { queue: 'bulk' });
   */
  queue?: string | undefined;
  /**
   * The run's flow-control group in its queue (1-200 characters, e.g. a
   * tenant id): `keyConcurrency` of the queue limits running runs per key,
   * and claims rotate across keys. See `Client.setQueue`.
   *
   * @example
   * await client.start(onboard, { email: 'ada@example.com' }, { queue: 'mail', concurrencyKey: 'tenant-42' });
   */
  concurrencyKey?: string | undefined;
  /**
   * Higher runs first (default 0).
   *
   * @example
   * await client.start(onboard, { email: 'vip@example.com' }, { priority: 10 });
   */
  priority?: number | undefined;
  /**
   * Do not start before this time (a Date or an ISO timestamp). Kept through
   * `pause` and `resume`.
   *
   * @example
   * await client.start(onboard, { email: 'ada@example.com' }, { runAt: new Date(Date.now() + 3_600_000) });
   */
  runAt?: Date | string | undefined;
  /**
   * Cancel the run (and its children started with `onParentCancel:
   * 'cancel'`) if it has not finished by this time (a Date or an ISO
   * timestamp after `runAt` and after now). Workers enforce it (the role
   * `trellis.deadlines`, within about a second by default): a run that
   * never started ends cancelled at once, a started one gets
   * `CancelledError` at its next wait. Not with `timeLimit`. See
   * docs/workflows.md#deadlines.
   *
   * @example
   * await client.start(onboard, { email: 'ada@example.com' }, { deadline: new Date('2027-01-31T17:00:00Z') });
   */
  deadline?: Date | string | undefined;
  /**
   * The run's deadline as a duration from its start: its `runAt`, or now
   * when there is none or it is past (`{ timeLimit: '15 minutes' }`). Not
   * with `deadline`.
   *
   * @example
   * await client.start(onboard, { email: 'ada@example.com' }, { timeLimit: '1 hour' });
   */
  timeLimit?: Duration | undefined;
  /**
   * Free-form JSON stored with the run and handed to the code as `ctx.metadata`.
   *
   * @example
   * await client.start(onboard, { email: 'ada@example.com' }, { metadata: { requestId: 'req-42' } });
   */
  metadata?: Record<string, unknown> | undefined;
  /**
   * Only for starts by name: pin this version (default: the newest registered).
   *
   * @example
   * await client.start('onboard', { email: 'ada@example.com' }, { version: '2' });
   */
  version?: string | undefined;
  /**
   * The caller's transaction: a pg client (or pool), or a Kysely instance or
   * transaction. The start commits or rolls back with it.
   *
   * @example
   * const c = await pool.connect();
   * await c.query('begin');
   * await client.start(onboard, { email: 'ada@example.com' }, { tx: c });
   * await c.query('commit');
   * c.release();
   */
  tx?: Executor | undefined;
}

/**
 * One run of `client.startMany`: its input and its own start options.
 *
 * @example
 * const item: StartManyItem<{ email: string }> = { input: { email: 'ada@example.com' }, key: 'onboard-ada', priority: 5 };
 */
export type StartManyItem<I> = { input: I } & Omit<StartOptions, 'tx' | 'version'>;

/**
 * Options of `client.fork`: a start's, and the call to run again from.
 * Unset ones take the original's version, queue, priority, concurrency key
 * and metadata; a fork has no key or deadline unless given one.
 *
 * @example
 * await client.fork(runId, { fromCall: 3, version: '2', key: `refund-fix-${runId}` });
 */
export interface ForkOptions extends Omit<StartOptions, 'keyPolicy'> {
  /**
   * The call (`Step.seq`, as `client.history` and `trellis show` number
   * them) to run again from: the original's settled calls before it keep
   * their results in the fork. Default 0: none, the whole run again.
   */
  fromCall?: number | undefined;
}

/**
 * Options of `client.request` (decision 0044).
 *
 * @example
 * const options: RequestOptions = { id: 'quote-7f3a', timeout: '10s' };
 */
export interface RequestOptions {
  /**
   * The request's id, sent as the signal's id (a repeat with the same id
   * is not delivered again; it waits for the same reply). 1-122 letters,
   * digits, space or `_ . : @ / -`. Default: a new UUID.
   */
  id?: string | undefined;
  /**
   * How long to wait for the reply: `TimeoutError` after it (the request
   * stays delivered and the run may still answer; ask again with the same
   * `id` to wait for that answer). Default: until the reply or the run's end.
   */
  timeout?: Duration | undefined;
  /**
   * Request with start: the run is `{ workflow, key }`, and when the key has
   * no unfinished run one is started with `start.input` and these start
   * options and gets the request (`client.signalWithStart` with the
   * request's id as its `signalId`, in one transaction). A repeat of the id
   * starts nothing and waits for the same answer.
   */
  start?: RequestStart | undefined;
}

/**
 * The start of `client.request`'s request with start: the input, and the
 * start options of `signalWithStart` (the key and the signal id come from
 * the request).
 *
 * @example
 * const start: RequestStart = { input: { customer: 'c-42' }, queue: 'carts' };
 */
export interface RequestStart extends Omit<SignalWithStartOptions, 'key' | 'signalId' | 'tx'> {
  input: unknown;
}

/**
 * Options of `client.signalWithStart`: a start's, with its `key` required
 * (the key names the run to signal, or the run to start) and no
 * `keyPolicy`, and the signal's deduplication id.
 *
 * @example
 * const options: SignalWithStartOptions = { key: 'cart-42', signalId: 'msg-981', queue: 'carts' };
 */
export interface SignalWithStartOptions extends Omit<StartOptions, 'key' | 'keyPolicy'> {
  /** The key (1-512 characters): its unfinished run gets the signal, or a new run with it is started. */
  key: string;
  /**
   * Deduplication id of the signal (1-512 characters): a repeat the run
   * already received is dropped, and so is a repeat the key's latest run
   * received before it finished (nothing is started then).
   */
  signalId?: string | undefined;
}

/**
 * What `client.signalWithStart` did: the run (as a start's handle), whether
 * this call started it, and whether the signal reached it (false for a
 * repeat of its `signalId`).
 *
 * @example
 * const { id, started, delivered } = await client.signalWithStart(cart, { customer: 'c-42' }, addItem, { sku: 'A-1', qty: 1 }, { key: 'cart-c-42' });
 */
export interface SignalWithStartHandle<O> extends RunHandle<O> {
  /** Whether this call started the run (false: the key's unfinished run was signalled). */
  readonly started: boolean;
  /** Whether the signal was buffered for the run (false: a repeat of its `signalId`). */
  readonly delivered: boolean;
}

/**
 * A started run: its id, and its result when it ends.
 *
 * @example
 * const run: RunHandle<string> = await client.start(onboard, { email: 'ada@example.com' });
 * console.log(run.id, await run.result({ timeout: '1 minute' }));
 */
export interface RunHandle<O> {
  /** The run's id (a UUID). */
  readonly id: string;
  /**
   * Await the run's output, woken by NOTIFY (with a poll as a safety net).
   * Throws `WorkflowFailedError` if it failed, `CancelledError` if it was
   * cancelled, and `TimeoutError` if `timeout` passes first (the run goes on).
   *
   * @example
   * const output = await run.result({ timeout: '30s' });
   */
  result(options?: { timeout?: Duration | undefined }): Promise<O>;
}

/**
 * Filters and paging of `client.list`: the filters combine with AND; pages
 * are newest first, `limit` runs each, continued with `cursor`.
 *
 * @example
 * let page = await client.list({ workflow: 'onboard', status: ['failed', 'paused'], limit: 100 });
 * while (page.nextCursor) page = await client.list({ workflow: 'onboard', status: ['failed', 'paused'], limit: 100, cursor: page.nextCursor });
 */
export interface ListFilter {
  /**
   * Runs of this workflow (any version): its name or its definition.
   *
   * @example
   * await client.list({ workflow: 'onboard' });
   */
  workflow?: string | WorkflowDefinition | undefined;
  /**
   * Runs in this status, or in any of these.
   *
   * @example
   * await client.list({ status: ['pending', 'running'] });
   */
  status?: RunState | readonly RunState[] | undefined;
  /**
   * Runs on this queue.
   *
   * @example
   * await client.list({ queue: 'bulk', status: 'pending' });
   */
  queue?: string | undefined;
  /**
   * The run started with this key.
   *
   * @example
   * await client.list({ workflow: 'onboard', key: 'onboard-ada' });
   */
  key?: string | undefined;
  /**
   * Runs created at or after this time.
   *
   * @example
   * await client.list({ createdAfter: new Date(Date.now() - 86_400_000) });
   */
  createdAfter?: Date | undefined;
  /**
   * Runs created before this time.
   *
   * @example
   * await client.list({ createdBefore: new Date('2030-01-01') });
   */
  createdBefore?: Date | undefined;
  /**
   * Runs whose metadata contains this object (`metadata @> …` in SQL: every
   * key given, with that value; nested objects match by containment too).
   * Index it for a large table: docs/operations.md#finding-runs-by-your-own-fields.
   *
   * @example
   * await client.list({ workflow: 'onboard', metadata: { tenant: 'acme' } });
   */
  metadata?: Record<string, unknown> | undefined;
  /**
   * Page size (default 50, at most 1000).
   *
   * @example
   * await client.list({ limit: 500 });
   */
  limit?: number | undefined;
  /**
   * `nextCursor` of the previous page (with the same filters): the next
   * page starts after the last run of that one, by (creation time, id).
   *
   * @example
   * const first = await client.list({ limit: 10 });
   * if (first.nextCursor) await client.list({ limit: 10, cursor: first.nextCursor });
   */
  cursor?: string | undefined;
}

/**
 * Which runs `cancelMany`, `retryMany`, `pauseMany` and `resumeMany` act on:
 * every run matching all the given fields (at least one; `{ all: true }` for
 * every run).
 *
 * @example
 * const filter: ControlFilter = { workflow: 'onboard', status: 'failed', createdAfter: new Date(Date.now() - 3_600_000) };
 */
export interface ControlFilter {
  /** Runs of this workflow. */
  workflow?: string | WorkflowDefinition | undefined;
  /** Runs pinned to this version. */
  version?: string | undefined;
  /** Runs on this queue. */
  queue?: string | undefined;
  /** The run holding this key. */
  key?: string | undefined;
  /** Runs in this status, or in any of these. */
  status?: RunState | readonly RunState[] | undefined;
  /** Runs created at or after this time. */
  createdAfter?: Date | undefined;
  /** Runs created before this time. */
  createdBefore?: Date | undefined;
  /** Runs whose metadata contains this object (as `ListFilter.metadata`). */
  metadata?: Record<string, unknown> | undefined;
  /** These runs (ids). */
  ids?: readonly string[] | undefined;
  /** Every run: needed when no other field is given. */
  all?: boolean | undefined;
}

/**
 * Options of the bulk controls.
 *
 * @example
 * await client.cancelMany({ queue: 'imports' }, { reason: 'bad batch', batchSize: 500 });
 */
export interface ControlManyOptions {
  /** Why (stored with each run; `cancelMany` and `pauseMany` only). */
  reason?: string | undefined;
  /** Runs per transaction, 1-10000 (default 1000). */
  batchSize?: number | undefined;
  /** The caller's transaction: every batch runs in it (and none is retried on a deadlock). */
  tx?: Executor | undefined;
  /** Called after each batch with the totals so far. */
  onBatch?: ((progress: ControlManyResult) => void) | undefined;
  /**
   * Change nothing: `changed` lists the runs the control would change now
   * (`trellis.run_control_preview`), `unchanged` is empty. A run may change
   * before a real call, which may then find a different set.
   *
   * @example
   * const { changed } = await client.cancelMany({ workflow: 'import' }, { dryRun: true });
   * console.log(`${changed.length} runs would be cancelled`);
   */
  dryRun?: boolean | undefined;
}

/**
 * What a bulk control did: the runs it changed and the matching runs it
 * found changed by someone else meanwhile (already finished, paused, …).
 *
 * @example
 * const { changed } = await client.retryMany({ workflow: 'onboard', status: 'failed' });
 * console.log(`${changed.length} runs retried`);
 */
export interface ControlManyResult {
  changed: string[];
  unchanged: string[];
}

/** A run by id, or by the (workflow, key) it was started with. */
export type RunRef = string | { workflow: string | WorkflowDefinition; key: string };
