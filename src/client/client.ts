/**
 * The client: start runs (inside the caller's transaction when given one),
 * await results (woken by NOTIFY, with a slow poll as the safety net), and
 * read runs, lists and histories with Kysely over the engine's tables.
 */
import { Kysely, PostgresDialect, sql } from 'kysely';
import type { Pool } from '../db/pg.ts';
import { guardedPool, jsonbParserOf, listenConnection, ownPool } from '../db/connection.ts';
import { type ControlManyRow, type ControlVerb, runControl, runControlMany, requestSend, runControlPreview, runFork, runIdByKey, runScrub, runSetMetadata, signalSend, signalWithStart } from '../db/control.ts';
import { toTrellisError } from '../db/errors.ts';
import { PreparedStatements } from '../db/prepared.ts';
import { type Executor, type Queryable, queryRows, toQueryable } from '../db/queryable.ts';
import { WorkflowRegistry } from '../db/registry.ts';
import { registrationOf } from '../workflow/registration.ts';
import { retentionGet, retentionSet, runPurge } from '../db/retention.ts';
import { isTransient, withRollbackRetries, withSendRetries, withTransientRetries } from '../db/transient.ts';
import { PAYLOAD_LIMIT_SQL, runStart, runStartClaimed, runStartFirst, runStartMany, type RunStartOptions } from '../db/runs.ts';
import { FINISHED_STATES, RUN_COLUMNS, type RunState, RUN_STATES, type TrellisTables } from '../db/tables.ts';
import { NotFoundError, quoteValue, RequestRejectedError, SchemaVersionError, TimeoutError, ValidationError } from '../errors.ts';
import { replyKey, type ReplyRecord } from '../workflow/requests.ts';
import { optionNames, refuseUnknownKeys } from '../protocol/option-bounds.ts';
import { assertForeignIdField, assertJsonObject, encodeJson } from '../protocol/serialize.ts';
import { SCHEMA_MIGRATION, SCHEMA_SQL_REVISION } from '../protocol/schema-version.generated.ts';
import { assertSessionSettings, SCHEMA_INFO_SQL, SESSION_SETTINGS_SQL, schemaBehind } from '../db/schema-check.ts';
import { loadTracing, type Tracing } from '../observability/tracing.ts';
import { type Handoff, LocalHandoff } from '../protocol/local-handoff.ts';
import type { WorkflowDefinition, WorkflowInput, WorkflowOutput } from '../workflow/define.ts';
import type { SignalDefinition, SignalPayload, SignalReply } from '../workflow/signal.ts';
import { type Duration, toMs } from '../protocol/duration.ts';
import { deadlineOptions, toTime } from '../protocol/deadline.ts';
import { childLogger, consoleLogger, type Logger } from '../protocol/logger.ts';
import { assertName, assertRunId, nameOf } from '../workflow/names.ts';
import { validate } from '../workflow/standard-schema.ts';
import { decodeCursor, encodeCursor } from './cursor.ts';
import { type ConsumerOptions, EventConsumer, type EventsOptions, readEvents } from './events.ts';
import type { RunEvent } from '../db/events.ts';
import type { ClientOptions, ControlFilter, ControlManyOptions, ControlManyResult, ForkOptions, KeyPolicy, ListFilter, RunHandle, RunRef, RequestOptions, SignalWithStartHandle, SignalWithStartOptions, StartManyItem, StartOptions } from './options.ts';
import { type QueueOptions, type QueueStats, readQueueStats, setQueue } from './queues.ts';
import { queuePause } from '../db/queues.ts';
import { type ReadOptions, ReadRouter } from './read-routing.ts';
import { ResultWaiter, type StreamRow } from './results.ts';
import { type ResolvedClientOptions, resolveClientOptions } from './resolved-options.ts';
import { type ReadStreamOptions, type Run, type RunValue, type Step, STREAM_CURSOR, type StreamEntry, toRun, toStep } from './runs.ts';
import { Consumers, Hooks } from './outbox.ts';
import { Roles, Schedules } from './schedules.ts';

export type { ClientOptions, ListFilter, RunHandle, RunRef, StartOptions, ForkOptions, StartManyItem, KeyPolicy, ControlFilter, ControlManyOptions, ControlManyResult, SignalWithStartOptions, SignalWithStartHandle, RequestOptions, RequestStart } from './options.ts';
export type { Consistency, ReadOptions } from './read-routing.ts';

const rethrow = (error: unknown): never => {
  throw toTrellisError(error);
};

/** `db`, each statement sent after `ready` settled (and not if it rejects). */
function readyFirst(db: Queryable, ready: () => Promise<unknown>): Queryable {
  return { query: async <R>(text: string, values?: unknown[]) => (await ready(), db.query<R>(text, values)) };
}


/** An optional workflow option, as SQL takes it (null: none). */
const optionalWorkflow = (workflow: string | WorkflowDefinition | undefined): string | null =>
  workflow === undefined ? null : nameOf(workflow, 'workflow');

/**
 * Start a run leased to the worker that kept `handoff` for it, and give the
 * worker the run (or its slot back, when the start leased nothing or failed).
 */
async function startHandedOff(db: Queryable, name: string, text: string, options: RunStartOptions, handoff: Handoff): Promise<string> {
  let started: Awaited<ReturnType<typeof runStartClaimed>>;
  try {
    started = await runStartClaimed(db, name, text, { ...options, queue: handoff.queue }, handoff);
  } catch (error) {
    // A connection lost after the statement was sent: its COMMIT may have
    // leased the run to the worker, which must not wait out that lease.
    handoff.cancel(isTransient(error));
    throw error;
  }
  if (started.run) handoff.adopt(started.run);
  else handoff.cancel();
  return started.id;
}

/**
 * Create a client: start runs, send signals, read runs and their history,
 * control them (cancel, pause, resume, retry) and manage retention.
 * `ClientOptions` lists the options.
 *
 * @example
 * const client = createClient({ connectionString: process.env.DATABASE_URL });
 * const run = await client.start(greet, { name: 'Ada' });
 * console.log(await run.result({ timeout: '30s' }));
 */
export function createClient(options: ClientOptions): Client {
  return new Client(options);
}

/**
 * The client `createClient` returns. Two clients (and two workers) can live
 * in one process.
 *
 * @example
 * const client: Client = createClient({ pool });
 * const failed = await client.list({ status: 'failed' });
 * await client.close();
 */
export class Client {
  /**
   * Kysely over the engine's tables, for your own read queries.
   *
   * @example
   * const stuck = await client.db.selectFrom('trellis.runs').select(['id', 'workflow']).where('status', '=', 'paused').execute();
   */
  readonly db: Kysely<TrellisTables>;
  private readonly pool: Pool;
  private readonly ownsPool: boolean;
  private readonly prepared: PreparedStatements;
  private readonly log: Logger;
  private readonly registry: WorkflowRegistry<WorkflowDefinition>;
  private readonly results: ResultWaiter;
  /** Where reads go: the read pool (a standby) or the primary (src/client/read-routing.ts). */
  private readonly reads: ReadRouter;
  private maxPayloadBytes: Promise<number> | undefined;
  /** The limit once known (the first start without a transaction reads it with the start). */
  private payloadLimitValue: number | undefined;
  /** The schema check of the first read (schemaRead), while it is under way or once it passed. */
  private schemaReadChecked: Promise<void> | undefined;
  /**
   * The link a worker in this process joins with `createWorker({ client })`:
   * this client's starts may then be handed to it (decision 0015), and it
   * tells this client's `result()` waiters when it ends a run. Pass the
   * client, not this object.
   *
   * @internal
   * @example
   * const worker = createWorker({ pool, workflows: [onboard], client }); // joins client.localHandoff
   */
  readonly localHandoff: LocalHandoff;
  private tracing: Promise<Tracing> | undefined;
  /** Cron schedules: set, pause, resume, delete, get, list (src/client/schedules.ts). */
  readonly schedules: Schedules;
  /** The role leases of singleton duties, read-only (src/client/schedules.ts). */
  readonly roles: Roles;
  /** Lifecycle hook deliveries: list them, retry a parked one (src/client/outbox.ts). */
  readonly hooks: Hooks;
  /** The outbox's durable consumers and their backlogs, read-only (src/client/outbox.ts). */
  readonly consumers: Consumers;

  /** The options, checked and defaulted once (resolved-options.ts). */
  private readonly options: Readonly<ResolvedClientOptions>;

  constructor(options: ClientOptions) {
    const o = resolveClientOptions(options);
    this.options = o;
    this.log = childLogger(o.logger ?? consoleLogger('warn'), {});
    const timeouts = o.timeouts;
    if (o.pool) {
      this.pool = o.pool;
      this.ownsPool = false;
    } else {
      this.pool = ownPool(o.connectionString as string, 'trellis-client', timeouts);
      this.pool.on('error', (error) => this.log.warn('idle pool client error', { error: String(error) }));
      this.ownsPool = true;
    }
    this.prepared = new PreparedStatements(this.pool, o.preparedStatements, this.log);
    this.localHandoff = new LocalHandoff(o.handoff);
    this.results = new ResultWaiter({
      pool: this.pool,
      link: this.localHandoff,
      connection: listenConnection(this.pool, o.listenUrl, timeouts),
      log: this.log,
      pollMs: o.resultPollMs,
      outcome: (runId) => this.outcome(runId),
      value: (runId, key) => this.readValue(this.prepared.pool, runId, key),
      stream: (runId, key, after) => this.readStreamRows(runId, key, after),
      stall: (runId) => this.stall(runId),
      jsonbParser: () => jsonbParserOf(this.pool),
    });
    this.registry = new WorkflowRegistry(this.pool, registrationOf);
    this.db = new Kysely<TrellisTables>({ dialect: new PostgresDialect({ pool: guardedPool(this.pool) as never }) });
    // The schema check a start makes with its first statement, made before
    // a client's first read or schedule or hook write as well (once; its
    // result is kept): a schema behind this code is a SchemaVersionError
    // there too, not a missing column (a deploy that ran ahead of its
    // migration).
    const ready = () => this.payloadLimit();
    this.reads = new ReadRouter(this.prepared.pool, this.db, options.readPool, timeouts, this.log, o.preparedStatements,
      (through) => this.schemaRead(through));
    const checkedWriter = readyFirst(this.reads.writer(this.pool), ready);
    this.schedules = new Schedules(checkedWriter, this.registry, this.reads.reader());
    this.roles = new Roles(this.reads.reader());
    this.hooks = new Hooks(this.reads.reader(), checkedWriter);
    this.consumers = new Consumers(this.reads.reader());
  }

