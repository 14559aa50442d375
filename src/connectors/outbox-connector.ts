/**
 * The built-in connector over another Trellis workflow's events: the
 * outbox (trellis.events, docs/events.md), read through a durable consumer
 * of the same name (trellis.event_consumers). Reads come in commit-safe
 * order (the consumer's cursor is below the transaction-id horizon, so a
 * late commit is never skipped), and the consumer's position holds the
 * events back from the outbox's purge until they are acknowledged.
 *
 * `connectorStep` acknowledges a batch in the transaction that handled it:
 * effects made with the batch's `tx` commit exactly when the
 * acknowledgement does. Delivery is still at least once (an effect made
 * outside `tx`, then a crash before the commit, comes again), so every
 * event carries a stable id for idempotency: a machine connector passes it
 * as the trigger key and the callback id by default.
 */
import { consumerAck, consumerCreate, consumerRead, type EventKind, type RunEvent } from '../db/events.ts';
import type { Queryable } from '../db/queryable.ts';
import { ValidationError } from '../errors.ts';
import { assertName } from '../workflow/names.ts';
import type { Connector, ConnectorEvent } from './connector.ts';

/**
 * Options of `outboxConnector`.
 *
 * @example
 * outboxConnector({ name: 'payments-to-orders', workflows: ['payment'], kinds: ['completed'], from: 'now' });
 */
export interface OutboxConnectorOptions {
  /** The connector's name: also the name of its durable consumer and its cursor row. */
  name: string;
  /** Only events of these workflows (default: every workflow). */
  workflows?: readonly string[] | undefined;
  /** Only these kinds of events (default: every kind). */
  kinds?: readonly EventKind[] | undefined;
  /** Where a new consumer starts: 'start' (every event kept, the default), 'now', or a cursor. An existing one keeps its position. */
  from?: 'start' | 'now' | string | undefined;
  /**
   * The foreign id an event is about (default: the source run's key, else its
   * run id). Return undefined to skip the event (it is acknowledged all the same).
   */
  foreignId?: ((event: RunEvent) => string | undefined) | undefined;
}

/**
 * The payload of an outbox connector's event: the source run's event as the outbox has it.
 *
 * @example
 * const handle = (e: ConnectorEvent) => { const source = e.payload as OutboxEventPayload; console.log(source.workflow, source.runId); };
 */
export type OutboxEventPayload = RunEvent;

/**
 * A connector over the events of other Trellis workflows. Each event becomes
 * `{ id: '<name>:<cursor>', foreignId, type: <kind>, payload: <the RunEvent> }`.
 *
 * @example
 * const payments = outboxConnector({ name: 'payments-to-orders', workflows: ['payment'], kinds: ['completed'] });
 * await connectorStep({ client, connector: payments,
 *   handle: async (e, { tx }) => { await orders.callback(e.foreignId, 'awaiting-payment', e.payload, { id: e.id, tx }); } });
 */
export function outboxConnector(options: OutboxConnectorOptions): Connector {
  assertName(options.name, 'connector');
  const from = options.from ?? 'start';
  if (typeof from !== 'string' || from.length === 0) throw new ValidationError("outbox connector from must be 'start', 'now' or a cursor");
  if (options.foreignId !== undefined && typeof options.foreignId !== 'function') {
    throw new ValidationError('outbox connector foreignId must be a function of the event');
  }
  const filter = { workflows: options.workflows, kinds: options.kinds };
  const foreignIdOf = options.foreignId ?? ((e: RunEvent) => e.key ?? e.runId);
  return {
    name: options.name,
    async read(db: Queryable, _cursor: unknown, limit: number) {
      // Created on first use (kept where it is afterwards); its position is the truth.
      await consumerCreate(db, options.name, from);
      const rows = await consumerRead(db, options.name, Math.min(limit, 10_000), filter);
      const events: ConnectorEvent[] = [];
      for (const row of rows) {
        const foreignId = foreignIdOf(row);
        if (foreignId === undefined) continue;
        events.push({ id: `${options.name}:${row.cursor}`, foreignId, type: row.kind, payload: row });
      }
      const last = rows.at(-1);
      // Only skipped events in the batch: acknowledge them without handling anything.
      if (last && events.length === 0) await consumerAck(db, options.name, last.cursor);
      return { events, cursor: last?.cursor ?? null };
    },
    async ack(db: Queryable, cursor: unknown) {
      if (typeof cursor === 'string') await consumerAck(db, options.name, cursor);
    },
  };
}
