/**
 * The test kit: a worker and a client over real PostgreSQL (embedded unless a
 * server URL is given) with a virtual clock shared by every worker and by SQL.
 * `advance('3 days')` fires due sleeps, signal timeouts, retry backoffs and
 * scheduled runs at once (and cancels runs whose deadline passed), so a
 * 30-day wait takes milliseconds, and `runToEnd` / `drive` move the clock
 * from timer to timer (and deadline to deadline) by themselves.
 */
import { PgClient, Pool } from '../db/pg.ts';
import { type Client, createClient, type RequestOptions, type RunHandle, type RunRef, type StartOptions } from '../client/client.ts';
import type { Run, Step } from '../client/runs.ts';
import { RUN_STATES, type RunState } from '../db/tables.ts';
import { CancelledError, ConfigurationError, IllegalTransitionError, TimeoutError, ValidationError, WorkflowFailedError } from '../errors.ts';
import { migrate } from '../schema/install.ts';
import { toTrellisError } from '../db/errors.ts';
import { assertRunId } from '../workflow/names.ts';
import { createWorker, type Worker, type WorkerOptions } from '../worker/worker.ts';
import type { WorkflowDefinition, WorkflowInput, WorkflowOutput } from '../workflow/define.ts';
import { type Duration, toMs } from '../protocol/duration.ts';
import { silentLogger } from '../protocol/logger.ts';
import { optionNames, refuseUnknownKeys } from '../protocol/option-bounds.ts';
import { WORKER_OPTIONS } from '../worker/options.ts';
import type { SignalDefinition, SignalPayload, SignalReply } from '../workflow/signal.ts';
import { cancelOverdue, describeTree, driveRound, resumeDue, Wakeups } from './drive.ts';
import { startEmbeddedPostgres } from './embedded-postgres.ts';
import { assertSteps, type ExpectedStep } from './history.ts';

/** Server option that allows `trellis.clock_use_virtual()` in a session (see docs/testing.md). */
const VIRTUAL_CLOCK_OPTION = '-c trellis.virtual_clock=allowed';

/**
 * Options of {@link createTestEnv}: the worker's options (the test kit
 * makes the pool) and where the test database lives.
 *
 * @example
 * const env = await createTestEnv({ workflows: [reminder], concurrency: 10, serverUrl: process.env.DATABASE_URL });
 */
export interface TestEnvOptions extends Omit<WorkerOptions, 'pool' | 'connectionString'> {
  /**
   * A server to create the test database on (default: DATABASE_URL, else an embedded server).
   *
   * @example
   * const env = await createTestEnv({ workflows: [reminder], serverUrl: 'postgres://postgres@localhost:5432/postgres' });
   */
  serverUrl?: string | undefined;
}

/** Every option createTestEnv takes: the worker's but its pool, and the server. */
const TEST_ENV_OPTIONS = optionNames<TestEnvOptions>({
  serverUrl: true, ...Object.fromEntries(WORKER_OPTIONS.filter((n) => n !== 'pool' && n !== 'connectionString').map((n) => [n, true])) as
    { [K in keyof Required<Omit<WorkerOptions, 'pool' | 'connectionString'>>]: true },
});

/**
 * How long `result()` of a handle `env.start` returned waits when given no
 * `timeout`: a test that awaits a run that never ends fails with a
 * `TimeoutError` instead of hanging (node:test has no timeout of its own).
 */
const RESULT_TIMEOUT = '30s';

function withResultTimeout<O>(handle: RunHandle<O>): RunHandle<O> {
  return { ...handle, result: (o) => handle.result({ ...o, timeout: o?.timeout ?? RESULT_TIMEOUT }) };
}

/** A run given by id or by the handle `start` returned. */
export type TestRun = string | { readonly id: string };

/**
 * Options of `env.drive` and `env.runToEnd`.
 *
 * @example
 * const done = await env.drive(run, { timeout: '1 minute' });
 */
