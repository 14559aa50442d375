/** One wrapper per run function in sql/200_runs.sql and sql/100_workflows.sql. */
import { type ClaimedRun, markOversized } from '../protocol/history.ts';
import { type Queryable, queryRows } from './queryable.ts';
import type { WorkflowRegistration } from '../protocol/registration.ts';
import { SCHEMA_INFO_SQL } from './schema-check.ts';

export interface RunStartOptions {
  key?: string | undefined;
  /** What the start does with a key another run holds (decision 0036). */
  key_policy?: 'return' | 'reuse' | 'replace' | 'supersede' | undefined;
  queue?: string | undefined;
  priority?: number | undefined;
  run_at?: string | undefined;
  metadata?: Record<string, unknown> | undefined;
  version?: string | undefined;
  /** The run's flow-control group in its queue (sql/220_queues.sql). */
  concurrency_key?: string | undefined;
  /** The run's deadline (ISO timestamp; decision 0031). */
  deadline?: string | undefined;
  /** The run's time limit from its start, run_at or now if that is past (an interval; decision 0031). */
  time_limit?: string | undefined;
  /** The input was validated against the workflow's own schema: SQL skips its shape check. */
  input_checked?: boolean | undefined;
  /**
   * The start commits at once (not inside a caller's transaction): it may
   * skip its NOTIFY while a run of the same workflow is pending (sql/210_wakeups.sql).
   */
  coalesce_notify?: boolean | undefined;
}

/** trellis.run_start: `input` is JSON text (already validated and size-checked). */
export async function runStart(db: Queryable, workflow: string, input: string, options: RunStartOptions): Promise<string> {
  const rows = await queryRows<{ id: string }>(db, 'select trellis.run_start($1, $2::jsonb, $3::jsonb) as id', [
    workflow,
    input,
    JSON.stringify(options),
  ], 'trellis_run_start');
  return (rows[0] as { id: string }).id;
}

/** trellis.run_start_many: the run ids, in the order of `runs` (each input as its JSON text). */
export async function runStartMany(db: Queryable, workflow: string, runs: readonly { input: string; options: RunStartOptions }[]): Promise<string[]> {
  const text = `[${runs.map((r) => `{"input":${r.input},"options":${JSON.stringify(r.options)}}`).join(',')}]`;
  const rows = await queryRows<{ id: string }>(db,
    'select id from trellis.run_start_many($1, $2::jsonb) order by ordinality', [workflow, text]);
  return rows.map((r) => r.id);
}

/**
 * The payload limit (trellis.settings max_payload_bytes, default 1 MB) as an
 * SQL expression, read as run_start reads it: a plain integer as it is, and
 * only another stored value through trellis._setting_int (TR008 for one that
 * is not an integer), so a fresh session compiles no PL/pgSQL function for
 * it (−0.4 ms of a new session's first start, issue 18).
 */
export const PAYLOAD_LIMIT_SQL = `(select case when v.raw is null then 1048576
                    when v.raw ~ '^[[:space:]]*[0-9]{1,9}[[:space:]]*$' then v.raw::integer
                    else trellis._setting_int('max_payload_bytes', 1048576) end
     from (select (select st.value #>> '{}'::text[] from trellis.settings st where st.key = 'max_payload_bytes') as raw) v)`;

/** What {@link runStartFirst} read besides the start: the payload limit, the schema's migration and its functions' revision. */
export interface FirstStart {
  /** The new run's id; null when the schema is behind `migration` or `sqlRevision` (nothing was started or registered). */
  id: string | null;
  maxPayloadBytes: number;
  migration: number | null;
  sqlRevision: number | null;
}

/**
 * A client's first start in one statement (one round trip, issue 18): the
 * payload limit and the schema's migration and functions' revision are
 * read, and, only if the schema is at `migration` (or newer) with its
 * functions at `sqlRevision` or newer, `registration` (if any) is registered
 * (unless trellis._workflow_stored says it is stored as it is, so a fresh
 * session compiles no registration code for a known workflow) and the run
 * started. The limit is checked by run_start itself (TR005);
 * a failure rolls the registration back with the start.
 */
