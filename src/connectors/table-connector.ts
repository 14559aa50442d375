/**
 * The built-in connector: a user table of events, read in commit-safe
 * order. Each row carries the id of the transaction that wrote it (an
 * `xid8` column defaulting to `pg_current_xact_id()`); the connector reads
 * only rows of transactions older than every transaction still running
 * (`trellis.xact_horizon()`: `pg_snapshot_xmin`, and on a Citus coordinator
 * also below any two-phase commit still prepared on a worker node), ordered
 * by (transaction id, row id), so a row whose transaction commits late is
 * never skipped. The table:
 *
 *   create table app.payment_events (
 *     id bigserial primary key,
 *     tx xid8 not null default pg_current_xact_id(),
 *     foreign_id text not null, type text not null, payload jsonb not null default '{}');
 *
 * (Another Trellis workflow's events: outboxConnector.)
 */
import type { Queryable } from '../db/queryable.ts';
import { queryRows } from '../db/queryable.ts';
import { ValidationError } from '../errors.ts';
import type { Connector, ConnectorEvent } from './connector.ts';

/**
 * Options of `tableConnector`.
 *
 * @example
 * tableConnector({ name: 'payments', table: 'app.payment_events' });
 */
export interface TableConnectorOptions {
  /** The connector's name (its cursor row). */
  name: string;
  /** The table, optionally schema-qualified: plain identifiers only. */
  table: string;
}

const IDENT = /^[a-z_][a-z0-9_]{0,62}(\.[a-z_][a-z0-9_]{0,62})?$/;

/**
 * A connector over an event table (columns id, tx, foreign_id, type, payload).
 *
 * @example
 * const payments = tableConnector({ name: 'payments', table: 'app.payment_events' });
 * await connectorStep({ client, connector: payments,
 *   handle: async (e, { tx }) => { await orders.callback(e.foreignId, 'awaiting-payment', e.payload, { id: e.id, tx }); } });
 */
export function tableConnector(options: TableConnectorOptions): Connector {
  if (typeof options.table !== 'string' || !IDENT.test(options.table)) {
    throw new ValidationError(`table ${JSON.stringify(String(options.table).slice(0, 80))} must be a plain (schema.)table name in lower case`);
  }
  // The horizon in a statement of its own, before the rows' (a Citus
  // coordinator would push a subquery of the read down to the shards of a
  // distributed table, where it does not exist): every transaction below it
  // had ended when it was read, so the later snapshot of the read sees them.
  const text = `select id::text as id, tx::text as tx, foreign_id, type, payload from ${options.table}
     where tx < $4::xid8
       and ($1::xid8 is null or (tx, id) > ($1::xid8, $2::bigint))
     order by tx, id limit $3`;
  return {
    name: options.name,
    async read(db: Queryable, cursor: unknown, limit: number) {
      const at = cursor as { tx: string; id: string } | null;
      const horizon = (await queryRows<{ horizon: string }>(db, 'select trellis.xact_horizon()::text as horizon'))[0]!.horizon;
      const rows = await queryRows<{ id: string; tx: string; foreign_id: string; type: string; payload: unknown }>(db, text,
        [at?.tx ?? null, at?.id ?? null, limit, horizon]);
      const events: ConnectorEvent[] = rows.map((r) => ({ id: `${options.name}:${r.id}`, foreignId: r.foreign_id, type: r.type, payload: r.payload }));
      const last = rows.at(-1);
      return { events, cursor: last ? { tx: last.tx, id: last.id } : at };
    },
  };
}
