/** The options of createWorker, and their defaults and checks. */
import type { HookDeliveryOptions } from './hooks/loop.ts';
import type { Pool } from '../db/pg.ts';
import { type ConnectionTimeouts, type ResolvedTimeouts, resolveTimeouts } from '../db/connection.ts';
import { quoteValue, ValidationError } from '../errors.ts';
import type { WorkflowDefinition } from '../workflow/define.ts';
import type { Duration } from '../protocol/duration.ts';
import { durationIn, integerIn, optionNames, refuseUnknownKeys } from '../protocol/option-bounds.ts';
import type { Logger } from '../protocol/logger.ts';
import type { TracingOption, WorkerMetricsOption } from '../observability/worker-observer.ts';
import { assertName } from '../workflow/names.ts';
import type { WorkerRoleOptions } from './roles/role-runner.ts';
import { type HandoffSource, LocalHandoff } from '../protocol/local-handoff.ts';

/**
 * Options of {@link createWorker}. Give a `pool` or a `connectionString`,
 * and the `workflows` to execute.
 *
 * @example
 * const worker = createWorker({ pool, workflows: [onboard], concurrency: 50, pollInterval: '2s' });
 */
export interface WorkerOptions extends ConnectionTimeouts {
  /**
   * A `pg` Pool to run on; the worker does not close it. The
   * `connectTimeout`, `queryTimeout` and `keepAlive` options apply to the
   * worker's own pool and to its LISTEN connection; a pool you pass keeps
   * its own settings (see docs/reliability.md), and `start()` gives up
   * after `connectTimeout` + `queryTimeout` either way.
   *
   * @example
   * const worker = createWorker({ pool: new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 20 }), workflows: [onboard] });
   */
  pool?: Pool | undefined;
  /**
   * A connection string for a pool of the worker's own, closed by `stop()`.
   *
   * @example
   * const worker = createWorker({ connectionString: 'postgres://app@db/app', workflows: [onboard] });
   */
  connectionString?: string | undefined;
  /**
   * The client in this process whose starts this worker may take at once
   * (the local hand-off: the start leases the run to this worker, no NOTIFY,
   * no claim; docs/decisions/0015-local-hand-off.md), and whose `result()`
   * waiters it tells directly when it ends a run. The client must use the
   * same database. Without it, the client's starts reach the worker through
   * the queue, as they do from any other process.
   *
   * @example
   * const client = createClient({ pool });
   * const worker = createWorker({ pool, workflows: [onboard], client });
   */
  client?: HandoffSource | undefined;
  /**
   * Where the LISTEN connection goes, when not where the pool goes: a
   * direct connection string to PostgreSQL, for a pool through PgBouncer in
   * transaction mode (which cannot keep a LISTEN). See docs/pgbouncer.md.
   *
   * @example
   * const worker = createWorker({ connectionString: 'postgres://app@pgbouncer:6432/app', listenUrl: 'postgres://app@db:5432/app', workflows: [onboard] });
   */
  listenUrl?: string | undefined;
  /**
   * The workflow definitions (and versions) this worker executes. To let
   * old runs finish on old code, list the old version too.
   *
   * @example
   * const worker = createWorker({ pool, workflows: [onboard, approval] });
   */
  workflows: readonly WorkflowDefinition[];
  /**
   * Queues to claim from, in order of preference (default: the workflows' queues).
   *
   * @example
   * const worker = createWorker({ pool, workflows: [onboard], queues: ['urgent', 'default'] });
   */
  queues?: readonly string[] | undefined;
  /**
   * Runs executed at once (default 200). A run waiting on a timer, signal or
   * child holds no slot; a slot is an in-flight async execution, not a thread
   * or a connection, so a high number is cheap. Lower it when step bodies are
   * heavy in this process.
   *
   * @example
   * const worker = createWorker({ pool, workflows: [onboard], concurrency: 20 });
   */
  concurrency?: number | undefined;
  /**
   * Most runs claimed per round trip (default: concurrency, at most 100; at most 1000).
   *
   * @example
   * const worker = createWorker({ pool, workflows: [onboard], claimBatch: 10 });
   */
  claimBatch?: number | undefined;
  /**
   * Poll interval: the longest a missed NOTIFY can delay new work or a cancel
   * or pause request for a running run (default 1s).
   *
   * @example
   * const worker = createWorker({ pool, workflows: [onboard], pollInterval: '5s' });
   */
  pollInterval?: Duration | undefined;
  /**
   * Lease length; heartbeats extend it every third of it (default 30s, at
   * least 1s). A run whose worker died is continued elsewhere once it expires.
   *
   * @example
   * const worker = createWorker({ pool, workflows: [onboard], leaseDuration: '1 minute' });
   */
  leaseDuration?: Duration | undefined;
  /**
   * Most checkpoint ops per transaction (default 500).
   *
   * @example
   * const worker = createWorker({ pool, workflows: [onboard], maxBatch: 100 });
   */
  maxBatch?: number | undefined;
  /**
   * Purging of finished runs past the retention set with
   * `client.setRetention` / `trellis.retention_set` (none by default: runs
   * are kept). Every `interval` (default 5s) the worker deletes them in
   * batches of `batch` runs (default 1000) until fewer are left; of many
   * workers, one purges at a time. `false`: this worker never purges.
   *
   * @example
   * const worker = createWorker({ pool, workflows: [onboard], purge: { interval: '1 minute', batch: 500 } });
   */
  purge?: { interval?: Duration | undefined; batch?: number | undefined } | false | undefined;
  /**
   * Role leases: the default TTL of the roles this worker takes part in (see `worker.role`).
   *
   * @example
   * const worker = createWorker({ pool, workflows: [onboard], roles: { ttl: '10s' } });
   */
  roles?: WorkerRoleOptions | undefined;
  /**
   * The schedule ticker (role `trellis.schedules`, held by one worker at a
   * time): every `interval` (default 1s) it starts the runs of due cron
   * ticks, `batch` schedules per round trip (default 500). `false`: this
   * worker never ticks.
   *
   * @example
   * const worker = createWorker({ pool, workflows: [dailyReport], schedules: { interval: '5s', batch: 100 } });
   */
  schedules?: { interval?: Duration | undefined; batch?: number | undefined } | false | undefined;
  /**
   * Run deadlines (the start options `deadline` and `timeLimit`; role
   * `trellis.deadlines`, held by one worker at a time): every `interval`
   * (default 1s) it cancels the runs whose deadline passed, up to `batch`
   * per look (default 1000), each in a transaction of its own. `false`:
   * this worker never does (another one does, or nobody: then deadlines
   * are not enforced). See docs/workflows.md#deadlines.
   *
   * @example
   * const worker = createWorker({ pool, workflows: [onboard], deadlines: { interval: '5s' } });
   */
  deadlines?: { interval?: Duration | undefined; batch?: number | undefined } | false | undefined;
  /**
   * Parked runs resumed (a definition's `resumeAfter`; role
   * `trellis.resumes`, held by one worker at a time): every `interval`
   * (default 1s) it resumes the parked runs whose time has come, up to
   * `batch` per look (default 100, in one transaction). `false`: this worker
   * never does (another one does, or nobody: then parked runs stay parked).
   *
   * @example
   * const worker = createWorker({ pool, workflows: [sync], resumes: { interval: '10s', batch: 10 } });
   */
  resumes?: { interval?: Duration | undefined; batch?: number | undefined } | false | undefined;
  /**
   * Durable lifecycle hooks (`defineWorkflow({ hooks })`) of the workflows
   * this worker serves: how often it claims due deliveries (default 1s) and
   * how many hooks it runs at once (default 8). `false`: this worker runs no
   * hooks (another one does).
   *
   * @example
   * const worker = createWorker({ pool, workflows: [order], hookDelivery: { interval: '250ms', concurrency: 16 } });
   */
  hookDelivery?: HookDeliveryOptions | false | undefined;
  /**
   * Run the hot statements (claims, checkpoints, starts, result reads) as
   * named prepared statements, planned once per connection. `'auto'`
   * (default): prepared, and if the connection refuses one (a pooler in
   * transaction mode that cannot keep them: PgBouncer before 1.21, or
   * without `max_prepared_statements`) unnamed from then on. `true`: always
   * prepared; a refusal is a DatabaseError saying what to change. `false`:
   * never. See docs/pgbouncer.md.
   *
   * @example
   * const worker = createWorker({ pool, workflows: [onboard], preparedStatements: false });
   */
  preparedStatements?: boolean | 'auto' | undefined;
  /**
   * How often the LISTEN connection is checked (default 10s, at least
   * 100ms). A check or a connect that gets no answer within this long drops
   * the connection and opens a new one, so a connection that died silently
   * (a partition, an idle flow dropped by a firewall) is replaced within
   * about twice this; until then the poll interval bounds the delay.
   *
   * @example
   * const worker = createWorker({ pool, workflows: [onboard], listenerHealthCheck: '30s' });
   */
  listenerHealthCheck?: Duration | undefined;
  /**
   * Prometheus metrics (needs the optional package prom-client; off by
   * default): `true`, a `createMetrics()` result shared by several workers,
   * or `{ registry, port, host }` (with `port`, the worker serves
   * `GET /metrics` on 127.0.0.1 unless `host` says otherwise). Read them with
   * `worker.metrics`. See docs/observability.md.
   *
   * @example
   * const worker = createWorker({ pool, workflows: [onboard], metrics: { port: 9464 } });
   */
  metrics?: WorkerMetricsOption | undefined;
  /**
   * OpenTelemetry spans (needs the optional package @opentelemetry/api; off
   * by default): `true` for the global tracer provider, or
   * `{ tracerProvider }`. A span per execution of a run, under the trace
   * context the run was started with, and one per step attempt that runs.
   *
   * @example
   * const worker = createWorker({ pool, workflows: [onboard], tracing: true });
   */
  tracing?: TracingOption | undefined;
  /**
   * Id for this worker in lease_owner and trellis.roles (default
   * host:pid:random). It must be unique among live workers: two workers
   * with one id hold a role together (docs/reliability.md); keep the pid
   * in it if a host runs several processes.
   *
   * @example
   * const worker = createWorker({ pool, workflows: [onboard], id: `billing-${process.env.HOSTNAME}-${process.pid}` });
   */
  id?: string | undefined;
  /**
   * Where the worker logs (default: the console, warnings and errors).
   *
   * @example
   * const worker = createWorker({ pool, workflows: [onboard], logger: consoleLogger('debug') });
   */
  logger?: Logger | undefined;
}