  /**
   * Start a run. With `tx`, the start commits or rolls back with the caller's transaction.
   * An option it does not know (a misspelt `timelimit`, say) is a `ValidationError`, as in SQL.
   * Without `tx`, a start with a `key` and the default `keyPolicy` (`'return'`)
   * whose connection is lost is made again (up to 5 tries in all): if the
   * lost try had committed, the key's run is returned. Any other start
   * rejects with a retryable `DatabaseError` then (it may have committed).
   *
   * @example
   * const pgClient = await pool.connect();
   * await pgClient.query('begin');
   * await pgClient.query('insert into orders (id) values ($1)', [orderId]);
   * await client.start(fulfil, { orderId }, { tx: pgClient, key: orderId });
   * await pgClient.query('commit');
   * pgClient.release();
   */
  async start<W extends WorkflowDefinition>(workflow: W, input: WorkflowInput<W>, options?: StartOptions): Promise<RunHandle<WorkflowOutput<W>>>;
  async start(workflow: string, input: unknown, options?: StartOptions): Promise<RunHandle<unknown>>;
  async start(workflow: WorkflowDefinition | string, input: unknown, options: StartOptions = {}): Promise<RunHandle<unknown>> {
    // Everything runs on the caller's transaction when there is one: a second
    // connection from the pool could wait forever on a pool full of them.
    const db = this.exec(options.tx);
    const name = nameOf(workflow, 'workflow');
    // A client's first start outside a transaction learns the payload limit
    // and the schema's migration in its own statement (one round trip,
    // issue 18): until then the size is left to run_start's check (TR005).
    const first = !options.tx && this.payloadLimitValue === undefined;
    const { text, sqlOptions } = await this.startArguments(workflow, input, options,
      () => (first ? Promise.resolve(Number.MAX_SAFE_INTEGER) : this.payloadLimit(db)));
    // Register last: bad input above must write nothing, not even a registry row.
    if (typeof workflow !== 'string' && !first) {
      if (options.tx) await this.registry.registerIn(db, workflow);
      else await this.register(workflow);
    }
    // A worker in this process may take the run at once; never inside the
    // caller's transaction (it would begin before that commits).
    const version = sqlOptions.version;
    const handoff = !options.tx && version !== undefined ? this.localHandoff.reserve(name, version, sqlOptions.queue) : undefined;
    // A start that commits at once may skip its NOTIFY while the workflow has
    // pending runs (a worker is draining them): concurrent starts then group
    // their commits instead of queuing on the NOTIFY lock (decision 0021).
    if (!options.tx) sqlOptions.coalesce_notify = true;
    if (first && handoff) {
      // A first start handed to this process's worker: the checks as before.
      try {
        encodeJson(input, `input of ${name}`, await this.payloadLimit(db));
        if (options.metadata !== undefined) encodeJson(options.metadata, 'metadata', await this.payloadLimit(db));
        if (typeof workflow !== 'string') await this.register(workflow);
      } catch (error) {
        handoff.cancel();
        throw error;
      }
    }
    let id: string;
    try {
      id = handoff ? await startHandedOff(db, name, text, sqlOptions, handoff)
        : first ? await this.firstStart(db, name, text, sqlOptions, typeof workflow === 'string' ? undefined : workflow)
        // A start that commits at once, run again after a serialization
        // failure or a deadlock (rolled back for certain: a start with a
        // key_policy that kept losing the key's race, decision 0036).
        : options.tx ? await runStart(db, name, text, sqlOptions) : await withRollbackRetries(() => runStart(db, name, text, sqlOptions));
    } catch (error) {
      // A keyed start with the default policy ('return') is harmless to make
      // again: if the lost try had committed, the key's run is returned.
      // Through the queue (a hand-off given back above), registered first.
      if (options.tx || sqlOptions.key === undefined || (sqlOptions.key_policy ?? 'return') !== 'return' || !isTransient(error)) throw error;
      id = await withTransientRetries(async () => {
        if (typeof workflow !== 'string') await this.register(workflow);
        return runStart(db, name, text, sqlOptions);
      }, 4);
    }
    return { id, result: (o) => this.result(id, o) };
  }

  /**
   * A start's input text and run_start options, checked (the input against
   * the definition's schema, the options, the payload limit from `limit`),
   * with the trace context in its metadata.
   */
  private async startArguments(workflow: WorkflowDefinition | string, input: unknown, options: Omit<StartOptions, 'tx'>,
    limit: () => Promise<number>, known?: ReadonlySet<string>): Promise<{ text: string; sqlOptions: RunStartOptions }> {
    const sqlOptions: RunStartOptions = {};
    const name = nameOf(workflow, 'workflow');
    if (typeof workflow === 'string') {
      if (options.version !== undefined) sqlOptions.version = assertName(options.version, 'version');
    } else {
      await validate(workflow.input, input, `input of ${workflow.name}`);
      sqlOptions.version = workflow.version;
      // Checked against the schema itself: SQL need not check its shape again.
      sqlOptions.input_checked = true;
      if (options.version !== undefined && options.version !== workflow.version) {
        throw new ValidationError(`start(${workflow.name}) pins version ${workflow.version}; do not pass another version`);
      }
    }
    const max = await limit();
    const text = encodeJson(input, `input of ${name}`, max);
    Object.assign(sqlOptions, runOptions(options, max, known));
    if (this.options.tracing) {
      this.tracing ??= loadTracing(this.options.tracing);
      sqlOptions.metadata = (await this.tracing).inject(sqlOptions.metadata);
    }
    return { text, sqlOptions };
  }

  /** A signal's name and payload text, the payload checked against the signal's schema and the payload limit. */
  private async signalArguments(signal: SignalDefinition<any, any> | string, payload: unknown, db: Queryable): Promise<{ name: string; text: string }> {
    const name = nameOf(signal, 'signal');
    if (typeof signal !== 'string' && signal.schema) await validate(signal.schema, payload, `payload of signal ${name}`);
    return { name, text: encodeJson(payload, `payload of signal ${name}`, await this.payloadLimit(db)) };
  }

  /**
   * Signal the unfinished run that holds `options.key`, or start one with
   * `input` and signal it, in one transaction (`trellis.signal_with_start`):
   * both or neither. The run for an entity (a cart, a conversation, an
   * account) that messages keep arriving for, with no caller deciding which
   * message comes first. A run of the key that has finished gives its key
   * up to the new run (as `keyPolicy: 'reuse'`). Concurrent calls for one
   * key start one run and signal it. `input` and the signal are checked
   * whether or not a run is started. With `signalId`, a repeat is dropped
   * (`delivered: false`), even when the key's latest run has finished since
   * it received it (no run is started then); without `tx`, a call with
   * `signalId` whose connection is lost is made again (up to 5 tries; if
   * the lost try had committed, this one reports the repeat: `started` and
   * `delivered` false). With `tx`, in the caller's
   * transaction. The run goes through its queue (it is not handed to this
   * process's worker directly).
   *
   * @example
   * const { id, started } = await client.signalWithStart(cart, { customer: 'c-42' }, addItem, { sku: 'A-1', qty: 2 },
   *   { key: 'cart-c-42', signalId: 'msg-981' });
   */
  async signalWithStart<W extends WorkflowDefinition, S extends SignalDefinition<any, any> | string>(
    workflow: W, input: WorkflowInput<W>, signal: S, payload: SignalPayload<S>, options: SignalWithStartOptions,
  ): Promise<SignalWithStartHandle<WorkflowOutput<W>>>;
  async signalWithStart<S extends SignalDefinition<any, any> | string>(
    workflow: string, input: unknown, signal: S, payload: SignalPayload<S>, options: SignalWithStartOptions,
  ): Promise<SignalWithStartHandle<unknown>>;
  async signalWithStart(workflow: WorkflowDefinition | string, input: unknown, signal: SignalDefinition<any, any> | string,
    payload: unknown, options: SignalWithStartOptions): Promise<SignalWithStartHandle<unknown>> {
    if (typeof options !== 'object' || options === null) throw new ValidationError('signalWithStart needs options with a key');
    const { signalId, tx, ...startOptions } = options;
    if ((startOptions as StartOptions).keyPolicy !== undefined) {
      throw new ValidationError('signalWithStart takes no keyPolicy: it signals the key\'s unfinished run, or starts one as keyPolicy \'reuse\' would');
    }
    if (typeof startOptions.key !== 'string') throw new ValidationError('signalWithStart needs a key: it names the run to signal or to start');
    checkSignalId(signalId, 'signalId');
    const db = this.exec(tx);
    const { name: signalName, text: signalText } = await this.signalArguments(signal, payload, db);
    const name = nameOf(workflow, 'workflow');
    const { text, sqlOptions } = await this.startArguments(workflow, input, startOptions, () => this.payloadLimit(db), SIGNAL_START_OPTIONS);
    // Register last: bad input above must write nothing, not even a registry row.
    if (typeof workflow !== 'string') {
      if (tx) await this.registry.registerIn(db, workflow);
      else await this.register(workflow);
    }
    if (!tx) sqlOptions.coalesce_notify = true;
    const send = () => signalWithStart(db, name, text, sqlOptions, signalName, signalText, signalId ?? null);
    const row = tx ? await send() : await withSendRetries(signalId, send);
    return { ...row, result: (o) => this.result(row.id, o) };
  }

