/**
 * Compile-only type tests (checked by `npm run typecheck`, never run): the
 * functions the app hands in and whose result is ignored (a connector's
 * handler, machine and template hooks, a hook sink, a role function,
 * workflow interceptors) may return anything, so the documented one-liners
 * such as `handle: (event, { tx }) => orders.callback(…)` (a Promise of a
 * boolean) and `… => orders.trigger(…)` (of a run id) compile.
 */
import pg from 'pg';
import { z } from 'zod';
import { createClient, createWorker, type RoleFunction, type WorkflowInterceptors } from '../../src/index.ts';
import {
  connectMachine, type ConnectorContext, type ConnectorEvent, connectorStep, defineStateMachine, runConnector, tableConnector,
  type TemplateHookFn,
} from '../../src/models.ts';

const client = createClient({ pool: new pg.Pool() });
const machine = defineStateMachine({ name: 'order-flow', status: z.enum(['placed', 'paid']), object: z.object({ amount: z.number() }) })
  .callback('placed', () => 'paid', 'paid')
  .onPause(() => 42)
  .onComplete(async () => 'delivered')
  .build();
const orders = connectMachine(client, machine);
const connector = tableConnector({ name: 'payments', table: 'app.payment_events' });

export async function handlers(): Promise<void> {
  void runConnector({ client, connector, handle: (event, { tx }) => orders.callback(event.foreignId, 'placed', event.payload, { id: event.id, tx }) });
  const handle = (e: ConnectorEvent, { tx }: ConnectorContext) => orders.trigger(e.foreignId, { object: e.payload as { amount: number }, tx });
  await connectorStep({ client, connector, handle, batchSize: 500 });
  defineStateMachine({ name: 'sunk', status: z.enum(['a']), object: z.object({}) }).hookSink({ emit: async () => true });
  const log: TemplateHookFn = () => 1;
  const role: RoleFunction = async () => 0;
  const interceptors: WorkflowInterceptors = { beforeStep: () => 'x', afterWorkflow: async () => [] };
  const worker = createWorker({ pool: new pg.Pool(), workflows: [machine.workflow] });
  worker.role('sweep', role);
  void [log, interceptors];
}