/** WorkerOptions with defaults applied, checked (ValidationError naming the option). */
export interface ResolvedWorkerOptions {
  /** By `name@version`. */
  definitions: Map<string, WorkflowDefinition>;
  queues: string[];
  concurrency: number;
  claimBatch: number;
  pollMs: number;
  leaseMs: number;
  listenerCheckMs: number;
  maxBatch: number;
  purge: { intervalMs: number; batch: number } | undefined;
  /** The deadlines duty (undefined: this worker never cancels overdue runs). */
  deadlines: { intervalMs: number; batch: number } | undefined;
  /** The resumes duty (undefined: this worker never resumes parked runs). */
  resumes: { intervalMs: number; batch: number } | undefined;
  timeouts: ResolvedTimeouts;
  /** The link of the client this worker joined (`client`), if any. */
  link: LocalHandoff | undefined;
}

/**
 * The bounds each option shares with SQL (trellis._check_lease: 1 second to
 * 1 day; run_claim: at most 1000 per claim; worker ids 1-200 characters), so
 * an option SQL would refuse at every claim is refused here, at construction.
 */
export const WORKER_OPTION_BOUNDS = {
  concurrency: [1, 100_000],
  claimBatch: [1, 1000],
  maxBatch: [1, 10_000],
  pollMs: [10, 3_600_000],
  leaseMs: [1000, 86_400_000],
  listenerCheckMs: [100, 3_600_000],
  purgeBatch: [1, 100_000],
  purgeIntervalMs: [10, 86_400_000],
  deadlinesBatch: [1, 100_000],
  deadlinesIntervalMs: [10, 86_400_000],
  resumesBatch: [1, 10_000],
  resumesIntervalMs: [10, 86_400_000],
  idLength: [1, 200],
} as const;

