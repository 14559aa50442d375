/**
 * A state machine's connectors (`.connector(source, fn)`): event streams
 * that trigger runs of the machine or deliver callbacks to them. Each batch
 * of a source is handled in one transaction with the move of its position
 * (connectorStep), and the API the function gets makes every effect
 * idempotent by the event's id — the trigger key and the callback id — so a
 * redelivered event (at-least-once sources, an effect made outside the
 * batch's transaction before a crash) starts nothing twice and delivers
 * nothing twice.
 */
import type { Client } from '../client/client.ts';
import { toQueryable } from '../db/queryable.ts';
import { NotFoundError } from '../errors.ts';
import { type Connector, type ConnectorContext, type ConnectorEvent, connectorStep, runConnector } from '../connectors/connector.ts';
import type { Duration } from '../protocol/duration.ts';
import type { Logger } from '../protocol/logger.ts';
import { connectMachine, type MachineClient, type TriggerOptions } from './client.ts';
import type { StateMachine } from './define.ts';

/**
 * What a machine connector's function gets: the machine, bound to the
 * batch's transaction, with the event's id as the default trigger key and
 * callback id.
 *
 * @example
 * const fn: MachineConnectorFn<'placed' | 'paid', Order> = async (event, api) => {
 *   if (event.type === 'completed') await api.callback(event.foreignId, 'placed', event.payload);
 * };
 */
export interface MachineConnectorApi<S extends string, T> {
  /** The batch's transaction (commits with the source's new position). */
  readonly tx: ConnectorContext['tx'];
  /** Trigger a run for `foreignId` (key: the event's id unless given). */
  trigger(foreignId: string, options: Omit<TriggerOptions<S, T>, 'tx'>): Promise<string>;
  /**
   * Deliver a callback to the foreign id's run (id: the event's id unless
   * given). False for a repeat, and for a foreign id with no unfinished run
   * (an event that came after its run ended, or before it was triggered):
   * that event is skipped and the batch goes on, where a direct
   * `machine.callback` would throw NotFoundError and roll the batch back,
   * so one late event would stop the connector for good.
   */
  callback(foreignId: string, status: S, payload: unknown, options?: { id?: string | undefined }): Promise<boolean>;
  /** The machine client, for reads (`get`). */
  readonly machine: MachineClient<S, T>;
}

/**
 * The function of a machine connector: what an event means for the machine.
 *
 * @example
 * const onPayment: MachineConnectorFn<string, unknown> = (event, { callback }) => callback(event.foreignId, 'awaiting-payment', event.payload);
 */
export type MachineConnectorFn<S extends string, T> = (event: ConnectorEvent, api: MachineConnectorApi<S, T>) => Promise<unknown> | unknown;

/**
 * A connector of a machine, as `.connector(source, fn)` added it.
 *
 * @example
 * for (const { source } of signup.connectors) console.log(source.name);
 */
export interface MachineConnector<S extends string, T> {
  readonly source: Connector;
  readonly fn: MachineConnectorFn<S, T>;
}

/**
 * Run `deliver` in a savepoint of the batch's transaction: NotFoundError (no
 * unfinished run for the foreign id) rolls back to it and gives false, so
 * the batch goes on; any other error is the batch's.
 */
async function skippingMissing(tx: ConnectorContext['tx'], deliver: () => Promise<boolean>): Promise<boolean> {
  const db = toQueryable(tx);
  await db.query('savepoint trellis_machine_callback');
  try {
    const sent = await deliver();
    await db.query('release savepoint trellis_machine_callback');
    return sent;
  } catch (error) {
    if (!(error instanceof NotFoundError)) throw error;
    await db.query('rollback to savepoint trellis_machine_callback');
    await db.query('release savepoint trellis_machine_callback');
    return false;
  }
}

/** The handler connectorStep calls for one connector of the machine. */
function handlerOf<S extends string, T>(machine: MachineClient<S, T>, entry: MachineConnector<S, T>) {
  return async (event: ConnectorEvent, { tx }: { tx: ConnectorContext['tx'] }) => {
    const api: MachineConnectorApi<S, T> = {
      tx,
      machine,
      trigger: (foreignId, options) => machine.trigger(foreignId, { ...options, key: options.key ?? event.id, tx }),
      callback: (foreignId, status, payload, options = {}) =>
        skippingMissing(tx, () => machine.callback(foreignId, status, payload, { id: options.id ?? event.id, tx })),
    };
    await entry.fn(event, api);
  };
}

/**
 * Options of `runMachineConnectors` and `machineConnectorStep`.
 *
 * @example
 * await runMachineConnectors({ client, machine: signup, signal, pollInterval: '500ms' });
 */
export interface MachineConnectorsOptions<S extends string, T> {
  client: Client;
  machine: StateMachine<S, T>;
  /** Events per batch (default 100). */
  batchSize?: number | undefined;
  /** Pause between polls of a source that was caught up (default 1s). */
  pollInterval?: Duration | undefined;
  /** Stops the loops. */
  signal?: AbortSignal | undefined;
  logger?: Logger | undefined;
}

/**
 * Handle one batch of each of the machine's connectors (in its own
 * transaction each); returns how many events were handled in all.
 *
 * @example
 * while ((await machineConnectorStep({ client, machine: signup })) > 0);
 */
export async function machineConnectorStep<S extends string, T>(options: Omit<MachineConnectorsOptions<S, T>, 'signal' | 'pollInterval' | 'logger'>): Promise<number> {
  const machine = connectMachine(options.client, options.machine);
  let handled = 0;
  for (const entry of options.machine.connectors) {
    handled += await connectorStep({ client: options.client, connector: entry.source, handle: handlerOf(machine, entry), batchSize: options.batchSize });
  }
  return handled;
}

/**
 * Run every connector of the machine until `signal` aborts (one loop per
 * connector; a failed batch is logged and retried). Replicas running the
 * same connectors take turns per batch; to run them on one replica at a
 * time, run this inside a role: `worker.role('orders-connectors', ({ signal }) => runMachineConnectors({ client, machine, signal }))`.
 *
 * @example
 * const stop = new AbortController();
 * const running = runMachineConnectors({ client, machine: signup, signal: stop.signal });
 * // … at shutdown:
 * stop.abort();
 * await running;
 */
export async function runMachineConnectors<S extends string, T>(options: MachineConnectorsOptions<S, T>): Promise<void> {
  const machine = connectMachine(options.client, options.machine);
  await Promise.all(options.machine.connectors.map((entry) => runConnector({
    client: options.client, connector: entry.source, handle: handlerOf(machine, entry), batchSize: options.batchSize,
    pollInterval: options.pollInterval, signal: options.signal, logger: options.logger,
  })));
}