export async function runStartFirst(db: Queryable, workflow: string, input: string, options: RunStartOptions,
  registration: WorkflowRegistration | undefined, migration: number, sqlRevision: number): Promise<FirstStart> {
  // Each CTE is read before the statement around it computes its target
  // list: the checks, then the registration, then the start; the CASEs keep
  // both writes from a schema behind.
  const rows = await queryRows<{ max_payload: number; migration: number | null; sql_revision: number | null; id: string | null }>(db,
    // Named first: pg_stat_activity shows a statement's first 1,024 bytes
    // (track_activity_query_size), and an operator looking at a start that
    // waits (on a key's lock, say) should see what it is.
    `/* trellis.run_start: a client's first start */
     with s as materialized (
       select ${PAYLOAD_LIMIT_SQL} as max_payload, ${SCHEMA_INFO_SQL}),
     c as materialized (
       select s.*, (s.migration > $5 or (s.migration = $5 and s.sql_revision >= $6)) as current from s),
     r as materialized (
       select c.*, case when c.current and $4::jsonb is not null
                             and not trellis._workflow_stored($4::jsonb -> 0, trellis.now())
                        then trellis.workflow_register($4::jsonb) end as registered
         from c)
     select r.max_payload, r.migration, r.sql_revision,
            case when r.current then trellis.run_start($1, $2::jsonb, $3::jsonb) end as id
       from r`, [workflow, input, JSON.stringify(options), registration ? JSON.stringify([registration]) : null, migration, sqlRevision]);
  const r = rows[0] as (typeof rows)[number];
  return { id: r.id, maxPayloadBytes: r.max_payload, migration: r.migration, sqlRevision: r.sql_revision };
}

export interface StartClaimedArgs {
  worker: string;
  leaseMs: number;
}

/**
 * trellis.run_start_claimed: start a run leased at once to `worker`. The
 * run as a claim would return it, or undefined when nothing was leased (a
 * repeated key, a future run_at); `id` is the run's either way.
 */
export async function runStartClaimed(db: Queryable, workflow: string, input: string, options: RunStartOptions,
  a: StartClaimedArgs): Promise<{ id: string; run: ClaimedRun | undefined }> {
  const rows = await queryRows<{ id: string; claimed: boolean; workflow: string; version: string; input: unknown;
    metadata: Record<string, unknown>; lease_token: string; lease_expires_at: Date; now: Date; deadline_at: Date | null }>(db,
    // Named columns, never *: a named statement whose result columns change
    // (a later migration adds one) fails with 0A000 on every connection that
    // prepared it, for as long as a pooler keeps it (the upgrade audit).
    `select id, claimed, workflow, version, input, metadata, lease_token, lease_expires_at, now, deadline_at
       from trellis.run_start_claimed($1, $2::jsonb, $3::jsonb, $4, pg_catalog.make_interval(secs => $5::double precision / 1000))`,
    [workflow, input, JSON.stringify(options), a.worker, a.leaseMs], 'trellis_run_start_claimed');
  const r = rows[0] as (typeof rows)[number];
  if (!r.claimed) return { id: r.id, run: undefined };
  return {
    id: r.id,
    run: {
      id: r.id, workflow: r.workflow, version: r.version, input: r.input, metadata: r.metadata,
      // A new run: its first attempt of its first execution, nothing recorded yet.
      attempt: 1, failures: 0, execution: 1, history: null, signals: null, children: null,
      lease_token: r.lease_token, lease_expires_at: r.lease_expires_at,
      cancel_requested: false, pause_requested: false, now: r.now, deadline_at: r.deadline_at,
    },
  };
}

export interface RunClaimArgs {
  worker: string;
  queues: readonly string[];
  served: readonly { name: string; version: string }[];
  limit: number;
  leaseMs: number;
}

/**
 * trellis.run_claim. Every column but lease_expires_at, which the worker
 * does not read (the worker keeps its own, earlier, view of the lease):
 * parsing that timestamp cost ~0.6 µs a run.
 */
