/** Wrappers of sql/730_models.sql: state machine triggers, callbacks, data deletion, and templates. */
import { type Queryable, queryRows } from './queryable.ts';

/** trellis.machine_trigger_check: TR004 while the foreign id has an unfinished run; locks the pair for the transaction. */
export async function machineTriggerCheck(db: Queryable, machine: string, foreignId: string): Promise<void> {
  await queryRows(db, 'select trellis.machine_trigger_check($1, $2)', [machine, foreignId]);
}

/** trellis.machine_trigger_keyed: the run the key already started, else null (after the checks of machine_trigger_check). */
export async function machineTriggerKeyed(db: Queryable, machine: string, foreignId: string, key: string): Promise<string | null> {
  const rows = await queryRows<{ run: string | null }>(db, 'select trellis.machine_trigger_keyed($1, $2, $3) as run', [machine, foreignId, key]);
  return rows[0]?.run ?? null;
}

/** trellis.machine_callback: false when a callback with this id was already received. */
export async function machineCallback(db: Queryable, machine: string, foreignId: string, status: string, payload: string, id: string | null): Promise<boolean> {
  const rows = await queryRows<{ sent: boolean }>(db, 'select trellis.machine_callback($1, $2, $3, $4::jsonb, $5) as sent', [machine, foreignId, status, payload, id]);
  return rows[0]?.sent ?? false;
}

/** trellis.machine_data_delete: when the run's data was deleted. */
export async function machineDataDelete(db: Queryable, runId: string, object: string): Promise<Date> {
  const rows = await queryRows<{ at: Date }>(db, 'select trellis.machine_data_delete($1, $2::jsonb) as at', [runId, object]);
  return (rows[0] as { at: Date }).at;
}

/** A row of the view trellis.machine_runs. */
export interface MachineRunRow {
  run_id: string;
  machine: string;
  foreign_id: string;
  run_status: string;
  status: string;
  object: unknown;
  last_outcome: string | null;
  status_since: Date;
  scrubbed_at: Date | null;
}

const MACHINE_RUN_COLUMNS = 'run_id, machine, foreign_id, run_status, status, object, last_outcome, status_since, scrubbed_at';

/** One machine run by id (undefined when it is not one). */
export async function machineRunGet(db: Queryable, runId: string): Promise<MachineRunRow | undefined> {
  const rows = await queryRows<MachineRunRow>(db, `select ${MACHINE_RUN_COLUMNS} from trellis.machine_runs where run_id = $1`, [runId]);
  return rows[0];
}

/** The newest run of a machine for a foreign id. */
export async function machineRunLatest(db: Queryable, machine: string, foreignId: string): Promise<MachineRunRow | undefined> {
  const rows = await queryRows<MachineRunRow>(db,
    `select ${MACHINE_RUN_COLUMNS} from trellis.machine_runs where machine = $1 and foreign_id = $2 order by created_at desc, run_id desc limit 1`,
    [machine, foreignId]);
  return rows[0];
}

/**
 * When run `runId` last entered machine status `status`, and its object
 * then: the newest completed transition to it in the history kept, else
 * the status the execution began in (the trigger's, or the one a
 * continue-as-new carried); undefined if neither.
 */
export async function machineReached(db: Queryable, runId: string, status: string): Promise<{ object: unknown; at: Date } | undefined> {
  const rows = await queryRows<{ object: unknown; at: Date }>(db,
    `select coalesce(t.object, r.input->'object'::text) as object, coalesce(t.at, r.created_at) as at
       from trellis.runs r
       left join lateral (
         select s.output->'object'::text as object, s.finished_at as at from trellis.steps s
          where s.bucket = r.bucket and s.run_id = r.id and s.kind = 'step' and s.status = 'completed'
            and pg_catalog.jsonb_typeof(s.output) = 'object' and s.output->>'to'::text = $2
          order by s.execution desc, s.seq desc limit 1) t on true
      where r.id = $1 and (t.at is not null or r.input->>'status'::text = $2)`, [runId, status]);
  return rows[0];
}

/** trellis.template_set: the version stored (the newest one when the definition did not change). */
export async function templateSet(db: Queryable, name: string, definition: string): Promise<number> {
  const rows = await queryRows<{ version: number }>(db, 'select trellis.template_set($1, $2::jsonb) as version', [name, definition]);
  return (rows[0] as { version: number }).version;
}

/** trellis.template_get: a stored template (TR002 when unknown). */
export async function templateGet(db: Queryable, name: string, version?: number): Promise<{ name: string; version: number; definition: unknown }> {
  const rows = await queryRows<{ name: string; version: number; definition: unknown }>(db,
    'select name, version, definition from trellis.template_get($1, $2)', [name, version ?? null]);
  return rows[0] as { name: string; version: number; definition: unknown };
}

/** trellis.connector_cursor_lock: the connector's cursor, locked for the transaction. */
export async function connectorCursorLock(db: Queryable, name: string): Promise<unknown> {
  const rows = await queryRows<{ cursor: unknown }>(db, 'select trellis.connector_cursor_lock($1) as cursor', [name]);
  return rows[0]?.cursor ?? null;
}

/** trellis.connector_cursor_set. */
export async function connectorCursorSet(db: Queryable, name: string, cursor: string): Promise<void> {
  await queryRows(db, 'select trellis.connector_cursor_set($1, $2::jsonb)', [name, cursor]);
}
