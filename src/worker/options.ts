/** The options of createWorker, and their defaults and checks. */
import type pg from 'pg';
import { ValidationError } from '../errors.ts';
import type { WorkflowDefinition } from '../workflow/define.ts';
import { type Duration, toMs } from '../workflow/duration.ts';
import type { Logger } from '../workflow/logger.ts';
import { assertName } from '../workflow/names.ts';
import type { WorkerRoleOptions } from './roles/role-runner.ts';

export interface WorkerOptions {
  /** A pg Pool, or a connection string for the worker's own pool. */
  pool?: pg.Pool;
  connectionString?: string;
  /** The workflow definitions (and versions) this worker executes. */
  workflows: readonly WorkflowDefinition[];
  /** Queues to claim from, in order of preference (default: the workflows' queues). */
  queues?: readonly string[];
  /**
   * Runs executed at once (default 200). A run waiting on a timer, signal or
   * child holds no slot; a slot is an in-flight async execution, not a thread
   * or a connection, so a high number is cheap. Lower it when step bodies are
   * heavy in this process.
   */
  concurrency?: number;
  /** Most runs claimed per round trip (default: concurrency, at most 100; at most 1000). */
  claimBatch?: number;
  /**
   * Poll interval: the longest a missed NOTIFY can delay new work or a cancel
   * or pause request for a running run (default 1s).
   */
  pollInterval?: Duration;
  /** Lease length; heartbeats extend it every third of it (default 30s). */
  leaseDuration?: Duration;
  /** Most checkpoint ops per transaction (default 500). */
  maxBatch?: number;
  /**
   * Purging of finished runs past the retention set with
   * `client.setRetention` / `trellis.retention_set` (none by default: runs
   * are kept). Every `interval` (default 5s) the worker deletes them in
   * batches of `batch` runs (default 1000) until fewer are left; of many
   * workers, one purges at a time. `false`: this worker never purges.
   */
  purge?: { interval?: Duration; batch?: number } | false;
  /** Role leases: the default TTL of the roles this worker takes part in (see `worker.role`). */
  roles?: WorkerRoleOptions;
  /**
   * The schedule ticker (role `trellis.schedules`, held by one worker at a
   * time): every `interval` (default 1s) it starts the runs of due cron
   * ticks, `batch` schedules per round trip (default 500). `false`: this
   * worker never ticks.
   */
  schedules?: { interval?: Duration; batch?: number } | false;
  /**
   * Run the hot statements (claims, checkpoints) as named prepared
   * statements, planned once per connection (default true). Set false
   * behind a pooler that cannot keep them: PgBouncer in transaction mode
   * before 1.21 or without `max_prepared_statements`.
   */
  preparedStatements?: boolean;
  /**
   * How often the LISTEN connection is checked (default 10s, at least
   * 100ms). A check or a connect that gets no answer within this long drops
   * the connection and opens a new one, so a connection that died silently
   * (a partition, an idle flow dropped by a firewall) is replaced within
   * about twice this; until then the poll interval bounds the delay.
   */
  listenerHealthCheck?: Duration;
  /** Stable id for this worker in lease_owner (default host:pid:random). */
  id?: string;
  logger?: Logger;
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
}

export function resolveWorkerOptions(options: WorkerOptions): ResolvedWorkerOptions {
  if (!options.workflows?.length) throw new ValidationError('a worker needs at least one workflow');
  const definitions = new Map<string, WorkflowDefinition>();
  for (const def of options.workflows) {
    const key = `${def.name}@${def.version}`;
    if (definitions.has(key)) throw new ValidationError(`workflow ${key} is registered twice`);
    definitions.set(key, def);
  }
  const queues = [...new Set(options.queues ?? options.workflows.map((w) => w.queue))].map((q) => assertName(q, 'queue'));
  const concurrency = options.concurrency ?? 200;
  if (!Number.isInteger(concurrency) || concurrency < 1) throw new ValidationError('concurrency must be a positive integer');
  const claimBatch = options.claimBatch ?? Math.min(concurrency, 100);
  if (!Number.isInteger(claimBatch) || claimBatch < 1 || claimBatch > 1000) {
    throw new ValidationError('claimBatch must be an integer from 1 to 1000');
  }
  const pollMs = toMs(options.pollInterval ?? 1000, 'pollInterval');
  const leaseMs = toMs(options.leaseDuration ?? 30_000, 'leaseDuration');
  if (leaseMs < 1000) throw new ValidationError('leaseDuration must be at least 1s');
  const listenerCheckMs = toMs(options.listenerHealthCheck ?? 10_000, 'listenerHealthCheck');
  if (listenerCheckMs < 100) throw new ValidationError('listenerHealthCheck must be at least 100ms');
  let purge: ResolvedWorkerOptions['purge'];
  if (options.purge !== false) {
    const batch = options.purge?.batch ?? 1000;
    if (!Number.isInteger(batch) || batch < 1 || batch > 100_000) throw new ValidationError('purge.batch must be an integer from 1 to 100000');
    const intervalMs = toMs(options.purge?.interval ?? 5000, 'purge.interval');
    if (intervalMs < 10) throw new ValidationError('purge.interval must be at least 10ms');
    purge = { intervalMs, batch };
  }
  return { definitions, queues, concurrency, claimBatch, pollMs, leaseMs, listenerCheckMs, maxBatch: options.maxBatch ?? 500, purge };
}
