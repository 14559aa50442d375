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
  'completed', 'failed', 'cancelled', 'purged', 'replaced', 'step_completed', 'step_failed',
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
  workflows?: readonly string[] | undefined;
  kinds?: readonly EventKind[] | undefined;
  runId?: string | undefined;
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

/** The states of a hook delivery not yet delivered (a delivered one is deleted). */
export const HOOK_STATUSES = ['pending', 'running', 'parked'] as const;
export type HookStatus = (typeof HOOK_STATUSES)[number];

/**
 * A hook delivery as operators see it (`client.hooks.list()`, `trellis hooks`,
 * the dashboard's Outbox page): pending (due at `runAt`), running (claimed by
 * `leaseOwner`) or parked (it kept failing: `lastError` says why). A delivered
 * one is deleted.
 *
 * @example
 * for (const d of await client.hooks.list({ status: 'parked' })) console.log(d.id, d.hook, d.runId, d.lastError);
 */
export interface HookDelivery {
  /** A decimal string (bigint in SQL). */
  id: string;
  runId: string;
  workflow: string;
  version: string;
  /** onComplete, onFail, onCancel or onPause. */
  hook: string;
  /** The transition that made it (completed, failed, cancelled, paused). */
  event: string;
  status: HookStatus;
  /** Claims so far (since the last retry). */
  attempts: number;
  runAt: Date;
  leaseOwner: string | null;
  leaseExpiresAt: Date | null;
  lastError: unknown;
  createdAt: Date;
  updatedAt: Date;
}

/**
 * Which deliveries `hookList` returns: any status, workflow and run when absent.
 *
 * @example
 * await client.hooks.list({ status: 'parked', workflow: 'order', limit: 50 });
 */
export interface HookFilter {
  status?: HookStatus | undefined;
  workflow?: string | undefined;
  runId?: string | undefined;
  /** At most this many (1-1000, default 100), parked first, then oldest first. */
  limit?: number | undefined;
}

/** Hook deliveries, parked first, then by id (a plain read of trellis.hook_deliveries). */
export async function hookList(db: Queryable, filter: HookFilter, limit: number): Promise<HookDelivery[]> {
  const rows = await queryRows<Record<string, never>>(db, `
    select id::text as id, run_id, workflow, version, hook, event, status, attempts, run_at, lease_owner,
           lease_expires_at, last_error, created_at, updated_at
      from trellis.hook_deliveries
     where ($1::text is null or status = $1) and ($2::text is null or workflow = $2) and ($3::uuid is null or run_id = $3)
     order by status = 'parked' desc, id
     limit $4`, [filter.status ?? null, filter.workflow ?? null, filter.runId ?? null, limit]);
  return rows.map((r: Record<string, any>) => ({
    id: r.id, runId: r.run_id, workflow: r.workflow, version: r.version, hook: r.hook, event: r.event, status: r.status,
    attempts: r.attempts, runAt: r.run_at, leaseOwner: r.lease_owner, leaseExpiresAt: r.lease_expires_at,
    lastError: r.last_error, createdAt: r.created_at, updatedAt: r.updated_at,
  }));
}

/**
 * Hook deliveries not yet delivered, by status (0 for a status with none). A
 * plain GROUP BY: a join with a list of statuses is refused on a distributed table.
 */
export async function hookCounts(db: Queryable): Promise<Record<HookStatus, number>> {
  const rows = await queryRows<{ status: HookStatus; n: number }>(db,
    'select status, pg_catalog.count(*)::int as n from trellis.hook_deliveries group by status');
  return Object.fromEntries(HOOK_STATUSES.map((s) => [s, rows.find((r) => r.status === s)?.n ?? 0])) as Record<HookStatus, number>;
}

/** trellis.hook_retry: a parked delivery pending again (TR002 unknown, TR004 not parked). */
export async function hookRetry(db: Queryable, id: string): Promise<void> {
  await queryRows(db, 'select trellis.hook_retry($1::bigint)', [id]);
}

/**
 * A durable consumer of the outbox as operators see it (`client.consumers.list()`,
 * `trellis consumers`, the dashboard's Outbox page).
 *
 * @example
 * for (const c of await client.consumers.list()) if (c.behind > 1000) console.warn(`${c.name} is behind`);
 */
export interface ConsumerRow {
  name: string;
  /** The acknowledged position ('<xid>:<id>', or '0:0' before the first event). */
  position: string;
  /**
   * Events kept after the position, of every kind (a consumer's filter is
   * given when it reads), counted up to `CONSUMER_BEHIND_CAP`: a larger
   * backlog reads as the cap.
   */
  behind: number;
  createdAt: Date;
  /** The last acknowledgement (or the creation). */
  updatedAt: Date;
}

/** How far `consumerList` counts a consumer's backlog. */
export const CONSUMER_BEHIND_CAP = 10_000;

/** Every durable consumer, by name, with its backlog (one bounded count per consumer). */
export async function consumerList(db: Queryable): Promise<ConsumerRow[]> {
  const rows = await queryRows<{ name: string; after_xid: string; after_id: string; created_at: Date; updated_at: Date }>(db,
    'select name, after_xid::text as after_xid, after_id::text as after_id, created_at, updated_at from trellis.event_consumers order by name');
  const out: ConsumerRow[] = [];
  for (const r of rows) {
    // A count of its own per consumer: on a cluster, a subquery of the
    // distributed events inside a read of the consumers (a reference table) is refused.
    const [behind] = await queryRows<{ n: number }>(db, `
      select pg_catalog.count(*)::int as n from (select 1 from trellis.events e where (e.xid, e.id) > ($1::xid8, $2::bigint) limit $3) x`,
    [r.after_xid, r.after_id, CONSUMER_BEHIND_CAP]);
    out.push({ name: r.name, position: `${r.after_xid}:${r.after_id}`, behind: behind?.n ?? 0, createdAt: r.created_at, updatedAt: r.updated_at });
  }
  return out;
}