  /**
   * Start many runs of one workflow in one statement and one transaction
   * (`trellis.run_start_many`): all of them or, on any error, none. Each item
   * is an input with its own start options (`key`, `queue`, `priority`,
   * `runAt`, `deadline` / `timeLimit`, `metadata`, `concurrencyKey`). Up to
   * 1000 a call. The handles come back in the order of the items; a
   * repeated `key` gives the existing run's. An error names the item
   * (`run 3: …`; counted from 1). With `tx`, it commits or rolls back with
   * the caller's transaction. Runs started so go through the queue (none is
   * handed to this process's worker directly).
   *
   * @example
   * const emails = ['ada@example.com', 'lin@example.com'];
   * const handles = await client.startMany(onboard, emails.map((email) => ({ input: { email }, key: `onboard-${email}` })));
   * console.log(handles.length, 'started');
   */
  async startMany<W extends WorkflowDefinition>(workflow: W, runs: readonly StartManyItem<WorkflowInput<W>>[], options?: { tx?: Executor | undefined }): Promise<RunHandle<WorkflowOutput<W>>[]>;
  async startMany(workflow: string, runs: readonly StartManyItem<unknown>[], options?: { tx?: Executor | undefined; version?: string | undefined }): Promise<RunHandle<unknown>[]>;
  async startMany(workflow: WorkflowDefinition | string, runs: readonly StartManyItem<unknown>[], options: { tx?: Executor | undefined; version?: string | undefined } = {}): Promise<RunHandle<unknown>[]> {
    if (!Array.isArray(runs)) throw new ValidationError('startMany takes an array of runs ({ input, ...options })');
    if (runs.length > 1000) throw new ValidationError(`startMany takes at most 1000 runs a call, not ${runs.length}`);
    for (const name in options) {
      if (name !== 'tx' && name !== 'version') throw new ValidationError(`unknown startMany option ${quoteValue(name)}`);
    }
    if (runs.length === 0) return [];
    const db = this.exec(options.tx);
    const name = nameOf(workflow, 'workflow');
    let version: string | undefined;
    if (typeof workflow === 'string') {
      if (options.version !== undefined) version = assertName(options.version, 'version');
    } else {
      if (options.version !== undefined && options.version !== workflow.version) {
        throw new ValidationError(`startMany(${workflow.name}) pins version ${workflow.version}; do not pass another version`);
      }
      version = workflow.version;
    }
    const limit = await this.payloadLimit(db);
    const items: { input: string; options: RunStartOptions }[] = [];
    for (const [i, run] of runs.entries()) {
      const at = `run ${i + 1}`;
      if (typeof run !== 'object' || run === null || Array.isArray(run)) throw new ValidationError(`${at}: a run is an object of input and start options`);
      const { input, ...start } = run;
      let sqlOptions: RunStartOptions;
      try {
        if (typeof workflow !== 'string') await validate(workflow.input, input, `input of ${workflow.name}`);
        sqlOptions = runOptions(start, limit, ITEM_OPTIONS);
        // Checked against the schema itself: SQL need not check its shape again.
        if (typeof workflow !== 'string') sqlOptions.input_checked = true;
        if (version !== undefined) sqlOptions.version = version;
        items.push({ input: encodeJson(input, `input of ${name}`, limit), options: sqlOptions });
      } catch (error) {
        if (error instanceof Error) error.message = `${at}: ${error.message}`;
        throw error;
      }
    }
    if (this.options.tracing) {
      this.tracing ??= loadTracing(this.options.tracing);
      const tracing = await this.tracing;
      for (const item of items) item.options.metadata = tracing.inject(item.options.metadata);
    }
    // Register last: bad input above must write nothing, not even a registry row.
    if (typeof workflow !== 'string') {
      if (options.tx) await this.registry.registerIn(db, workflow);
      else await this.register(workflow);
    }
    // Without tx, a batch rolled back for certain (40001, 40P01) is sent again, as start's is.
    const ids = options.tx ? await runStartMany(db, name, items) : await withRollbackRetries(() => runStartMany(db, name, items));
    return ids.map((id) => ({ id, result: (o) => this.result(id, o) }));
  }

  /**
   * Send a signal to a run (by id or by workflow and key). Buffered until the
   * run waits for it. With `id`, a repeat is dropped: returns false; and
   * without `tx`, a send whose connection is lost is sent again (up to 5
   * tries; if the lost try had committed, this one is the repeat: false).
   *
   * @example
   * await client.signal({ workflow: approval, key: 'order-7' }, approved, { by: 'ada' }, { id: 'mail-123' });
   */
  async signal<S extends SignalDefinition<any, any> | string>(
    run: RunRef, signal: S, payload: SignalPayload<S>, options: { id?: string | undefined; tx?: Executor | undefined } = {},
  ): Promise<boolean> {
    refuseUnknownKeys(options, ['id', 'tx'], 'signal options');
    const db = this.exec(options.tx);
    const { name, text } = await this.signalArguments(signal, payload, db);
    checkSignalId(options.id, 'signal id');
    const id = await this.resolve(run, db);
    // Without the caller's transaction, a send rolled back for certain (a
    // deadlock with a checkpoint locking the same runs) is sent again; one
    // with an id after a lost connection too (a repeat is dropped by its id).
    if (options.tx) return signalSend(db, id, name, text, options.id ?? null);
    return withSendRetries(options.id, () => signalSend(db, id, name, text, options.id ?? null));
  }

  /**
   * Ask a run and wait for its answer (decision 0044): sends `signal` with
   * `payload` (checked as `client.signal` checks it) under the request's
   * id, then waits until the run answers it with `ctx.reply` (returns the
   * reply) or `ctx.replyError` (rejects with `RequestRejectedError`). The
   * run stays as it is otherwise: a request is a message and a value of
   * its history, not a new run. A repeat with the same `id` sends nothing
   * and waits for the same answer, even after the run ended or continued
   * as new (`trellis.run_request`); by `{ workflow, key }`, a repeat after
   * the key changed hands is answered by the run of the key that got it
   * (`trellis.request_send`). With `start`, the key's run is started if it
   * has none unfinished (request with start). Rejects with `NotFoundError` for an
   * unknown run, when the run ends without answering, or when the
   * execution that read the request was discarded by continue-as-new
   * before it answered; `IllegalTransitionError` for a run that has
   * already ended (and never had the request); `TimeoutError` after
   * `timeout` (the request stays delivered). A send whose connection is
   * lost is sent again (up to 5 tries; a try that had committed makes the
   * next one a repeat). Woken by
   * `trellis:run_value`, as `waitForValue` is.
   *
   * Typed by the signal: for one defined with `{ reply }` the call
   * resolves to that schema's output (checked by the run's `ctx.reply`),
   * and the payload is checked against the payload schema's type. An
   * explicit type argument (`request<{ price: number }>(…)`) names the
   * answer of a signal without `{ reply }`; the payload is then checked at
   * run time only.
   *
   * @example
   * // withdraw = defineSignal('withdraw', z.object({ amount: z.number() }), { reply: z.object({ balance: z.number() }) })
   * const { balance } = await client.request({ workflow: 'account', key: 'acct-42' }, withdraw, { amount: 30 }, { timeout: '10s' });
   */
  request<S extends SignalDefinition<any, any, any, any>>(run: RunRef, signal: S, payload: SignalPayload<S>, options?: RequestOptions): Promise<SignalReply<S>>;
  request<R = unknown, S extends SignalDefinition<any, any> | string = SignalDefinition<any, any> | string>(
    run: RunRef, signal: S, payload: SignalPayload<S>, options?: RequestOptions): Promise<R>;
  async request(run: RunRef, signal: SignalDefinition<any, any> | string, payload: unknown, options: RequestOptions = {}): Promise<unknown> {
    refuseUnknownKeys(options, REQUEST_OPTIONS, 'request options');
    const requestId = options.id === undefined ? crypto.randomUUID() : options.id;
    const key = replyKey(requestId, 'request id');
    const timeoutMs = options.timeout === undefined ? undefined : toMs(options.timeout, 'timeout');
    const db = this.exec(undefined);
    let runId: string;
    if (options.start !== undefined) {
      const ref = runRefOf(run);
      if (typeof ref === 'string') throw new ValidationError('a request with start names its run by { workflow, key }, not by id');
      if (typeof options.start !== 'object' || options.start === null) throw new ValidationError('start must be { input, ...startOptions }');
      const { input, ...startOptions } = options.start;
      // The request's id is the signal's: a repeat starts nothing and is answered by the same reply.
      // The definition when given: the input is checked against its schema, and it is registered.
      const workflow = (run as { workflow: WorkflowDefinition | string }).workflow;
      runId = (await this.signalWithStart(workflow as string, input, signal, payload,
        { ...startOptions, key: ref.key, signalId: requestId })).id;
    } else {
      const { name, text } = await this.signalArguments(signal, payload, db);
      const ref = runRefOf(run);
      // A repeat of a delivered id is not sent again and is answered by the same reply; by key, a
      // repeat goes to the run of the key that received it, not to the key's next run.
      // Sent again after a lost connection too: a try that had committed makes the next one a repeat.
      runId = typeof ref === 'string'
        ? await withSendRetries(requestId, async () => (await signalSend(db, ref, name, text, requestId), ref))
        : (await withSendRetries(requestId, () => requestSend(db, ref.workflow, ref.key, name, text, requestId))).id;
    }
    let reply: ReplyRecord;
    try {
      reply = await this.results.waitRead<ReplyRecord>(runId, timeoutMs, `answer request ${requestId}`, () => this.readRequest(runId, requestId));
    } catch (error) {
      if (error instanceof TimeoutError) {
        throw new TimeoutError(`run ${runId} did not answer request ${requestId} within ${timeoutMs} ms; it may still answer: request again with id ${quoteValue(requestId)} to wait for it`,
          { details: { runId, requestId }, cause: error });
      }
      throw error;
    }
    if (typeof reply === 'object' && reply !== null && 'error' in reply && !('value' in reply)) {
      throw new RequestRejectedError(runId, requestId, reply.error?.message ?? 'request rejected', { details: { runId, requestId, error: reply.error } });
    }
    return (typeof reply === 'object' && reply !== null && 'value' in reply ? reply.value : reply);
  }

