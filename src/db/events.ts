/** Wrappers of sql/700_events.sql (the outbox) and sql/710_hooks.sql (hook deliveries). */
import { type Queryable, queryRows } from './queryable.ts';

/**
 * The kinds of events the outbox holds (sql/150_transitions.sql, run_transitions).
 *
 * @example
 * for await (const e of client.events({ kinds: ['failed', 'step_failed'] })) alert(e.runId);
 */
export const EVENT_KINDS = [
  'started', 'waiting', 'resumed', 'released', 'retried', 'continued', 'paused',
  'completed', 'failed', 'cancelled', 'purged', 'step_completed', 'step_failed',
] as const;
export type EventKind = (typeof EVENT_KINDS)[number];

/**
 * One event of the outbox, as `client.events()` and consumers yield it.
 *
 * @example
 * const [first] = await consumer.read(1);
 * if (first?.kind === 'completed') console.log(first.runId, first.body.to, first.cursor);
 */
export interface RunEvent {
  /** Where a read resumes after this event ('<xid>:<id>'). */
  cursor: string;
  runId: string;
  workflow: string;
  version: string;
  key: string | null;
  kind: EventKind;
  /** The run's attempt when the event was written. */
  attempt: number;
  /** from/to status and execution; step events: seq, name, attempts; output/error only when the workflow opts in. */
  body: Record<string, unknown>;
  createdAt: Date;
}

/**
 * What a read selects: any of these workflows and kinds (all when absent), or one run.
 *
 * @example
 * client.events({ workflows: ['order'], kinds: ['completed'], runId });
 */
export interface EventFilter {
  workflows?: readonly string[];
  kinds?: readonly EventKind[];
  runId?: string;
}

interface EventRow {
  cursor: string; run_id: string; workflow: string; version: string; key: string | null; kind: EventKind;
  attempt: number; body: Record<string, unknown>; created_at: Date;
}

const toEvent = (r: EventRow): RunEvent => ({
  cursor: r.cursor, runId: r.run_id, workflow: r.workflow, version: r.version, key: r.key, kind: r.kind,
  attempt: r.attempt, body: r.body, createdAt: r.created_at,
});

const filterJson = (f: EventFilter): string =>
  JSON.stringify({ workflows: f.workflows ?? null, kinds: f.kinds ?? null, run_id: f.runId ?? null });

/** trellis.events_read. */
export async function eventsRead(db: Queryable, after: string | null, limit: number, filter: EventFilter): Promise<RunEvent[]> {
  const rows = await queryRows<EventRow>(db, 'select * from trellis.events_read($1, $2, $3::jsonb)', [after, limit, filterJson(filter)]);
  return rows.map(toEvent);
}

/** trellis.event_consumer_create: its position. */
export async function consumerCreate(db: Queryable, name: string, from: string): Promise<string> {
  const rows = await queryRows<{ pos: string }>(db, 'select trellis.event_consumer_create($1, $2) as pos', [name, from]);
  return rows[0]!.pos;
}

/** trellis.event_consumer_read. */
export async function consumerRead(db: Queryable, name: string, limit: number, filter: EventFilter): Promise<RunEvent[]> {
  const rows = await queryRows<EventRow>(db, 'select * from trellis.event_consumer_read($1, $2, $3::jsonb)', [name, limit, filterJson(filter)]);
  return rows.map(toEvent);
}

/** trellis.event_consumer_ack: the new position. */
export async function consumerAck(db: Queryable, name: string, cursor: string): Promise<string> {
  const rows = await queryRows<{ pos: string }>(db, 'select trellis.event_consumer_ack($1, $2) as pos', [name, cursor]);
  return rows[0]!.pos;
}

/** trellis.event_consumer_drop. */
export async function consumerDrop(db: Queryable, name: string): Promise<boolean> {
  const rows = await queryRows<{ dropped: boolean }>(db, 'select trellis.event_consumer_drop($1) as dropped', [name]);
  return rows[0]!.dropped;
}

/** A claimed hook delivery with its run (trellis.hook_claim). */
export interface HookDeliveryRow {
  id: string; run_id: string; workflow: string; version: string; hook: string; event: string; attempts: number;
  key: string | null; status: string; input: unknown; output: unknown; error: unknown; metadata: Record<string, unknown>;
}

export async function hookClaim(db: Queryable, worker: string, pairs: ReadonlyArray<{ name: string; version: string }>,
  limit: number, leaseMs: number): Promise<HookDeliveryRow[]> {
  return queryRows<HookDeliveryRow>(db,
    `select * from trellis.hook_claim($1, $2, $3, $4, $5::float8 * interval '1 millisecond')`,
    [worker, pairs.map((p) => p.name), pairs.map((p) => p.version), limit, leaseMs]);
}

export async function hookDone(db: Queryable, id: string, worker: string, attempt: number): Promise<void> {
  await queryRows(db, 'select trellis.hook_done($1, $2, $3)', [id, worker, attempt]);
}

/** retryInMs null parks the delivery. */
export async function hookFailed(db: Queryable, id: string, worker: string, attempt: number, error: unknown,
  retryInMs: number | null): Promise<void> {
  await queryRows(db, `select trellis.hook_failed($1, $2, $3, $4::jsonb, $5::float8 * interval '1 millisecond')`,
    [id, worker, attempt, JSON.stringify(error), retryInMs]);
}
