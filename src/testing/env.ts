/**
 * The test kit: a worker and a client over real PostgreSQL (embedded unless a
 * server URL is given) with a virtual clock shared by every worker and by SQL.
 * `advance('3 days')` fires due sleeps, signal timeouts, retry backoffs and
 * scheduled runs at once, so a 30-day wait takes milliseconds.
 */
import pg from 'pg';
import { type Client, createClient, type RunHandle, type StartOptions } from '../client/client.ts';
import type { Run, Step } from '../client/runs.ts';
import type { RunState } from '../db/tables.ts';
import { TimeoutError, ValidationError } from '../errors.ts';
import { migrate } from '../schema/install.ts';
import { createWorker, type Worker, type WorkerOptions } from '../worker/worker.ts';
import type { WorkflowDefinition, WorkflowInput, WorkflowOutput } from '../workflow/define.ts';
import { type Duration, toMs } from '../workflow/duration.ts';
import { silentLogger } from '../workflow/logger.ts';
import { startEmbeddedPostgres } from './embedded-postgres.ts';

/** Server option that allows `trellis.clock_use_virtual()` in a session (see docs/testing.md). */
const VIRTUAL_CLOCK_OPTION = '-c trellis.virtual_clock=allowed';

export interface TestEnvOptions extends Omit<WorkerOptions, 'pool' | 'connectionString'> {
  /** A server to create the test database on (default: DATABASE_URL, else an embedded server). */
  serverUrl?: string;
}

export interface TestEnv {
  readonly client: Client;
  readonly worker: Worker;
  readonly pool: pg.Pool;
  /** Connection string of the test database. */
  readonly url: string;
  start<W extends WorkflowDefinition>(workflow: W, input: WorkflowInput<W>, options?: StartOptions): Promise<RunHandle<WorkflowOutput<W>>>;
  /** Move the shared virtual clock forward and wake the workers. */
  advance(by: Duration): Promise<void>;
  /** The engine's (virtual) time. */
  now(): Promise<Date>;
  /** Resolve once the run has one of `states` (default: any finished one). */
  waitFor(runId: string, states: RunState | readonly RunState[], options?: { timeout?: Duration }): Promise<Run>;
  /**
   * Start a run and drive it to its end: whenever it waits on a timer, the
   * clock jumps to that timer. Throws if it waits with no timer (a signal or
   * child nobody will deliver).
   */
  runToEnd<W extends WorkflowDefinition>(workflow: W, input: WorkflowInput<W>, options?: StartOptions & { timeout?: Duration }): Promise<WorkflowOutput<W>>;
  history(runId: string): Promise<Step[]>;
  close(): Promise<void>;
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
  const { serverUrl = process.env.DATABASE_URL, ...workerOptions } = options;
  const server = serverUrl ? undefined : await startEmbeddedPostgres();
  const admin = serverUrl ?? (server as { connectionString: string }).connectionString;
  const database = `trellis_env_${crypto.randomUUID().replaceAll('-', '').slice(0, 12)}`;
  const adminClient = new pg.Client({ connectionString: admin });
  await adminClient.connect();
  await adminClient.query(`create database ${database}`);
  await adminClient.end();
  const url = new URL(admin);
  url.pathname = `/${database}`;
  // The opt-in that trellis.clock_use_virtual() requires, in every session on
  // this URL, so migrate() from code under test keeps the virtual clock too.
  url.searchParams.set('options', [url.searchParams.get('options'), VIRTUAL_CLOCK_OPTION].filter(Boolean).join(' '));
  const pool = new pg.Pool({ connectionString: url.toString(), max: 10 });
  pool.on('error', () => undefined);
  await migrate(pool);
  await pool.query('select trellis.clock_use_virtual()');
  const worker = createWorker({ pool, pollInterval: 100, logger: silentLogger, ...workerOptions });
  const client = createClient({ pool, logger: silentLogger, resultPollInterval: 250 });
  await worker.start();

  const waitFor: TestEnv['waitFor'] = async (runId, states, o = {}) => {
    const wanted = (Array.isArray(states) ? states : [states]) as RunState[];
    const deadline = Date.now() + toMs(o.timeout ?? '20s');
    for (;;) {
      const run = await client.get(runId);
      if (!run) throw new ValidationError(`run ${runId} does not exist`);
      if (wanted.includes(run.status)) return run;
      if (Date.now() > deadline) throw new TimeoutError(`run ${runId} is ${run.status}, not ${wanted.join('/')}`);
      await new Promise((r) => setTimeout(r, 10));
    }
  };
  const advance = async (by: Duration) => {
    await pool.query('select trellis.clock_advance(make_interval(secs => $1::double precision / 1000))', [toMs(by)]);
  };
  const now = async () => (await pool.query<{ now: Date }>('select trellis.now() as now')).rows[0]?.now as Date;

  return {
    client,
    worker,
    pool,
    url: url.toString(),
    start: (workflow, input, o) => client.start(workflow, input, o),
    advance,
    now,
    waitFor,
    async runToEnd(workflow, input, o = {}) {
      const { timeout, ...startOptions } = o;
      const run = await client.start(workflow, input, startOptions);
      const deadline = Date.now() + toMs(timeout ?? '30s');
      for (;;) {
        const row = await waitFor(run.id, ['waiting', 'paused', 'completed', 'failed', 'cancelled'], { timeout: Math.max(1, deadline - Date.now()) });
        if (row.status !== 'waiting') return run.result({ timeout: 1000 });
        if (!Number.isFinite(row.runAt.getTime())) {
          throw new ValidationError(`run ${run.id} waits with no timer (a signal or child): runToEnd cannot finish it`);
        }
        const ahead = row.runAt.getTime() - (await now()).getTime();
        if (ahead > 0) await advance(ahead + 1);
        // Wait until a worker has taken it up again before looking once more.
        await waitFor(run.id, ['pending', 'running', 'paused', 'completed', 'failed', 'cancelled'], { timeout: Math.max(1, deadline - Date.now()) });
      }
    },
    history: (runId) => client.history(runId),
    async close() {
      await worker.stop({ timeout: 2000 });
      await client.close();
      await pool.end();
      const c = new pg.Client({ connectionString: admin });
      await c.connect();
      await c.query(`drop database if exists ${database} with (force)`);
      await c.end();
      await server?.stop();
    },
  };
}