  /** One look at a request (trellis.run_request): its reply, or why none will come, or undefined while one may. */
  private async readRequest(runId: string, requestId: string): Promise<{ value: ReplyRecord } | { error: Error } | undefined> {
    const [row] = await queryRows<{ status: RunState; reply: ReplyRecord | null; replied_at: Date | null; lost: boolean }>(this.prepared.pool,
      'select status, reply, replied_at, lost from trellis.run_request($1, $2)', [runId, requestId], 'trellis_run_request');
    if (!row) return { error: new NotFoundError(`run ${runId} does not exist`) };
    if (row.replied_at) {
      // An answer is never SQL null ({"value": …} or {"error": …}): null is one run_scrub removed.
      if (row.reply === null) return { error: new NotFoundError(`run ${runId} answered request ${requestId}, but its data was scrubbed`, { details: { runId, requestId, status: row.status } }) };
      return { value: row.reply };
    }
    const details = { runId, requestId, status: row.status };
    if (row.lost) {
      return { error: new NotFoundError(`run ${runId} read request ${requestId} but no wait of its history holds it (continue-as-new discarded the execution that read it, or the wait's schema refused the payload): no answer will come`, { details }) };
    }
    if (FINISHED_STATES.includes(row.status)) return { error: new NotFoundError(`run ${runId} ${row.status} without answering request ${requestId}`, { details }) };
    return undefined;
  }

  /**
   * Cancel a run and its children (unless abandoned). The code sees
   * `CancelledError` at its next call and running steps' signals abort; the
   * run keeps `reason` in its error. Returns its status.
   *
   * @example
   * await client.cancel(run.id, 'customer left');
   * await client.cancel({ workflow: 'onboard', key: 'onboard-ada' });
   */
  cancel(run: RunRef, reason?: string): Promise<RunState> {
    return this.control('cancel', run, reason);
  }

  /**
   * Park a run (a running one after its current step). Returns its status.
   *
   * @example
   * await client.pause(run.id, 'supplier outage');
   */
  pause(run: RunRef, reason?: string): Promise<RunState> {
    return this.control('pause', run, reason);
  }

  /**
   * Resume a paused run: it continues where it stopped, not before its
   * `runAt` or the end of a retry backoff it was paused in (a dead-lettered
   * run retries at once). Returns its status.
   *
   * @example
   * await client.resume(run.id);
   */
  resume(run: RunRef): Promise<RunState> {
    return this.control('resume', run);
  }

  /**
   * Run a failed run again from its first failed call; calls before it stay
   * memoised. Returns its status (`pending`).
   *
   * @example
   * for (const r of (await client.list({ workflow: 'onboard', status: 'failed' })).runs) await client.retry(r.id);
   */
  retry(run: RunRef): Promise<RunState> {
    return this.control('retry', run);
  }

  /**
   * Cancel every unfinished run matching `filter`, as `cancel` does (each
   * with its `onParentCancel: 'cancel'` children): runs that never started
   * end at once, started ones are asked (running runs already asked are
   * left alone). In batches of `batchSize` runs (each its own transaction
   * unless `tx` is given; a batch that hits a deadlock or a lost connection
   * is run again, up to 10 tries: past that the call rejects, and the
   * batches before it stay done, as `onBatch` reported). See {@link ControlFilter}.
   *
   * @example
   * const { changed } = await client.cancelMany({ workflow: 'import', status: ['pending', 'waiting'] }, { reason: 'bad file' });
   */
  cancelMany(filter: ControlFilter, options: ControlManyOptions = {}): Promise<ControlManyResult> {
    return this.controlMany('cancel', filter, options);
  }

  /**
   * Retry every failed run matching `filter`, as `retry` does (scrubbed runs
   * and runs whose key a later start took are passed over). Batches as
   * `cancelMany`.
   *
   * @example
   * // The bug is fixed and deployed: run again what it failed in the last two hours.
   * await client.retryMany({ workflow: 'onboard', status: 'failed', createdAfter: new Date(Date.now() - 7_200_000) });
   */
  retryMany(filter: ControlFilter, options: Omit<ControlManyOptions, 'reason'> = {}): Promise<ControlManyResult> {
    return this.controlMany('retry', filter, options);
  }

  /**
   * Pause every pending, waiting or running run matching `filter`, as
   * `pause` does, and hold the parked runs its `resumeAfter` would resume
   * (as `pause` of one does). Batches as `cancelMany`.
   *
   * @example
   * await client.pauseMany({ queue: 'emails' }, { reason: 'provider outage' });
   */
  pauseMany(filter: ControlFilter, options: ControlManyOptions = {}): Promise<ControlManyResult> {
    return this.controlMany('pause', filter, options);
  }

  /**
   * Resume every paused run matching `filter` (and withdraw the pause asked
   * of running ones), as `resume` does. Batches as `cancelMany`.
   *
   * @example
   * await client.resumeMany({ queue: 'emails', status: 'paused' });
   */
  resumeMany(filter: ControlFilter, options: Omit<ControlManyOptions, 'reason'> = {}): Promise<ControlManyResult> {
    return this.controlMany('resume', filter, options);
  }

  private async controlMany(verb: ControlVerb, filter: ControlFilter, options: ControlManyOptions): Promise<ControlManyResult> {
    for (const name in options) {
      if (!['reason', 'batchSize', 'tx', 'onBatch', 'dryRun'].includes(name) || (name === 'reason' && verb !== 'cancel' && verb !== 'pause')) {
        throw new ValidationError(`unknown ${verb}Many option ${quoteValue(name)}`);
      }
    }
    const reason = options.reason;
    if (reason !== undefined && reason !== null && typeof reason !== 'string') {
      throw new ValidationError(`the ${verb} reason must be text, not ${quoteValue(reason)}`);
    }
    const batch = options.batchSize ?? 1000;
    if (!Number.isInteger(batch) || batch < 1 || batch > 10_000) throw new ValidationError('batchSize must be an integer from 1 to 10000');
    if (options.dryRun !== undefined && typeof options.dryRun !== 'boolean') throw new ValidationError('dryRun must be true or false');
    const sqlFilter = controlFilter(filter);
    const db = this.exec(options.tx);
    const result: ControlManyResult = { changed: [], unchanged: [] };
    let after: string | null = null;
    // A dry run reads what the control would change (nothing is written, so any fault may read again).
    const send = (from: string | null): Promise<ControlManyRow[]> => options.dryRun
      ? runControlPreview(db, verb, sqlFilter, batch, from).then((rows) => rows.map((r) => ({ id: r.id, status: 'pending', changed: true })))
      : runControlMany(db, verb, sqlFilter, batch, from, reason);
    for (;;) {
      const from: string | null = after;
      const rows: ControlManyRow[] = await (options.tx ? send(from) : withTransientRetries(() => send(from), 10));
      for (const r of rows) (r.changed ? result.changed : result.unchanged).push(r.id);
      options.onBatch?.({ changed: [...result.changed], unchanged: [...result.unchanged] });
      if (rows.length < batch) return result;
      after = rows[rows.length - 1]!.id;
    }
  }

  /**
   * Fork a run: start a new run of its workflow with its current input that
   * keeps the settled results of its calls before call `fromCall` (the
   * numbers `client.history` and `trellis show` print; 0, the default, keeps
   * none) and runs that call and the rest again. The original is untouched,
   * whatever its state. By default the fork has the original's version,
   * queue, priority, concurrency key and metadata, and no key or deadline;
   * the options set them. Pass `version` to run the rest on newer code (it
   * must make the same calls before `fromCall`). The new run's `forkedFrom`
   * names the original. `NotFoundError` for an unknown run, `ValidationError`
   * for bad options or a `fromCall` past the call after the run's last
   * (which would run nothing again), `IllegalTransitionError` for a scrubbed run.
   *
   * @example
   * // Step 3 ("charge") used a bad price list: run it and what follows again on version 2.
   * const fork = await client.fork(runId, { fromCall: 3, version: '2' });
   * console.log(await fork.result());
   */
  async fork(run: RunRef, options: ForkOptions = {}): Promise<RunHandle<unknown>> {
    const fromCall = options.fromCall ?? 0;
    if (!Number.isInteger(fromCall) || fromCall < 0 || fromCall > 2_147_483_647) {
      throw new ValidationError(`fromCall must be a whole number from 0 (a call number), not ${quoteValue(fromCall)}`);
    }
    const sqlOptions: RunStartOptions = runOptions(options, Number.MAX_SAFE_INTEGER, FORK_OPTIONS); // the size is run_start's check (TR005)
    if (options.version !== undefined) sqlOptions.version = assertName(options.version, 'version');
    const db = this.exec(options.tx);
    const id = await runFork(db, await this.resolve(run, db), fromCall, sqlOptions);
    return { id, result: (o) => this.result(id, o) };
  }

