/**
 * Connectors: feed an event stream into Trellis (start state machine runs,
 * deliver callbacks, start templates). A `Connector` reads a batch of events
 * after a cursor; `runConnector` handles each batch in ONE transaction with
 * the move of the cursor (trellis.connector_cursors), so an event's effect
 * (a trigger or callback passed `tx`) commits exactly when its cursor does.
 */
import type { Client } from '../client/client.ts';
import { connectorCursorLock, connectorCursorSet } from '../db/models.ts';
import { sqlstateOf } from '../db/errors.ts';
import { fromKysely, type Queryable } from '../db/queryable.ts';
import { ValidationError } from '../errors.ts';
import { type Duration, toMs } from '../protocol/duration.ts';
import { consoleLogger, type Logger } from '../protocol/logger.ts';
import { assertName } from '../workflow/names.ts';

/**
 * One event of a source.
 *
 * @example
 * const event: ConnectorEvent = { id: 'payments:17', foreignId: 'order-9', type: 'settled', payload: { by: 'card' } };
 */
export interface ConnectorEvent {
  /** Unique in the source (used as the callback id, so a repeat is dropped). */
  id: string;
  /** The foreign id the event is about. */
  foreignId: string;
  /** What happened (e.g. 'payment.settled'). */
  type: string;
  payload: unknown;
}

/**
 * An event source read by cursor.
 *
 * @example
 * const numbers: Connector = { name: 'numbers', read: async (_db, cursor, limit) => {
 *   const from = (cursor as number | null) ?? 0;
 *   const events = Array.from({ length: limit }, (_, i) => ({ id: String(from + i), foreignId: `n-${from + i}`, type: 'tick', payload: null }));
 *   return { events, cursor: from + limit };
 * } };
 */
export interface Connector {
  /** Names its cursor in trellis.connector_cursors. */
  readonly name: string;
  /**
   * Up to `limit` events after `cursor` (null: from the start), read on `db`
   * (the batch's transaction), and the cursor after the last one.
   */
  read(db: Queryable, cursor: unknown, limit: number): Promise<{ events: ConnectorEvent[]; cursor: unknown }>;
  /**
   * For a source that keeps its own position (the outbox connector's durable
   * consumer): move it to `cursor`, on `db`, the batch's transaction, after
   * every event of the batch was handled.
   */
  ack?(db: Queryable, cursor: unknown): Promise<void>;
}

/**
 * What the handler gets besides the event: the batch's transaction, for `trigger(…, { tx })` and `callback(…, { tx })`.
 *
 * @example
 * const handle = (e: ConnectorEvent, { tx }: ConnectorContext) => orders.trigger(e.foreignId, { object: e.payload as Order, tx });
 * await connectorStep({ client, connector, handle });
 */
export interface ConnectorContext {
  tx: import('kysely').Kysely<any>;
}

/**
 * Options of `runConnector` and `connectorStep`.
 *
 * @example
 * await connectorStep({ client, connector, handle, batchSize: 500 });
 */
export interface RunConnectorOptions {
  client: Client;
  connector: Connector;
  /** Handles one event in the batch's transaction; what it returns (or resolves to) is ignored. */
  handle: (event: ConnectorEvent, ctx: ConnectorContext) => Promise<unknown> | unknown;
  /** Events per batch (default 100). */
  batchSize?: number | undefined;
  /** Pause between polls when a batch came back empty (default 1s). */
  pollInterval?: Duration | undefined;
  /** Stops the loop. */
  signal?: AbortSignal | undefined;
  /** Where a failed batch is logged (default: warnings and errors as JSON lines on stderr, as the client's and worker's default). */
  logger?: Logger | undefined;
}

/**
 * Handle one batch: lock the cursor, read, handle every event, move the
 * cursor (and acknowledge the batch to a source that keeps its own
 * position), commit. A handler that throws rolls the whole batch back (it is
 * read again next time); one that catches an error of its own statements
 * (a refused trigger) has that event's writes undone, and the batch goes on
 * (each event is handled in a savepoint). Returns how many events were handled.
 *
 * @example
 * while ((await connectorStep({ client, connector, handle })) > 0);
 */
export async function connectorStep(options: Omit<RunConnectorOptions, 'signal' | 'pollInterval' | 'logger'>): Promise<number> {
  const { client, connector, handle } = options;
  assertName(connector.name, 'connector');
  const limit = options.batchSize ?? 100;
  if (!Number.isInteger(limit) || limit < 1) throw new ValidationError('batchSize must be a positive integer');
  return client.db.transaction().execute(async (tx) => {
    const db = fromKysely(tx);
    const cursor = await connectorCursorLock(db, connector.name);
    const batch = await connector.read(db, cursor, limit);
    for (const event of batch.events) await handled(db, () => handle(event, { tx }));
    if (batch.events.length) {
      await connector.ack?.(db, batch.cursor);
      await connectorCursorSet(db, connector.name, JSON.stringify(batch.cursor ?? null));
    }
    return batch.events.length;
  });
}

/**
 * One event's handler, in a savepoint of the batch's transaction. A handler
 * that throws rolls the event back and the error rolls the batch back (it
 * is read again). A handler that caught an error of a statement it made (a
 * trigger refused with TR004, say) and returned has its writes for this
 * event undone, and the batch goes on: without the savepoint, that error
 * would leave the transaction aborted (25P02) and the batch could never
 * commit past the event.
 */
async function handled(db: Queryable, handler: () => Promise<unknown> | unknown): Promise<void> {
  await db.query('savepoint trellis_connector_event');
  try {
    await handler();
  } catch (error) {
    await db.query('rollback to savepoint trellis_connector_event');
    throw error;
  }
  try {
    await db.query('release savepoint trellis_connector_event');
  } catch (error) {
    if (sqlstateOf(error) !== '25P02') throw error;
    await db.query('rollback to savepoint trellis_connector_event');
  }
}

/**
 * Run a connector until `signal` aborts: batches back to back while there
 * are events, then a poll every `pollInterval`. A failed batch is logged
 * and retried after the interval.
 *
 * @example
 * const controller = new AbortController();
 * void runConnector({ client, connector: tableConnector({ name: 'payments', table: 'app.payment_events' }),
 *   handle: async (e, { tx }) => { await orders.callback(e.foreignId, 'awaiting-payment', e.payload, { id: e.id, tx }); },
 *   signal: controller.signal });
 */
export async function runConnector(options: RunConnectorOptions): Promise<void> {
  const interval = toMs(options.pollInterval ?? 1000, 'pollInterval');
  const { signal } = options;
  // A batch that keeps failing is a connector stuck on one event: never silent.
  const log = options.logger ?? consoleLogger('warn');
  while (!signal?.aborted) {
    let handled = 0;
    try {
      handled = await connectorStep(options);
    } catch (error) {
      log.warn('connector batch failed; retrying', { connector: options.connector.name, error: String(error) });
    }
    if (handled === 0 && !signal?.aborted) {
      await new Promise<void>((resolve) => {
        const wake = () => {
          clearTimeout(timer);
          signal?.removeEventListener('abort', wake);
          resolve();
        };
        const timer = setTimeout(wake, interval);
        signal?.addEventListener('abort', wake, { once: true });
      });
    }
  }
}