/** Check every option once and apply the defaults; the result is frozen. */
/**
 * A duty's worker option (`purge`, `deadlines`, `schedules`, `resumes`): absent,
 * `false`, or an object of `interval` and `batch`; anything else (`true`,
 * `'yes'`, `null`, a misspelt key) is a ValidationError naming it rather
 * than the defaults taken in silence.
 *
 * @example
 * checkDutyOption({ interval: '5s' }, 'purge'); // fine
 * checkDutyOption(true, 'deadlines');          // ValidationError
 */
export function checkDutyOption(option: unknown, name: string): void {
  if (option === undefined || option === false) return;
  if (typeof option !== 'object' || option === null || Array.isArray(option)) {
    throw new ValidationError(`${name} must be false or an object such as { interval: '1s', batch: 100 }, not ${quoteValue(option)}`);
  }
  refuseUnknownKeys(option, ['interval', 'batch'], name);
}

/** Every option createWorker takes (a misspelt one is refused). */
export const WORKER_OPTIONS = optionNames<WorkerOptions>({
  pool: true, connectionString: true, client: true, listenUrl: true, workflows: true, queues: true, concurrency: true,
  claimBatch: true, pollInterval: true, leaseDuration: true, maxBatch: true, purge: true, roles: true, schedules: true,
  deadlines: true, resumes: true, hookDelivery: true, preparedStatements: true, listenerHealthCheck: true, metrics: true,
  tracing: true, id: true, logger: true, connectTimeout: true, queryTimeout: true, keepAlive: true,
});