  /**
   * Merge `fields` into a run's metadata, as the run's own
   * `ctx.setMetadata` does: a field given a value is set, one given `null`
   * removed, the others kept; returns the metadata as it now is. For an
   * operator's marks ("reviewed", a ticket number) that searches and bulk
   * controls then filter on. Any run but a scrubbed one, in any status; the
   * newest write of a field wins, whether the run's or this.
   * `ValidationError` for fields that are not a plain object of JSON values
   * or name an empty field, `traceparent` or `tracestate`;
   * `PayloadTooLargeError` if the result is over `max_payload_bytes`;
   * `NotFoundError` for an unknown run; `IllegalTransitionError` for a
   * scrubbed one. With `tx`, the change commits with the caller's transaction.
   *
   * @example
   * await client.setMetadata(runId, { reviewedBy: 'ada', ticket: 'OPS-1234' });
   * const { runs } = await client.list({ metadata: { reviewedBy: 'ada' } });
   */
  async setMetadata(run: RunRef, fields: Record<string, unknown>, options: { tx?: Executor | undefined } = {}): Promise<Record<string, unknown>> {
    assertJsonObject(fields, 'the metadata fields', 'fields');
    assertForeignIdField(fields, 'the metadata fields');
    const text = encodeJson(fields, 'metadata fields', Number.MAX_SAFE_INTEGER); // the merged size is run_set_metadata's check (TR005)
    const db = this.exec(options.tx);
    const id = await this.resolve(run, db);
    return options.tx ? runSetMetadata(db, id, text) : withRollbackRetries(() => runSetMetadata(db, id, text));
  }

  /**
   * Remove a finished run's payloads (PII): input, output, metadata, step
   * results, signal payloads and error messages, keeping its skeleton
   * (status, step names and statuses, timestamps). Returns when it was
   * scrubbed; calling again changes nothing. `IllegalTransitionError` for an
   * unfinished run. A scrubbed run cannot be retried; scrub its children too.
   *
   * @example
   * const email = 'ada@example.com';
   * const { runs } = await client.list({ workflow: 'signup', status: ['completed', 'failed', 'cancelled'] });
   * for (const r of runs.filter((r) => (r.input as { email?: string }).email === email)) await client.scrub(r.id);
   */
  async scrub(run: RunRef): Promise<Date> {
    const db = this.exec();
    return runScrub(db, await this.resolve(run, db));
  }

  private async control(verb: ControlVerb, run: RunRef, reason?: string): Promise<RunState> {
    if (reason !== undefined && reason !== null && typeof reason !== 'string') {
      throw new ValidationError(`the ${verb} reason must be text, not ${quoteValue(reason)}`);
    }
    const db = this.exec();
    const id = await this.resolve(run, db);
    // A control rolled back for certain (40001, or 40P01: a deadlock with a
    // worker's checkpoint that locks the same runs in another order, such as
    // a run waiting on this one parking, decision 0039) is run again: it
    // changed nothing.
    return withRollbackRetries(() => runControl(db, verb, id, reason));
  }

  private async resolve(run: RunRef, db: ReturnType<typeof toQueryable>): Promise<string> {
    const ref = runRefOf(run);
    if (typeof ref === 'string') return ref;
    const id = await runIdByKey(db, ref.workflow, ref.key);
    if (!id) throw new NotFoundError(`no run of ${ref.workflow} with key ${quoteValue(ref.key)}`);
    return id;
  }

  /**
   * Register a definition (name, version, queue, input and signal shapes) so
   * SQL callers can start it by name before any worker of it has started
   * (workers register theirs on start). Idempotent.
   *
   * @example
   * await client.register(onboard);
   * await pool.query(`select trellis.run_start('onboard', '{"email":"ada@example.com"}')`);
   */
  register(workflow: WorkflowDefinition): Promise<void> {
    return this.registry.register(workflow);
  }

  /**
   * Keep finished runs for `keep` after they finish; workers then purge them
   * with their steps and signals. Without `workflow`, the default for every
   * workflow (`null`: keep forever, the default); with it, that workflow's
   * own retention, which wins over the default (`null` removes it). At least
   * 1s. `NotFoundError` for a workflow nobody has registered.
   *
   * @example
   * await client.setRetention('30 days');
   * await client.setRetention('7 years', { workflow: 'invoice' });   // kept longer
   * await client.setRetention('1 hour', { workflow: healthCheck });   // kept shorter
   */
  async setRetention(keep: Duration | null, options: { workflow?: string | WorkflowDefinition | undefined } = {}): Promise<void> {
    const ms = keep === null ? null : toMs(keep, 'retention');
    if (ms !== null && ms < 1000) throw new ValidationError('retention must be at least 1s');
    await retentionSet(this.exec(), ms, optionalWorkflow(options.workflow));
  }

  /**
   * The retention in milliseconds (null: finished runs are kept forever):
   * the default, or with `workflow` the one that applies to it (its own, else the default).
   * Rejects `NotFoundError` for a workflow nobody registered.
   *
   * @example
   * const ms = await client.retention({ workflow: 'invoice' });
   */
  async retention(options: { workflow?: string | WorkflowDefinition | undefined } = {}): Promise<number | null> {
    return retentionGet(this.exec(), optionalWorkflow(options.workflow));
  }

  /**
   * Delete now up to `limit` (default 1000, at most 100000) runs that
   * finished more than `olderThan` ago, oldest first, optionally of one
   * workflow; returns how many. A child is kept while its parent waits on
   * it, and a run while a lifecycle hook of it is not delivered (pending,
   * retrying, running or parked: see docs/events.md, Retention).
   *
   * @example
   * while ((await client.purge({ olderThan: '7 days', workflow: 'report' })) > 0);
   */
  async purge(options: { olderThan: Duration; limit?: number | undefined; workflow?: string | WorkflowDefinition | undefined; tx?: Executor | undefined }): Promise<number> {
    const limit = options.limit ?? 1000;
    if (!Number.isInteger(limit) || limit < 1 || limit > 100_000) throw new ValidationError('purge limit must be an integer from 1 to 100000');
    const workflow = optionalWorkflow(options.workflow);
    return runPurge(this.exec(options.tx), toMs(options.olderThan, 'olderThan'), limit, workflow);
  }

  /**
   * Create a queue or change its flow control, for every worker at once:
   * `concurrency` (runs running across the fleet), `keyConcurrency` (per
   * start's `concurrencyKey`), `rate` (claims per fixed window), `fair`
   * (rotate across keys), `paused`. Absent options are kept, `null` removes
   * one. Enforced by the claim in SQL; see docs/operations.md.
   *
   * @example
   * await client.setQueue('emails', { concurrency: 20, keyConcurrency: 2, rate: { limit: 100, period: '1s' } });
   */
  async setQueue(name: string, options: QueueOptions): Promise<void> {
    await setQueue(this.exec(), assertName(name, 'queue'), options);
  }

  /**
   * Stop claims of a queue on every worker. Runs already running go on until
   * their execution ends or suspends; nothing of the queue is claimed again
   * until `resumeQueue`.
   *
   * @example
   * await client.pauseQueue('emails');   // during an incident
   * await client.resumeQueue('emails');
   */
  async pauseQueue(name: string): Promise<void> {
    await queuePause(this.exec(), assertName(name, 'queue'), true);
  }

  /**
   * Let claims of a paused queue go on.
   *
   * @example
   * await client.resumeQueue('emails');
   */
  async resumeQueue(name: string): Promise<void> {
    await queuePause(this.exec(), assertName(name, 'queue'), false);
  }

  /**
   * Per queue (one, or every queue with a row or a registered workflow): pending,
   * due, running, waiting, lag, runs finished in the last minute, limits and their use.
   * With a `readPool`, read there unless `consistency: 'primary'`.
   *
   * @example
   * for (const q of await client.queueStats()) console.log(q.queue, q.pending, q.running, q.lagMs);
   */
  async queueStats(name?: string, options?: ReadOptions): Promise<QueueStats[]> {
    const queue = name === undefined ? null : assertName(name, 'queue');
    return readQueueStats((await this.reads.target(options)).query, queue);
  }

  /**
   * The outbox: every run transition and step result, in commit-safe order
   * (an event committed late is never skipped), as an async iterator. See
   * docs/events.md. With a `readPool`, one iteration reads from one server,
   * chosen at its first read (the standby unless `consistency: 'primary'`).
   *
   * @example
   * for await (const event of client.events({ workflows: ['order'], kinds: ['completed'], signal })) {
   *   console.log(event.runId, event.kind, event.cursor);
   * }
   */
  events(options: EventsOptions & ReadOptions = {}): AsyncGenerator<RunEvent> {
    refuseUnknownKeys(options, EVENTS_OPTIONS, 'events options');
    return readEvents(this.reads.pinned(options), options, this.log);
  }

  /**
   * A durable named consumer of the outbox (created if new), whose position
   * moves only when it acknowledges an event.
   *
   * @example
   * const mailer = await client.eventConsumer('mailer', { kinds: ['completed'] });
   * for await (const event of mailer.events({ signal })) {
   *   await notify(event.runId);
   *   await mailer.ack(event);
   * }
   */
  eventConsumer(name: string, options: ConsumerOptions = {}): Promise<EventConsumer> {
    return EventConsumer.open(this.pool, name, options, this.log);
  }