export interface DriveOptions {
  /**
   * Real time to give up after, with `TimeoutError` (default 30 s).
   *
   * @example
   * await env.runToEnd(trial, { user: 'lin' }, { timeout: '10s' });
   */
  timeout?: Duration | undefined;
}

export interface TestEnv {
  readonly client: Client;
  readonly worker: Worker;
  readonly pool: Pool;
  /**
   * Connection string of the test database. It carries the server option
   * `trellis.virtual_clock=allowed`, so `migrate()` run by code under test
   * on this URL keeps the virtual clock.
   */
  readonly url: string;
  /**
   * `client.start`.
   *
   * @example
   * const run = await env.start(reminder, { to: 'ada' }, { key: 'remind-ada' });
   */
  start<W extends WorkflowDefinition>(workflow: W, input: WorkflowInput<W>, options?: StartOptions): Promise<RunHandle<WorkflowOutput<W>>>;
  /**
   * Move the shared virtual clock forward and wake the workers: due sleeps,
   * signal timeouts, retry backoffs and scheduled runs fire at once, and runs
   * whose deadline passed are cancelled (not left to the worker's
   * deadlines duty).
   *
   * @example
   * await env.waitFor(run, 'waiting');
   * await env.advance('30 days');
   */
  advance(by: Duration): Promise<void>;
  /**
   * The engine's (virtual) time.
   *
   * @example
   * const inAnHour = new Date((await env.now()).getTime() + 3_600_000);
   * await env.start(reminder, { to: 'ada' }, { runAt: inAnHour });
   */
  now(): Promise<Date>;
  /**
   * Resolve once the run's status is one of `states`. Throws `TimeoutError`
   * after `timeout` (default 20 s), and `IllegalTransitionError` at once if
   * the run has finished in another status.
   *
   * @example
   * const waiting = await env.waitFor(run, ['waiting', 'paused'], { timeout: '5s' });
   */
  waitFor(run: TestRun, states: RunState | readonly RunState[], options?: { timeout?: Duration | undefined }): Promise<Run>;
  /**
   * Drive a started run to its end and resolve with it (completed, failed or
   * cancelled; it does not throw for a failed run). Whenever neither the run
   * nor any run below it (children, activities) is running or due, the clock
   * jumps to the earliest timer among them: a sleep, a signal timeout, a
   * retry backoff, a `runAt`, the resume of a run parked under `resumeAfter`
   * (which it then resumes, as the workers' resumes duty would).
   *
   * Throws `ValidationError` if the run cannot end by itself (it is paused
   * with no `resumeAfter` to resume it, or it and every run below it wait
   * with no timer: a signal nobody sends)
   * and `TimeoutError` after `timeout` of real time. Both messages list the
   * unfinished runs of the tree.
   *
   * @example
   * const run = await env.start(approval, { order: 'A-1' });
   * await env.signal(run, approved, { by: 'ada' }); // buffered until the run waits for it
   * const done = await env.drive(run);
   * assert.equal(done.status, 'completed');
   */
  drive(run: TestRun, options?: DriveOptions): Promise<Run>;
  /**
   * Start a run, `drive` it to its end and return its output. Throws as
   * `result()` does if it failed (`WorkflowFailedError`) or was cancelled
   * (`CancelledError`), and as `drive` does if it cannot end.
   *
   * @example
   * assert.equal(await env.runToEnd(trial, { user: 'lin' }), 'trial of lin ended'); // a 30-day sleep
   */
  runToEnd<W extends WorkflowDefinition>(workflow: W, input: WorkflowInput<W>, options?: StartOptions & DriveOptions): Promise<WorkflowOutput<W>>;
  /**
   * Send a signal to a run (`client.signal`): by id, handle or
   * `{ workflow, key }`. Returns false if a signal with this `id` was
   * received before.
   *
   * @example
   * await env.signal(run, approved, { by: 'ada' }, { id: 'mail-1' });
   */
  signal<S extends SignalDefinition<any, any> | string>(run: RunRef | { readonly id: string }, signal: S, payload: SignalPayload<S>, options?: { id?: string | undefined }): Promise<boolean>;
  /**
   * Ask a run and wait for its answer (`client.request`, decision 0044): by
   * id, handle or `{ workflow, key }`. The env's worker answers as it
   * runs; a run that sleeps before it answers needs `advance` meanwhile.
   *
   * @example
   * const { balance } = await env.request(run, withdraw, { amount: 30 }, { timeout: '10s' }); // withdraw defined with { reply }
   */
  request<S extends SignalDefinition<any, any, any, any>>(run: RunRef | { readonly id: string }, signal: S, payload: SignalPayload<S>, options?: RequestOptions): Promise<SignalReply<S>>;
  request<R = unknown, S extends SignalDefinition<any, any> | string = SignalDefinition<any, any> | string>(
    run: RunRef | { readonly id: string }, signal: S, payload: SignalPayload<S>, options?: RequestOptions): Promise<R>;
  /**
   * The run's recorded calls (`client.history`), ordered by execution and `seq`.
   *
   * @example
   * const steps = await env.history(run);
   * assert.equal(steps.filter((s) => s.kind === 'step').length, 2);
   */
  history(run: TestRun): Promise<Step[]>;
  /**
   * Assert the run's history, call by call, on the fields each expectation
   * names. Throws an `AssertionError` naming the run, with a diff of the
   * recorded and the expected calls.
   *
   * @example
   * await env.assertHistory(run, [
   *   { kind: 'sleep', name: 'trial-period', status: 'completed' },
   *   { kind: 'step', name: 'end-trial', status: 'completed', attempts: 1 },
   * ]);
   */
  assertHistory(run: TestRun, expected: readonly ExpectedStep[]): Promise<void>;
  /**
   * Stop the worker, close the client and pool, drop the database (and stop the embedded server).
   * Calling it again returns the same promise.
   *
   * @example
   * after(() => env?.close()); // unset if createTestEnv threw (it leaves nothing behind)
   */
  close(): Promise<void>;
}

