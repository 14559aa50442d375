/** Wrappers of sql/400_signals.sql, sql/500_control.sql and run_scrub (sql/600_retention.sql). */
import type { RunState } from './tables.ts';
import { type Queryable, queryRows } from './queryable.ts';
import type { RunStartOptions } from './runs.ts';

/** trellis.signal_send: false when a signal with this id was already received. */
export async function signalSend(db: Queryable, runId: string, name: string, payload: string, signalId: string | null): Promise<boolean> {
  const rows = await queryRows<{ sent: boolean }>(db, 'select trellis.signal_send($1, $2, $3::jsonb, $4) as sent', [runId, name, payload, signalId], 'trellis_signal_send');
  return rows[0]?.sent ?? false;
}

/** trellis.request_send: the key's run that has (or now got) the request, and whether this call delivered it. */
export async function requestSend(db: Queryable, workflow: string, key: string, name: string, payload: string, requestId: string): Promise<{ id: string; delivered: boolean }> {
  const rows = await queryRows<{ run_id: string; delivered: boolean }>(db,
    'select run_id, delivered from trellis.request_send($1, $2, $3, $4::jsonb, $5)', [workflow, key, name, payload, requestId], 'trellis_request_send');
  const row = rows[0] as { run_id: string; delivered: boolean };
  return { id: row.run_id, delivered: row.delivered };
}

/** trellis.signal_with_start: the run signalled or started, whether this call started it, whether the signal was delivered. */
export async function signalWithStart(db: Queryable, workflow: string, input: string, options: RunStartOptions, name: string,
  payload: string, signalId: string | null): Promise<{ id: string; started: boolean; delivered: boolean }> {
  const rows = await queryRows<{ run_id: string; started: boolean; delivered: boolean }>(db,
    'select run_id, started, delivered from trellis.signal_with_start($1, $2::jsonb, $3::jsonb, $4, $5::jsonb, $6)',
    [workflow, input, JSON.stringify(options), name, payload, signalId], 'trellis_signal_with_start');
  const row = rows[0] as { run_id: string; started: boolean; delivered: boolean };
  return { id: row.run_id, started: row.started, delivered: row.delivered };
}

export type ControlVerb = 'cancel' | 'pause' | 'resume' | 'retry';

const CONTROL_SQL: Record<ControlVerb, string> = {
  cancel: 'select trellis.run_cancel($1, $2) as status',
  pause: 'select trellis.run_pause($1, $2) as status',
  resume: 'select trellis.run_resume($1) as status',
  retry: 'select trellis.run_retry($1) as status',
};

/** trellis.run_cancel / run_pause / run_resume / run_retry: the run's status afterwards. */
export async function runControl(db: Queryable, verb: ControlVerb, runId: string, reason?: string): Promise<RunState> {
  const values = verb === 'cancel' || verb === 'pause' ? [runId, reason ?? null] : [runId];
  const rows = await queryRows<{ status: RunState }>(db, CONTROL_SQL[verb], values);
  return (rows[0] as { status: RunState }).status;
}

/** One run a bulk control examined (sql/520_control_many.sql): its status afterwards, and whether it changed. */
export interface ControlManyRow {
  id: string;
  status: RunState;
  changed: boolean;
}

/**
 * trellis.run_cancel_many / run_retry_many / run_pause_many / run_resume_many:
 * one batch of up to `limit` runs matching `filter` (the SQL filter's JSON),
 * in id order after `after`.
 */
export async function runControlMany(db: Queryable, verb: ControlVerb, filter: Record<string, unknown>, limit: number,
  after: string | null, reason?: string): Promise<ControlManyRow[]> {
  const withReason = verb === 'cancel' || verb === 'pause';
  return queryRows<ControlManyRow>(db, withReason
    ? `select id, status, changed from trellis.run_${verb}_many($1::jsonb, $2, $3, $4::uuid)`
    : `select id, status, changed from trellis.run_${verb}_many($1::jsonb, $2, $3::uuid)`,
  withReason ? [JSON.stringify(filter), reason ?? null, limit, after] : [JSON.stringify(filter), limit, after]);
}

/** trellis.run_control_preview: the runs the control would change now (a dry run; nothing changes). */
export async function runControlPreview(db: Queryable, verb: ControlVerb, filter: Record<string, unknown>, limit: number,
  after: string | null): Promise<{ id: string }[]> {
  return queryRows<{ id: string }>(db, 'select id from trellis.run_control_preview($1, $2::jsonb, $3, $4::uuid)',
    [verb, JSON.stringify(filter), limit, after]);
}

/** trellis.run_fork: the new run's id (or, for a key another run holds, that run's). */
export async function runFork(db: Queryable, runId: string, fromSeq: number, options: RunStartOptions): Promise<string> {
  const rows = await queryRows<{ id: string }>(db, 'select trellis.run_fork($1, $2, $3::jsonb) as id', [runId, fromSeq, JSON.stringify(options)]);
  return (rows[0] as { id: string }).id;
}

/**
 * trellis.run_cancel_overdue: cancel the run whose deadline passed longest
 * ago; its id, or null when no run is overdue.
 */
export async function runCancelOverdue(db: Queryable): Promise<string | null> {
  const rows = await queryRows<{ id: string | null }>(db, 'select trellis.run_cancel_overdue() as id', [], 'trellis_run_cancel_overdue');
  return rows[0]?.id ?? null;
}

/**
 * Call run_cancel_overdue until no deadline is due, at most `limit` times
 * (or until `signal` aborts): how many deadlines were looked at (runs
 * cancelled for theirs, or passed over, having ended first). The worker's
 * deadlines duty and the test kit both look this way.
 */
export async function cancelOverdueRuns(db: Queryable, limit: number, signal?: AbortSignal): Promise<number> {
  let n = 0;
  while (n < limit && !signal?.aborted && (await runCancelOverdue(db)) !== null) n += 1;
  return n;
}

/** trellis.run_resume_due: resume up to `limit` parked runs whose resume_at passed; how many. */
export async function runResumeDue(db: Queryable, limit: number): Promise<number> {
  const rows = await queryRows<{ n: number }>(db, 'select trellis.run_resume_due($1) as n', [limit], 'trellis_run_resume_due');
  return rows[0]?.n ?? 0;
}

/** The id of the run of `workflow` started with `key`, if any. */
export async function runIdByKey(db: Queryable, workflow: string, key: string): Promise<string | undefined> {
  const rows = await queryRows<{ id: string }>(db, 'select id from trellis.runs where workflow = $1 and key = $2', [workflow, key]);
  return rows[0]?.id;
}

/** trellis.run_set_metadata: merge `patch` (JSON text) into a run's metadata; the merged metadata. */
export async function runSetMetadata(db: Queryable, runId: string, patch: string): Promise<Record<string, unknown>> {
  const rows = await queryRows<{ metadata: Record<string, unknown> }>(db, 'select trellis.run_set_metadata($1, $2::jsonb) as metadata', [runId, patch]);
  return (rows[0] as { metadata: Record<string, unknown> }).metadata;
}

/** trellis.run_scrub: when the run was scrubbed. */
export async function runScrub(db: Queryable, runId: string): Promise<Date> {
  const rows = await queryRows<{ at: Date }>(db, 'select trellis.run_scrub($1) as at', [runId]);
  return (rows[0] as { at: Date }).at;
}