  /** The caller's transaction or the pool, as engine statements use it (unprepared if so configured). */
  private exec(tx?: Executor): Queryable {
    return this.reads.writer(tx ? this.prepared.within(toQueryable(tx)) : this.prepared.pool);
  }

  /**
   * The schema check before a client's first read, through the server the
   * read goes to (a standby holds the primary's schema_info), with the
   * session settings reads depend on (ConfigurationError): kept once it
   * passed; after a start or signal made the schema check, only the settings.
   */
  private schemaRead(through: Queryable): Promise<unknown> {
    if (!this.schemaReadChecked) {
      // The session settings the reads depend on are checked in any case
      // (a start or signal works under them; reads would come back wrong).
      const schemaKnown = this.payloadLimitValue !== undefined;
      const pending = queryRows<{ migration: number | null; sql_revision: number | null; date_style: string; float_digits: string }>(through,
        schemaKnown ? `select ${SESSION_SETTINGS_SQL}` : `select ${SCHEMA_INFO_SQL}, ${SESSION_SETTINGS_SQL}`)
        .then(([row]) => {
          if (!schemaKnown) checkMigration(row?.migration, row?.sql_revision);
          assertSessionSettings(row);
        });
      this.schemaReadChecked = pending;
      pending.catch(() => {
        if (this.schemaReadChecked === pending) this.schemaReadChecked = undefined;
      });
    }
    return this.schemaReadChecked;
  }

  /**
   * max_payload_bytes, read once (through `db`, so a caller's transaction
   * needs no second connection), in the same query as the schema's
   * migration: a schema behind this code is a SchemaVersionError before the
   * first start or signal, not an obscure refusal of an option it lacks.
   */
  private payloadLimit(db: Queryable = this.pool): Promise<number> {
    if (!this.maxPayloadBytes) {
      const pending = queryRows<{ limit: number; migration: number | null; sql_revision: number | null }>(db,
        `select ${PAYLOAD_LIMIT_SQL} as limit, ${SCHEMA_INFO_SQL}`).then(([row]) => {
        checkMigration(row?.migration, row?.sql_revision);
        this.payloadLimitValue = row!.limit;
        return row!.limit;
      });
      this.maxPayloadBytes = pending;
      pending.catch(() => {
        if (this.maxPayloadBytes === pending) this.maxPayloadBytes = undefined;
      });
    }
    return this.maxPayloadBytes;
  }

  /**
   * The first start without a transaction: the limit, the schema check, the
   * registration of `definition` (unless done) and the start in one statement
   * (src/db/runs.ts runStartFirst). A statement that fails before the schema
   * check could run (a schema that lacks a function) is explained by the
   * separate check.
   */
  private async firstStart(db: Queryable, name: string, text: string, options: RunStartOptions,
    definition: WorkflowDefinition | undefined): Promise<string> {
    const row = definition ? this.registry.unregistered(definition) : undefined;
    let first;
    try {
      first = await runStartFirst(db, name, text, options, row, SCHEMA_MIGRATION, SCHEMA_SQL_REVISION);
    } catch (error) {
      await this.payloadLimit(db);
      throw error;
    }
    checkMigration(first.migration, first.sqlRevision);
    this.payloadLimitValue = first.maxPayloadBytes;
    this.maxPayloadBytes ??= Promise.resolve(first.maxPayloadBytes);
    if (definition && row) this.registry.noteRegistered(definition);
    return first.id as string;
  }

  /**
   * One run, by its id or by `{ workflow, key }` (the run holding the key
   * now), or undefined. See `Run` for its fields. With a `readPool`, read
   * there (a run it lacks yet is read from the primary); `consistency:
   * 'primary'` reads the primary.
   *
   * @example
   * const r = await client.get(run.id);
   * if (r?.status === 'failed') console.error(r.error);
   * const current = await client.get({ workflow: 'sync-account', key: 'account-42' });
   */
  async get(run: RunRef, options?: ReadOptions): Promise<Run | undefined> {
    const ref = runRefOf(run);
    if (typeof ref !== 'string' && typeof ref.key !== 'string') {
      throw new ValidationError(`a run is its id (a UUID) or { workflow, key }, not ${quoteValue(run)}`);
    }
    const row = await this.reads.read(options, (t) => {
      const q = t.db.selectFrom('trellis.runs').select(RUN_COLUMNS);
      return (typeof ref === 'string' ? q.where('id', '=', ref) : q.where('workflow', '=', ref.workflow).where('key', '=', ref.key))
        .executeTakeFirst().catch(rethrow);
    }, (r) => r === undefined);
    return row ? toRun(row as never) : undefined;
  }

  /** The three columns result() needs, by primary key (lighter than get()). */
  private async outcome(runId: string): Promise<Pick<Run, 'status' | 'output' | 'error'> | undefined> {
    const rows = await queryRows<Pick<Run, 'status' | 'output' | 'error'>>(this.prepared.pool,
      'select status, output, error from trellis.runs where id = $1', [runId], 'trellis_run_outcome');
    return rows[0];
  }

  /** The run's status, then the entries of its stream `key` after `after` (trellis.run_stream; undefined: no such run). */
  private async readStreamRows(runId: string, key: string, after: string | null): Promise<{ status: string; entries: StreamRow[] } | undefined> {
    const [run] = await queryRows<{ status: string }>(this.prepared.pool, 'select status from trellis.runs where id = $1', [runId], 'trellis_run_status');
    if (!run) return undefined;
    return { status: run.status, entries: await streamRows(this.prepared.pool, runId, key, after, 1000) };
  }

  /** trellis.run_value: the run's status and its value of `key` (undefined: no such run). */
  private async readValue(query: Queryable, runId: string, key: string): Promise<{ status: string; value: unknown; setAt: Date | null } | undefined> {
    const [row] = await queryRows<{ status: string; value: unknown; set_at: Date | null }>(query,
      'select status, value, set_at from trellis.run_value($1, $2)', [runId, key], 'trellis_run_value');
    return row && { status: row.status, value: row.value, setAt: row.set_at };
  }

  /**
   * The value a run set under `key` with `ctx.setValue` and when, or
   * undefined while it has set none (or there is no such run). With a
   * `readPool`, read there unless `consistency: 'primary'`; a value not
   * found there is looked for on the primary.
   *
   * @example
   * const link = await client.value<string>(run.id, 'payment-url');
   * if (link) console.log(link.value, 'set at', link.setAt);
   */
  async value<T = unknown>(runId: string, key: string, options?: ReadOptions): Promise<RunValue<T> | undefined> {
    assertRunId(runId);
    assertName(key, 'value');
    const row = await this.reads.read(options, (t) => this.readValue(t.query, runId, key).catch(rethrow), (r) => !r?.setAt);
    return row?.setAt ? { key, value: row.value as T, setAt: row.setAt } : undefined;
  }

  /**
   * The entries of a run's stream `key` there are now, after `after` (a
   * cursor), at most `limit` (default 1000, at most 10,000), without
   * waiting; `closed` once the run closed the stream (`ctx.closeStream`) or
   * ended (completed, failed or cancelled) and the page holds its last entry.
   * Empty for a run that does not exist. Read as `value()` is (a
   * `readPool` unless `consistency: 'primary'`). To wait for entries, use
   * `readStream`.
   *
   * @example
   * const page = await client.streamEntries(run.id, 'progress', { after: savedCursor });
   * for (const e of page.entries) console.log(e.cursor, e.value);
   */
  async streamEntries<T = unknown>(runId: string, key: string,
    options: { after?: string | undefined; limit?: number | undefined } & ReadOptions = {}): Promise<{ entries: StreamEntry<T>[]; closed: boolean }> {
    assertRunId(runId);
    assertName(key, 'stream');
    const after = streamCursor(options.after);
    const limit = options.limit ?? 1000;
    if (!Number.isInteger(limit) || limit < 1 || limit > 10_000) throw new ValidationError(`limit must be an integer from 1 to 10000, not ${quoteValue(limit)}`);
    // The run's status first, then its entries: a run found finished wrote
    // nothing after, so a page that is not full holds the stream's last entry.
    const { finished, rows } = await this.reads.read(options, async (t) => {
      const [run] = await queryRows<{ status: RunState }>(t.query, 'select status from trellis.runs where id = $1', [runId], 'trellis_run_status').catch(rethrow);
      const entries = run ? await streamRows(t.query, runId, key, after ?? null, limit).catch(rethrow) : [];
      return { finished: run !== undefined && FINISHED_STATES.includes(run.status), rows: entries };
    }, (r) => r.rows.length === 0 && !r.finished);
    const closedAt = rows.findIndex((r) => r.closed);
    const kept = closedAt < 0 ? rows : rows.slice(0, closedAt);
    // Closed by ctx.closeStream, or by the run's end (once the page holds its last entry).
    return { entries: kept.map((r) => ({ value: r.value as T, cursor: r.cursor, writtenAt: r.writtenAt })), closed: closedAt >= 0 || (finished && rows.length < limit) };
  }

  /**
   * Every key a run set with `ctx.setValue`, with its newest value, by
   * key (empty for a run that set none or does not exist). Read as
   * `value()` is.
   *
   * @example
   * for (const v of await client.values(run.id)) console.log(v.key, v.value);
   */
  async values(runId: string, options?: ReadOptions): Promise<RunValue[]> {
    assertRunId(runId);
    const rows = await this.reads.read(options, (t) => queryRows<{ key: string; value: unknown; set_at: Date }>(t.query,
      'select key, value, set_at from trellis.run_values($1)', [runId]).catch(rethrow), (r) => r.length === 0);
    return rows.map((r) => ({ key: r.key, value: r.value, setAt: r.set_at }));
  }

