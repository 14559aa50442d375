/**
 * Kysely types of the engine's tables: the documented, stable read contract
 * (docs/sql-api.md). Writes never go through these; they go through the SQL
 * functions.
 */
import type { ColumnType, Generated } from 'kysely';

/** Every status a run can have; mirrored by the CHECK on trellis.runs (a test compares them). */
export const RUN_STATES = ['pending', 'running', 'waiting', 'paused', 'completed', 'failed', 'cancelled'] as const;
export type RunState = (typeof RUN_STATES)[number];
export const FINISHED_STATES: readonly RunState[] = ['completed', 'failed', 'cancelled'];

type Timestamp = ColumnType<Date, Date | string, Date | string>;

export interface RunsTable {
  id: string;
  workflow: string;
  version: string;
  key: string | null;
  queue: string;
  priority: number;
  status: RunState;
  input: unknown;
  output: unknown;
  error: unknown;
  metadata: Record<string, unknown>;
  attempt: number;
  failures: number;
  run_at: Timestamp;
  lease_token: string | null;
  lease_owner: string | null;
  lease_expires_at: Timestamp | null;
  created_at: Timestamp;
  started_at: Timestamp | null;
  finished_at: Timestamp | null;
  scrubbed_at: Timestamp | null;
  updated_at: Timestamp;
  execution: number;
  parent_run_id: string | null;
  parent_seq: number | null;
  parent_close: 'cancel' | 'abandon';
  cancel_requested_at: Timestamp | null;
  pause_requested_at: Timestamp | null;
  /** The run's flow-control group in its queue (`concurrencyKey`), or null. */
  concurrency_key: string | null;
  /** The run's bucket (docs/scaling.md): leads every key of the run-scoped tables; never changes. */
  bucket: number;
  /** Leases that expired in a row without checkpoint progress; the run is parked at setting max_lease_expiries. */
  lease_expiries: number;
  /** When the run is cancelled if it has not finished (the start's `deadline` or `timeLimit`), or null. */
  deadline_at: Timestamp | null;
  /** The run this one was forked from (`run_fork`), or null. */
  forked_from: string | null;
  /** With forked_from: the original's call this run ran again from. */
  forked_from_seq: number | null;
  /** The key this run had until a later start with `keyPolicy` 'reuse', 'replace' or 'supersede' took it (`key` is then null). */
  former_key: string | null;
  /** A run its code parked under `resumeAfter`: when the resumes duty resumes it; null otherwise. */
  resume_at: Timestamp | null;
  /** How many times the resumes duty resumed it (resumeAfter) since an operator last resumed or retried it. */
  auto_resumes: number;
}

/**
 * Every column of trellis.runs an application reads: all but lease_token,
 * which the trellis_client and trellis_reader roles cannot read (sql/950_grants.sql).
 *
 * @example
 * db.selectFrom('trellis.runs').select(RUN_COLUMNS).where('id', '=', id)
 */
export const RUN_COLUMNS = ['id', 'workflow', 'version', 'key', 'queue', 'priority', 'status', 'input', 'output', 'error',
  'metadata', 'attempt', 'failures', 'run_at', 'lease_owner', 'lease_expires_at', 'created_at', 'started_at', 'finished_at',
  'scrubbed_at', 'updated_at', 'execution', 'parent_run_id', 'parent_seq', 'parent_close', 'cancel_requested_at',
  'pause_requested_at', 'concurrency_key', 'bucket', 'lease_expiries', 'deadline_at',
  'forked_from', 'forked_from_seq', 'former_key', 'resume_at', 'auto_resumes'] as const satisfies readonly Exclude<keyof RunsTable, 'lease_token'>[];

export interface StepsTable {
  /** The bucket of the step's run. */
  bucket: number;
  run_id: string;
  execution: number;
  seq: number;
  name: string;
  kind: string;
  status: string;
  output: unknown;
  error: unknown;
  attempts: Generated<number>;
  started_at: Timestamp;
  finished_at: Timestamp;
}

export interface SignalsTable {
  id: Generated<number>;
  /** The bucket of the signal's run. */
  bucket: number;
  run_id: string;
  name: string;
  payload: unknown;
  signal_id: string | null;
  created_at: Timestamp;
  consumed_at: Timestamp | null;
  consumed_seq: number | null;
  /** For a signal signal_with_start buffered for a run it did not start: the start it came with (decision 0043). */
  start: unknown | null;
  /** For a request (decision 0044): the run's answer, `{ value }` or `{ error }`; null while unanswered. */
  reply: unknown | null;
  replied_at: Timestamp | null;
}

export interface WorkflowsTable {
  name: string;
  version: string;
  queue: string;
  registered_at: Timestamp;
  last_seen_at: Timestamp;
}

/** trellis.run_watches: runs waiting on a run that is not their child (ctx.waitForRun, decision 0039). */
export interface RunWatchesTable {
  bucket: number;
  /** The awaited run. */
  run_id: string;
  /** The waiting run. */
  waiter_id: string;
  created_at: Timestamp;
}

/** The `trellis` schema as Kysely sees it: `db.withSchema('trellis')` or 'trellis.runs'. */
export interface TrellisTables {
  'trellis.runs': RunsTable;
  'trellis.steps': StepsTable;
  'trellis.signals': SignalsTable;
  'trellis.workflows': WorkflowsTable;
  'trellis.run_watches': RunWatchesTable;
}