const idOf = (run: TestRun): string => assertRunId(typeof run === 'string' ? run : run?.id);

async function dropDatabase(admin: string, database: string): Promise<void> {
  const c = new PgClient({ connectionString: admin });
  await c.connect();
  try {
    await c.query(`drop database if exists ${database} with (force)`);
  } finally {
    await c.end();
  }
}

/** `states` as a non-empty list of run statuses (ValidationError otherwise: a typo would wait out the whole timeout). */
function wantedStates(states: unknown): RunState[] {
  const list = (Array.isArray(states) ? states : [states]) as unknown[];
  if (list.length === 0 || !list.every((s) => (RUN_STATES as readonly unknown[]).includes(s))) {
    throw new ValidationError(`waitFor needs one or more of ${RUN_STATES.join(', ')}, not ${JSON.stringify(states)}`);
  }
  return list as RunState[];
}

/**
 * @example
 * const env = await createTestEnv({ workflows: [reminder] });
 * const run = await env.start(reminder, { to: 'ada' });
 * await env.waitFor(run.id, 'waiting');
 * await env.advance('30 days');
 * assert.equal(await run.result(), 'sent');
 * await env.close();
 */
export async function createTestEnv(options: TestEnvOptions): Promise<TestEnv> {
  // A misspelt option is refused before a server or database is made.
  refuseUnknownKeys(options, TEST_ENV_OPTIONS, 'createTestEnv options');
  const { serverUrl = process.env.DATABASE_URL, ...workerOptions } = options;
  const server = serverUrl ? undefined : await startEmbeddedPostgres();
  const admin = serverUrl ?? (server as { connectionString: string }).connectionString;
  const database = `trellis_env_${crypto.randomUUID().replaceAll('-', '').slice(0, 12)}`;
  const adminClient = new PgClient({ connectionString: admin });
  await adminClient.connect();
  await adminClient.query(`create database ${database}`);
  // The mark of a database the test kit made: only there can the clock be virtual.
  await adminClient.query(`alter database ${database} set trellis.test_database = 'on'`);
  await adminClient.end();
  const url = new URL(admin);
  url.pathname = `/${database}`;
  // The opt-in that trellis.clock_use_virtual() requires, in every session on
  // this URL, so migrate() from code under test keeps the virtual clock too.
  // Once: a serverUrl that carries it already (another env's url) keeps one copy.
  const given = url.searchParams.get('options');
  if (!given?.split(/(?=-c )/).some((o) => o.trim() === VIRTUAL_CLOCK_OPTION)) {
    url.searchParams.set('options', [given, VIRTUAL_CLOCK_OPTION].filter(Boolean).join(' '));
  }
  const pool = new Pool({ connectionString: url.toString(), max: 10 });
  pool.on('error', () => undefined);
  let client: Client | undefined;
  let worker: Worker;
  try {
    await migrate(pool);
    await pool.query('select trellis.clock_use_virtual()');
    client = createClient({ pool, logger: silentLogger, resultPollInterval: 250 });
    // An option given as undefined keeps the env's default (a spread would copy it over).
    const given = Object.fromEntries(Object.entries(workerOptions).filter(([, value]) => value !== undefined)) as typeof workerOptions;
    worker = createWorker({ pool, pollInterval: 100, logger: silentLogger, client, ...given });
    await worker.start();
  } catch (error) {
    // A bad option (or a failed start): nothing is left behind, not the database nor an open pool.
    await client?.close().catch(() => undefined);
    await pool.end().catch(() => undefined);
    await dropDatabase(admin, database).catch(() => undefined);
    await server?.stop().catch(() => undefined);
    throw error;
  }
  const wakeups = new Wakeups(url.toString());
  // The workflows this env's worker serves, to say so when a run of another one never moves.
  const served = new Set((workerOptions.workflows ?? []).map((w) => `${w.name}@${w.version}`));
  const unserved = async (runId: string): Promise<string> => {
    const run = await client.get(runId);
    return run && !served.has(`${run.workflow}@${run.version}`)
      ? `\nno worker of this test env serves ${run.workflow}@${run.version}: give it to createTestEnv({ workflows: [...] }) (it serves ${[...served].join(', ') || 'none'})`
      : '';
  };
  /** Refuse a call on a closed env with a typed error (its pool is gone: pg would say only "Cannot use a pool after calling end"). */
  const open = () => {
    if (closing) throw new ConfigurationError('this test env is closed: create another with createTestEnv');
  };
  const live = <A extends unknown[], R>(fn: (...args: A) => Promise<R>) => async (...args: A): Promise<R> => {
    open();
    return fn(...args);
  };

  const get = async (runId: string): Promise<Run> => {
    const run = await client.get(runId);
    if (!run) throw new ValidationError(`run ${runId} does not exist`);
    return run;
  };
  let closing: Promise<void> | undefined;
  const waitFor: TestEnv['waitFor'] = async (ref, states, o = {}) => {
    const runId = idOf(ref);
    const wanted = wantedStates(states);
    const deadline = Date.now() + toMs(o.timeout ?? '20s');
    for (;;) {
      const run = await get(runId);
      if (wanted.includes(run.status)) return run;
      if (run.status === 'completed' || run.status === 'failed' || run.status === 'cancelled') {
        const reason = (run.error as { message?: string | undefined } | null)?.message;
        throw new IllegalTransitionError(`run ${runId} is ${run.status}${reason ? ` (${reason})` : ''}; it will not become ${wanted.join('/')}`);
      }
      if (Date.now() > deadline) throw new TimeoutError(`run ${runId} is ${run.status}, not ${wanted.join('/')}${await unserved(runId)}`);
      await new Promise((r) => setTimeout(r, 10));
    }
  };
  const advance = async (by: Duration) => {
    const ms = toMs(by);
    try {
      await pool.query('select trellis.clock_advance(pg_catalog.make_interval(secs => $1::double precision / 1000))', [ms]);
    } catch (error) {
      throw toTrellisError(error); // TR004: the clock is not virtual (a migrate() without the test kit's option)
    }
    await cancelOverdue(pool);
    await resumeDue(pool);
  };
  const now = async () => (await pool.query<{ now: Date }>('select trellis.now() as now')).rows[0]?.now as Date;

  const drive: TestEnv['drive'] = async (ref, o = {}) => {
    const runId = idOf(ref);
    const timeoutMs = toMs(o.timeout ?? '30s', 'timeout');
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const round = await driveRound(pool, runId);
      if (round.status === undefined) throw new ValidationError(`run ${runId} does not exist`);
      if (round.status === 'completed' || round.status === 'failed' || round.status === 'cancelled') return get(runId);
      if (round.status === 'paused' && !round.resumes) {
        throw new ValidationError(`run ${runId} is paused: it cannot end until it is resumed or cancelled\n${await describeTree(pool, runId)}`);
      }
      if (round.overdue || round.resumable) {
        if (round.overdue) await cancelOverdue(pool);
        if (round.resumable) await resumeDue(pool);
        if (Date.now() <= deadline) continue; // else the bound below ends the drive
      }
      if (round.advancedTo) continue; // the workers were notified; look again at once
      if (round.idle && round.nextAt === null) {
        throw new ValidationError(
          `run ${runId} cannot end by itself: it and every unfinished run below it wait with no timer (a signal nobody sends?)\n${await describeTree(pool, runId)}`,
        );
      }
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new TimeoutError(`run ${runId} did not end within ${timeoutMs} ms; unfinished:\n${await describeTree(pool, runId)}${await unserved(runId)}`);
      }
      await wakeups.next(left);
    }
  };

  return {
    client,
    worker,
    pool,
    url: url.toString(),
    start: live(async (workflow, input, o) => withResultTimeout(await client.start(workflow, input, o))),
    advance: live(advance),
    now: live(now),
    waitFor: live(waitFor),
    drive: live(drive),
    runToEnd: live(async (workflow, input, o = {}) => {
      const { timeout, ...startOptions } = o;
      const run = await client.start(workflow, input, startOptions);
      const done = await drive(run, timeout === undefined ? {} : { timeout });
      if (done.status === 'completed') return done.output as WorkflowOutput<typeof workflow>;
      const error = done.error as { message?: string | undefined } | null;
      if (done.status === 'cancelled') throw new CancelledError(`run ${run.id} was cancelled`, { details: { error: done.error } });
      throw new WorkflowFailedError(`run ${run.id} failed: ${error?.message ?? 'unknown error'}`, { details: { error: done.error } });
    }),
    signal: live((run, signal, payload, o = {}) =>
      client.signal(typeof run === 'object' && 'id' in run ? run.id : run, signal, payload, o.id === undefined ? {} : { id: o.id })),
    request: live((run, signal, payload, o) => client.request(typeof run === 'object' && 'id' in run ? run.id : run, signal, payload, o)),
    history: live((run) => client.history(idOf(run))),
    assertHistory: live(async (run, expected) => {
      const runId = idOf(run);
      await get(runId); // a run that does not exist has no history to match, not an empty one
      assertSteps(`run ${runId}`, await client.history(runId), expected);
    }),
    close() {
      // Once: a second call (an after() hook and a finally both closing) waits for the first.
      closing ??= (async () => {
        await worker.stop({ timeout: 2000 });
        await wakeups.close();
        await client.close();
        await pool.end();
        await dropDatabase(admin, database);
        await server?.stop();
      })();
      return closing;
    },
  };
}