  /**
   * Read the entries a run writes to its stream `key` with
   * `ctx.writeStream`, in order, as they commit: an async iterator that
   * waits for the next entry (woken by `trellis:run_value`, as
   * `waitForValue` is) and ends when the run closes the stream
   * (`ctx.closeStream`) or finishes. Each entry carries a `cursor`; pass the
   * last one as `after` to read on after a reconnect. `signal` stops a
   * waiting reader at once (the iteration throws its reason), as `break`
   * does quietly. Rejects with `NotFoundError` for a run that does not
   * exist and, with `timeout`, `TimeoutError` when no entry comes within
   * it. Reads the primary.
   *
   * @example
   * for await (const { value } of client.readStream<string>(run.id, 'tokens')) process.stdout.write(value);
   */
  readStream<T = unknown>(runId: string, key: string, options: ReadStreamOptions = {}): AsyncIterable<StreamEntry<T>> {
    assertRunId(runId);
    assertName(key, 'stream');
    streamCursor(options.after);
    const timeoutMs = options.timeout === undefined ? undefined : toMs(options.timeout, 'timeout');
    const outer = options.signal;
    if (outer !== undefined && !(outer instanceof AbortSignal)) throw new ValidationError('readStream signal must be an AbortSignal');
    const results = this.results;
    const first = options.after ?? null;
    return {
      [Symbol.asyncIterator](): AsyncIterator<StreamEntry<T>> {
        // Not an async generator: its return() would wait behind a pending
        // next(), so a reader whose client went away (an SSE connection
        // closed while the run writes nothing) could not be stopped. Here
        // return() and the caller's signal end the wait at once.
        const stop = new AbortController();
        const onOuter = () => stop.abort(outer?.reason);
        outer?.addEventListener('abort', onOuter, { once: true });
        let after = first;
        let buffered: StreamRow[] = [];
        let ended = false;
        let lastBatch = false;
        const end = (): IteratorResult<StreamEntry<T>> => {
          ended = true;
          outer?.removeEventListener('abort', onOuter);
          return { done: true, value: undefined };
        };
        return {
          async next() {
            for (;;) {
              if (ended) return { done: true, value: undefined };
              const e = buffered.shift();
              if (e) {
                after = e.cursor;
                if (e.closed) return end();
                return { done: false, value: { value: e.value as T, cursor: e.cursor, writtenAt: e.writtenAt } };
              }
              if (lastBatch) return end();
              if (outer?.aborted) {
                end();
                throw outer.reason;
              }
              let batch;
              try {
                batch = await results.waitStream(runId, key, after, timeoutMs, stop.signal);
              } catch (error) {
                if (stop.signal.aborted && !outer?.aborted) return end(); // return() was called
                end();
                throw error;
              }
              buffered = batch.entries;
              lastBatch = batch.done;
            }
          },
          async return() {
            const result = end();
            stop.abort();
            return result;
          },
        };
      },
    };
  }

  /**
   * Wait until a run sets `key` with `ctx.setValue` and return the value
   * (at once if it already has). Woken by `trellis:run_value`, which the
   * server sends while the client watches (as for `result()`, decision
   * 0029), with a slow poll behind it. Rejects with `NotFoundError` for a
   * run that does not exist or that ended without setting the key, and
   * with `TimeoutError` after `timeout`. Reads the primary.
   *
   * @example
   * const run = await client.start(fulfil, { orderId: 'o-17' });
   * const url = await client.waitForValue<string>(run.id, 'payment-url', { timeout: '10s' });
   */
  async waitForValue<T = unknown>(runId: string, key: string, options: { timeout?: Duration | undefined } = {}): Promise<T> {
    assertRunId(runId);
    assertName(key, 'value');
    const timeoutMs = options.timeout === undefined ? undefined : toMs(options.timeout, 'timeout');
    return this.results.waitValue<T>(runId, key, timeoutMs);
  }

  /**
   * Why a run has not finished, for result()'s TimeoutError: above all, a
   * due run that no worker ever claimed (nothing serves its workflow,
   * version or queue), which a caller otherwise reads as a slow run.
   */
  private async stall(runId: string): Promise<string | undefined> {
    const [row] = await queryRows<{ status: string; workflow: string; version: string; queue: string; claimed: boolean; due: boolean }>(this.prepared.pool,
      `select status, workflow, version, queue, started_at is not null as claimed, run_at <= trellis.now() as due
         from trellis.runs where id = $1`, [runId]);
    if (!row) return undefined;
    if (row.status === 'pending' && row.due && !row.claimed) {
      return `it is pending and no worker has claimed it: is a worker serving workflow ${row.workflow} version ${row.version} on queue ${row.queue} running?`;
    }
    return `it is ${row.status}`;
  }

  /**
   * Runs newest first, filtered (`ListFilter`), a page at a time:
   * `nextCursor` is set while there are more. With a `readPool`, read there
   * unless `consistency: 'primary'`.
   *
   * @example
   * const { runs, nextCursor } = await client.list({ workflow: 'onboard', status: 'waiting', limit: 20 });
   * const next = nextCursor ? await client.list({ workflow: 'onboard', status: 'waiting', limit: 20, cursor: nextCursor }) : undefined;
   */
  async list(filter: ListFilter & ReadOptions = {}): Promise<{ runs: Run[]; nextCursor: string | undefined }> {
    // A misspelt filter (workfow) would list every run.
    refuseUnknownKeys(filter, LIST_OPTIONS, 'list filter');
    const limit = filter.limit ?? 50;
    if (!Number.isInteger(limit) || limit < 1 || limit > 1000) throw new ValidationError('limit must be 1-1000');
    const target = await this.reads.target(filter);
    let q = target.db.selectFrom('trellis.runs').select(RUN_COLUMNS).select(sql<string>`created_at::text`.as('created_at_text'));
    if (filter.workflow !== undefined) q = q.where('workflow', '=', nameOf(filter.workflow, 'workflow'));
    if (filter.queue !== undefined) q = q.where('queue', '=', assertName(filter.queue, 'queue'));
    if (filter.key !== undefined) q = q.where('key', '=', filter.key);
    if (filter.status !== undefined) {
      const states = (Array.isArray(filter.status) ? filter.status : [filter.status]) as RunState[];
      for (const s of states) if (!RUN_STATES.includes(s)) throw new ValidationError(`unknown run status ${quoteValue(s)}`);
      // One equality per state, not `in`: each is then its own index probe
      // (runs_status_created_idx has no running runs, runs_lease_idx has them).
      q = q.where((eb) => eb.or(states.map((s) => eb('status', '=', s))));
    }
    if (filter.metadata !== undefined) {
      q = q.where(sql<boolean>`metadata @> ${metadataFilter(filter.metadata)}::jsonb`);
    }
    if (filter.createdAfter) q = q.where('created_at', '>', filter.createdAfter);
    if (filter.createdBefore) q = q.where('created_at', '<', filter.createdBefore);
    if (filter.cursor) {
      const c = decodeCursor(filter.cursor);
      q = q.where(sql<boolean>`(created_at, id) < (${c.createdAt}::timestamptz, ${c.id}::uuid)`);
    }
    const rows = await q.orderBy('created_at', 'desc').orderBy('id', 'desc').limit(limit + 1).execute().catch(rethrow);
    const page = rows.slice(0, limit);
    const last = page.at(-1);
    return {
      runs: page.map((r) => toRun(r as never)),
      nextCursor: rows.length > limit && last ? encodeCursor(last.created_at_text, last.id) : undefined,
    };
  }

  /**
   * The run's recorded calls in order: by execution (continue-as-new), then
   * call number. See `Step` for the fields. With a `readPool`, read there
   * (when it has none yet, from the primary) unless `consistency: 'primary'`.
   *
   * @example
   * for (const s of await client.history(run.id)) console.log(s.seq, s.kind, s.name, s.status, s.attempts);
   */
  async history(runId: string, options?: ReadOptions): Promise<Step[]> {
    assertRunId(runId);
    // The steps' primary key leads with the run's bucket (docs/scaling.md).
    const rows = await this.reads.read(options, (t) => t.db.selectFrom('trellis.steps').selectAll()
      .where('bucket', 'in', (eb) => eb.selectFrom('trellis.runs').select('bucket').where('id', '=', runId))
      .where('run_id', '=', runId)
      .orderBy('execution').orderBy('seq').execute().catch(rethrow), (r) => r.length === 0);
    return rows.map((r) => toStep(r as never));
  }

  /**
   * Await a run's output (throws WorkflowFailedError / CancelledError /
   * TimeoutError). Woken by NOTIFY on trellis:run_finished (which the server
   * sends only while someone watches: the client watches on a session of
   * its own while it has waiters, decision 0029), or at once by a worker on
   * this pool that ended the run; a slow poll covers a notification missed
   * while the listener reconnects. A read that fails with a transient fault
   * (a lost connection, a server restarting) does not end the wait: the
   * next poll or notification reads again, and `timeout` still bounds it.
   *
   * @example
   * const output = await client.result<string>(runId, { timeout: '1 minute' });
   */
  async result<O = unknown>(runId: string, options: { timeout?: Duration | undefined } = {}): Promise<O> {
    assertRunId(runId);
    refuseUnknownKeys(options, ['timeout'], 'result options');
    const timeoutMs = options.timeout === undefined ? undefined : toMs(options.timeout, 'timeout');
    return this.results.wait<O>(runId, timeoutMs);
  }

  /**
   * Close the listener (and the pools, if the client created them). Waits
   * still pending (`result`, `waitForValue`, `readStream`) reject with
   * `ConfigurationError`, as does one begun afterwards.
   *
   * @example
   * process.on('SIGTERM', () => void client.close());
   */
  async close(): Promise<void> {
    await this.results.close();
    await this.reads.close();
    if (this.ownsPool) await this.pool.end();
  }
}