/** Every option hookDelivery takes. */
export const HOOK_DELIVERY_OPTIONS = optionNames<HookDeliveryOptions>({ interval: true, concurrency: true });

export function resolveWorkerOptions(options: WorkerOptions): Readonly<ResolvedWorkerOptions> {
  if (typeof options !== 'object' || options === null) throw new ValidationError('createWorker needs options: { pool, workflows }');
  refuseUnknownKeys(options, WORKER_OPTIONS, 'createWorker options');
  if (options.hookDelivery !== undefined && options.hookDelivery !== false) {
    refuseUnknownKeys(options.hookDelivery, HOOK_DELIVERY_OPTIONS, 'hookDelivery');
  }
  if (!options.workflows?.length) throw new ValidationError('a worker needs at least one workflow');
  const definitions = new Map<string, WorkflowDefinition>();
  for (const def of options.workflows) {
    const key = `${def.name}@${def.version}`;
    if (definitions.has(key)) throw new ValidationError(`workflow ${key} is registered twice`);
    definitions.set(key, def);
  }
  const queues = [...new Set(options.queues ?? options.workflows.map((w) => w.queue))].map((q) => assertName(q, 'queue'));
  const b = WORKER_OPTION_BOUNDS;
  const concurrency = integerIn(options.concurrency ?? 200, 'concurrency', b.concurrency);
  const claimBatch = integerIn(options.claimBatch ?? Math.min(concurrency, 100), 'claimBatch', b.claimBatch);
  const maxBatch = integerIn(options.maxBatch ?? 500, 'maxBatch', b.maxBatch);
  const pollMs = durationIn(options.pollInterval ?? 1000, 'pollInterval', b.pollMs);
  const leaseMs = durationIn(options.leaseDuration ?? 30_000, 'leaseDuration', b.leaseMs);
  const listenerCheckMs = durationIn(options.listenerHealthCheck ?? 10_000, 'listenerHealthCheck', b.listenerCheckMs);
  if (options.id !== undefined) {
    if (typeof options.id !== 'string' || options.id.length < b.idLength[0] || options.id.length > b.idLength[1]
      || /[\u0000-\u001f]/.test(options.id)) {
      throw new ValidationError(`id must be a string of ${b.idLength[0]}-${b.idLength[1]} characters without control characters`);
    }
  }
  for (const duty of ['purge', 'deadlines', 'schedules', 'resumes'] as const) checkDutyOption(options[duty], duty);
  let purge: ResolvedWorkerOptions['purge'];
  if (options.purge !== false) {
    const batch = integerIn(options.purge?.batch ?? 1000, 'purge.batch', b.purgeBatch);
    const intervalMs = durationIn(options.purge?.interval ?? 5000, 'purge.interval', b.purgeIntervalMs);
    purge = Object.freeze({ intervalMs, batch });
  }
  let deadlines: ResolvedWorkerOptions['deadlines'];
  if (options.deadlines !== false) {
    const batch = integerIn(options.deadlines?.batch ?? 1000, 'deadlines.batch', b.deadlinesBatch);
    const intervalMs = durationIn(options.deadlines?.interval ?? 1000, 'deadlines.interval', b.deadlinesIntervalMs);
    deadlines = Object.freeze({ intervalMs, batch });
  }
  let resumes: ResolvedWorkerOptions['resumes'];
  if (options.resumes !== false) {
    const batch = integerIn(options.resumes?.batch ?? 100, 'resumes.batch', b.resumesBatch);
    const intervalMs = durationIn(options.resumes?.interval ?? 1000, 'resumes.interval', b.resumesIntervalMs);
    resumes = Object.freeze({ intervalMs, batch });
  }
  const timeouts = resolveTimeouts(options);
  let link: LocalHandoff | undefined;
  if (options.client !== undefined) {
    link = (options.client as Partial<HandoffSource> | null)?.localHandoff;
    if (!(link instanceof LocalHandoff)) throw new ValidationError('client must be a Client made by createClient (the client whose starts this worker may take)');
  }
  return Object.freeze({ definitions, queues, concurrency, claimBatch, pollMs, leaseMs, listenerCheckMs, maxBatch, purge, deadlines, resumes, timeouts, link });
}