export async function runClaim(db: Queryable, a: RunClaimArgs): Promise<ClaimedRun[]> {
  const rows = await queryRows<ClaimedRun>(
    db,
    // Asynchronous commit: a lost claim only returns its runs to pending (see sql/200_runs.sql).
    `select id, workflow, version, input, metadata, attempt, failures, lease_token, history, execution, cancel_requested,
            pause_requested, signals, children, now, deadline_at, cancel_reason
       from trellis.run_claim($1, $2::text[], $3::text[], $4::text[], $5, pg_catalog.make_interval(secs => $6::double precision / 1000), true)`,
    [a.worker, a.queues, a.served.map((s) => s.name), a.served.map((s) => s.version), a.limit, a.leaseMs],
    'trellis_run_claim',
  );
  for (const row of rows) if (row.history?.length === 1) markOversized(row);
  return rows;
}

/**
 * trellis.run_idle_check, for a worker whose claim came back short: the next
 * due time as milliseconds from the engine's now (null: nothing scheduled),
 * or gateBusy when a coalescing start is in flight (look again shortly).
 */
export async function runIdleCheck(db: Queryable, queues: readonly string[], served: readonly { name: string; version: string }[]): Promise<{ ms: number | null; gateBusy: boolean }> {
  const rows = await queryRows<{ ms: number | null; gate_busy: boolean }>(
    db,
    `select (extract(epoch from c.next_due - trellis.now()) * 1000)::float8 as ms, c.gate_busy
       from trellis.run_idle_check($1::text[], $2::text[], $3::text[]) c`,
    [queues, served.map((s) => s.name), served.map((s) => s.version)],
    'trellis_run_idle_check',
  );
  return { ms: rows[0]?.ms ?? null, gateBusy: rows[0]?.gate_busy ?? false };
}

export interface HeldRun {
  id: string;
  cancel_requested: boolean;
  pause_requested: boolean;
  /** run_requests only: a requested cancellation's reason. */
  cancel_reason?: string | null | undefined;
}

/** trellis.run_heartbeat_many: the runs still held, with their cancel/pause requests. */
export async function runHeartbeatMany(db: Queryable, held: readonly { id: string; token: string }[], leaseMs: number): Promise<Map<string, HeldRun>> {
  const rows = await queryRows<HeldRun>(
    db,
    'select id, cancel_requested, pause_requested from trellis.run_heartbeat_many($1::uuid[], $2::uuid[], pg_catalog.make_interval(secs => $3::double precision / 1000))',
    [held.map((h) => h.id), held.map((h) => h.token), leaseMs],
  );
  return new Map(rows.map((r) => [r.id, r]));
}

/** trellis.run_requests: held runs with a cancel or pause request pending. */
export async function runRequests(db: Queryable, held: readonly { id: string; token: string }[]): Promise<HeldRun[]> {
  return queryRows<HeldRun>(db, 'select id, cancel_requested, pause_requested, cancel_reason from trellis.run_requests($1::uuid[], $2::uuid[])',
    [held.map((h) => h.id), held.map((h) => h.token)], 'trellis_run_requests');
}

/** trellis.workflow_register: one row per version (see registrationOf in src/workflow/registration.ts). */
export async function workflowRegister(db: Queryable, workflows: readonly WorkflowRegistration[]): Promise<void> {
  await queryRows(db, 'select trellis.workflow_register($1::jsonb)', [JSON.stringify(workflows)]);
}

/** An integer from trellis.settings. */
export async function settingInt(db: Queryable, key: string, fallback: number): Promise<number> {
  const rows = await queryRows<{ v: number }>(db, 'select trellis._setting_int($1, $2) as v', [key, fallback]);
  return rows[0]?.v ?? fallback;
}

/**
 * trellis.run_release_owned: give back the runs leased to `worker` except
 * `keep` (those it knows it holds); returns how many were released.
 */
export async function runReleaseOwned(db: Queryable, worker: string, keep: readonly string[]): Promise<number> {
  const rows = await queryRows<{ n: number }>(db, 'select trellis.run_release_owned($1, $2::uuid[]) as n', [worker, keep]);
  return rows[0]?.n ?? 0;
}