export { FINISHED_STATES };

/** trellis.run_stream: the entries of stream `key` of `runId` after `after`, at most `limit`. */
async function streamRows(query: Queryable, runId: string, key: string, after: string | null, limit: number): Promise<StreamRow[]> {
  const rows = await queryRows<{ cursor: string; value: unknown; closed: boolean; written_at: Date }>(query,
    'select cursor, value, closed, written_at from trellis.run_stream($1, $2, $3, $4)', [runId, key, after, limit], 'trellis_run_stream');
  return rows.map((r) => ({ cursor: r.cursor, value: r.value, closed: r.closed, writtenAt: r.written_at }));
}

/** A stream cursor as readStream and streamEntries take it: `<execution>.<call>` (ValidationError otherwise). */
function streamCursor(after: unknown): string | undefined {
  if (after !== undefined && (typeof after !== 'string' || !STREAM_CURSOR.test(after))) {
    throw new ValidationError(`stream cursor ${quoteValue(after)} is not <execution>.<call> (a cursor readStream returned)`);
  }
  return after;
}

/** A SchemaVersionError unless the schema is at this code's migration (and its functions at this code's revision) or newer. */
function checkMigration(migration: number | null | undefined, sqlRevision: number | null | undefined): void {
  const behind = schemaBehind(migration, sqlRevision, 'this client');
  if (behind) throw new SchemaVersionError(behind);
}

const START_OPTION_NAMES = ['key', 'keyPolicy', 'queue', 'concurrencyKey', 'priority', 'runAt', 'deadline', 'timeLimit',
  'metadata', 'version', 'tx'] as const satisfies readonly (keyof StartOptions)[];
const START_OPTIONS: ReadonlySet<string> = new Set(START_OPTION_NAMES);
// A fork's key names the fork once: no policy (run_fork refuses key_policy).
const FORK_OPTIONS: ReadonlySet<string> = new Set([...START_OPTION_NAMES.filter((n) => n !== 'keyPolicy'), 'fromCall'] satisfies (keyof ForkOptions)[]);
const KEY_POLICIES: readonly string[] = ['return', 'reuse', 'replace', 'supersede'] satisfies KeyPolicy[];
// signalWithStart's start options (its key required, no policy; tx and signalId taken apart).
const SIGNAL_START_OPTIONS: ReadonlySet<string> = new Set(START_OPTION_NAMES.filter((n) => n !== 'keyPolicy' && n !== 'tx'));
const ITEM_OPTIONS: ReadonlySet<string> = new Set(START_OPTION_NAMES.filter((n) => n !== 'tx' && n !== 'version'));

/** A run reference checked: its id, or its workflow's name and its key (ValidationError for anything else). */
function runRefOf(run: RunRef): string | { workflow: string; key: string } {
  if (typeof run === 'string') return assertRunId(run);
  if (typeof run !== 'object' || run === null) {
    throw new ValidationError(`a run is its id (a UUID) or { workflow, key }, not ${quoteValue(run)}`);
  }
  return { workflow: nameOf(run.workflow, 'workflow'), key: run.key };
}

/**
 * A metadata filter as JSON text: a plain object of JSON values
 * (ValidationError otherwise). A value JSON would drop (undefined, a
 * function) is refused, not dropped: `{ tenant: undefined }` would become
 * `{}`, which every run contains.
 */
function metadataFilter(metadata: unknown): string {
  assertJsonObject(metadata, 'a metadata filter', 'metadata');
  return encodeJson(metadata, 'metadata filter', 1_048_576);
}

/** A bulk control's filter as sql/520_control_many.sql takes it, checked here (SQL checks it again). */
function controlFilter(filter: ControlFilter): Record<string, unknown> {
  if (typeof filter !== 'object' || filter === null || Array.isArray(filter)) {
    throw new ValidationError('a run filter is an object: { workflow?, version?, queue?, key?, status?, createdAfter?, createdBefore?, ids?, all? }');
  }
  const known = ['workflow', 'version', 'queue', 'key', 'status', 'createdAfter', 'createdBefore', 'metadata', 'ids', 'all'];
  for (const name in filter) if (!known.includes(name)) throw new ValidationError(`unknown run filter field ${quoteValue(name)}`);
  const out: Record<string, unknown> = {};
  if (filter.workflow !== undefined) out.workflow = nameOf(filter.workflow, 'workflow');
  if (filter.version !== undefined) out.version = assertName(filter.version, 'version');
  if (filter.queue !== undefined) out.queue = assertName(filter.queue, 'queue');
  if (filter.key !== undefined) {
    if (typeof filter.key !== 'string') throw new ValidationError('run filter key must be a string');
    out.key = filter.key;
  }
  if (filter.status !== undefined) {
    const states = (Array.isArray(filter.status) ? filter.status : [filter.status]) as RunState[];
    for (const st of states) if (!RUN_STATES.includes(st)) throw new ValidationError(`unknown run status ${quoteValue(st)}`);
    out.status = states;
  }
  if (filter.metadata !== undefined) out.metadata = JSON.parse(metadataFilter(filter.metadata));
  if (filter.createdAfter !== undefined) out.created_after = toTime(filter.createdAfter, 'createdAfter').toISOString();
  if (filter.createdBefore !== undefined) out.created_before = toTime(filter.createdBefore, 'createdBefore').toISOString();
  if (filter.ids !== undefined) {
    if (!Array.isArray(filter.ids)) throw new ValidationError('run filter ids must be an array of run ids');
    out.ids = filter.ids.map((id) => assertRunId(id));
  }
  if (filter.all !== undefined) {
    if (typeof filter.all !== 'boolean') throw new ValidationError('run filter all must be true or false');
    out.all = filter.all;
  }
  const named = Object.keys(out).filter((k) => k !== 'all' && !(k === 'metadata' && Object.keys(out.metadata as object).length === 0));
  if (named.length === 0 && out.all !== true) {
    throw new ValidationError('a run filter names at least one of workflow, version, queue, key, status, createdAfter, createdBefore, metadata, ids; { all: true } for every run');
  }
  return out;
}

const REQUEST_OPTIONS = optionNames<RequestOptions>({ id: true, timeout: true, start: true });
const READ_OPTIONS = optionNames<ReadOptions>({ consistency: true });
const LIST_OPTIONS = [...optionNames<ListFilter>({ workflow: true, status: true, queue: true, key: true, metadata: true, createdAfter: true, createdBefore: true, limit: true, cursor: true }), ...READ_OPTIONS];
const EVENTS_OPTIONS = [...optionNames<EventsOptions>({ workflows: true, kinds: true, runId: true, after: true, batchSize: true, follow: true, pollInterval: true, signal: true }), ...READ_OPTIONS];

/** A signal's deduplication id: absent, or 1-512 characters (as signal_send takes it). */
function checkSignalId(id: unknown, what: string): void {
  if (id !== undefined && (typeof id !== 'string' || !id.length || id.length > 512)) {
    throw new ValidationError(`${what} must be a string of 1-512 characters`);
  }
}

/**
 * The options of a start (and of a fork) as run_start takes them, checked
 * here so bad input is a ValidationError before any round trip.
 */
function runOptions(options: Omit<StartOptions, 'tx' | 'version'>, limit: number, known: ReadonlySet<string> = START_OPTIONS): RunStartOptions {
  // As run_start refuses an option it does not know (TR001), so does the
  // client: a misspelt one (`timelimit`) would be dropped in silence.
  for (const name in options) {
    if (!known.has(name)) throw new ValidationError(`unknown start option ${quoteValue(name)}`);
  }
  const sqlOptions: RunStartOptions = {};
  if (options.key !== undefined) {
    if (typeof options.key !== 'string' || options.key.length === 0 || options.key.length > 512) {
      throw new ValidationError('key must be a string of 1-512 characters');
    }
    sqlOptions.key = options.key;
  }
  if (options.keyPolicy !== undefined) {
    if (!KEY_POLICIES.includes(options.keyPolicy)) {
      throw new ValidationError(`keyPolicy must be 'return', 'reuse', 'replace' or 'supersede', not ${quoteValue(options.keyPolicy)}`);
    }
    if (options.key === undefined && options.keyPolicy !== 'return') throw new ValidationError(`keyPolicy '${options.keyPolicy}' needs a key`);
    if (options.keyPolicy !== 'return') sqlOptions.key_policy = options.keyPolicy;
  }
  if (options.queue !== undefined) sqlOptions.queue = assertName(options.queue, 'queue');
  if (options.concurrencyKey !== undefined) {
    if (typeof options.concurrencyKey !== 'string' || options.concurrencyKey.length === 0 || options.concurrencyKey.length > 200) {
      throw new ValidationError('concurrencyKey must be a string of 1-200 characters');
    }
    sqlOptions.concurrency_key = options.concurrencyKey;
  }
  if (options.priority !== undefined) {
    if (!Number.isInteger(options.priority)) throw new ValidationError('priority must be an integer');
    sqlOptions.priority = options.priority;
  }
  if (options.runAt !== undefined) sqlOptions.run_at = toTime(options.runAt, 'runAt').toISOString();
  Object.assign(sqlOptions, deadlineOptions(options));
  if (options.metadata !== undefined) {
    if (typeof options.metadata !== 'object' || options.metadata === null || Array.isArray(options.metadata)) {
      throw new ValidationError('metadata must be a plain object');
    }
    assertForeignIdField(options.metadata, 'metadata');
    sqlOptions.metadata = JSON.parse(encodeJson(options.metadata, 'metadata', limit));
  }
  return sqlOptions;
}
