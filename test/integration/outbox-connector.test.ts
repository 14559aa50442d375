/**
 * The built-in outbox connector and a state machine's `.connector()`: the
 * completed runs of one workflow (`payment`) trigger and advance runs of a
 * machine (`shipment`) through a durable consumer of the outbox, each batch
 * acknowledged in the transaction that acted on it. A crash between the act
 * and the acknowledgement (the connection dies) duplicates nothing after a
 * restart: inside the batch's transaction nothing was committed, and an act
 * made outside it is deduplicated by the event's id (trigger key, callback id).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { z } from 'zod';
import { createClient } from '../../src/client/client.ts';
import { outboxConnector } from '../../src/connectors/outbox-connector.ts';
import type { RunEvent } from '../../src/db/events.ts';
import { ValidationError } from '../../src/errors.ts';
import { connectMachine } from '../../src/state-machine/client.ts';
import { machineConnectorStep, runMachineConnectors } from '../../src/state-machine/connectors.ts';
import { defineStateMachine } from '../../src/state-machine/define.ts';
import { createTestEnv, type TestEnv } from '../../src/testing/env.ts';
import { defineWorkflow } from '../../src/workflow/define.ts';
import { silentLogger } from '../../src/protocol/logger.ts';
import { waitFor } from '../helpers/wait.ts';
import { testPool } from '../helpers/db.ts';

// Two source workflows; their completed events carry their outputs (eventPayloads).
const checkout = defineWorkflow({ name: 'checkout', input: z.object({ amount: z.number() }), eventPayloads: true },
  async (ctx, { amount }) => ctx.step('total', () => ({ amount })));
const payment = defineWorkflow({ name: 'payment', input: z.object({ amount: z.number() }), eventPayloads: true },
  async (ctx, { amount }) => ctx.step('charge', () => ({ charged: amount })));

const Shipment = z.enum(['awaiting-payment', 'paid', 'shipped']);
/** A fault to inject into the connector function: after its act, before the batch commits. */
let crashAfterAct: ((event: RunEvent) => Promise<void> | void) | undefined;
/** Acts outside the batch's transaction (an effect that commits on its own) when set. */
let actOutside = false;

const shipment = defineStateMachine({ name: 'shipment', status: Shipment, object: z.object({ amount: z.number(), paid: z.number().optional() }) })
  .callback('awaiting-payment', (run, payload) => {
    run.object.paid = (payload as { charged: number }).charged;
    return 'paid';
  }, 'paid')
  .step('paid', () => 'shipped', 'shipped')
  // A checkout of order o (key 'o') triggers its shipment; its payment (key 'o:pay') pays it.
  .connector(outboxConnector({ name: 'orders-to-shipments', workflows: ['checkout', 'payment'], kinds: ['completed'],
    foreignId: (e) => e.key?.split(':')[0] }),
  async (event, api) => {
    const source = event.payload as RunEvent;
    const output = source.body.output as { amount: number } & { charged: number };
    if (source.workflow === 'checkout') {
      if (actOutside) await api.machine.trigger(event.foreignId, { object: { amount: output.amount }, key: event.id });
      else await api.trigger(event.foreignId, { object: { amount: output.amount } });
    } else if (actOutside) {
      await api.machine.callback(event.foreignId, 'awaiting-payment', output, { id: event.id });
    } else {
      await api.callback(event.foreignId, 'awaiting-payment', output);
    }
    await crashAfterAct?.(source);
  })
  .build();

/** Handle batches until the connector is caught up with everything committed so far. */
async function drain(client: ReturnType<typeof createClient>): Promise<number> {
  let total = 0;
  for (let n = -1; n !== 0;) {
    n = await machineConnectorStep({ client, machine: shipment });
    total += n;
  }
  return total;
}

describe('the outbox connector on a state machine', () => {
  let env: TestEnv;
  before(async () => {
    env = await createTestEnv({ workflows: [checkout, payment, shipment.workflow] });
  });
  after(async () => env?.close());

  const position = async () =>
    (await env.pool.query(`select after_xid::text || ':' || after_id as pos from trellis.event_consumers where name = 'orders-to-shipments'`)).rows[0]?.pos;
  const runsOf = async (foreignId: string) =>
    (await env.pool.query('select run_id, status, object from trellis.machine_runs where foreign_id = $1', [foreignId])).rows;
  const signalsOf = async (runId: string) =>
    (await env.pool.query('select signal_id from trellis.signals where run_id = $1', [runId])).rows.map((r) => r.signal_id);
  /** A source run, completed, and its events past the horizon handled. */
  const complete = async (run: { id: string }, client = env.client) => {
    await env.waitFor(run.id, 'completed');
    await waitFor(async () => (await drain(client)) > 0 || undefined, { what: 'its event handled' });
  };

  it('triggers a machine run from one workflow\'s completion and advances it with a callback from another\'s', async () => {
    await complete(await env.client.start(checkout, { amount: 30 }, { key: 'order-1' }));
    const [run] = await runsOf('order-1');
    assert.ok(run, 'the machine run was triggered');
    await env.waitFor(run.run_id, 'waiting');
    await complete(await env.client.start(payment, { amount: 30 }, { key: 'order-1:pay' }));
    const done = await connectMachine(env.client, shipment).await('order-1', run.run_id, 'shipped', { timeout: '20s' });
    assert.deepEqual(done.object, { amount: 30, paid: 30 });
    assert.equal((await signalsOf(run.run_id)).length, 1);
    // Every event read was acknowledged: nothing more to handle.
    assert.equal(await machineConnectorStep({ client: env.client, machine: shipment }), 0);
    assert.equal((await runsOf('order-1')).length, 1);
  });

  it('a callback event for a foreign id with no unfinished run is skipped: the connector goes on with the events after it', async () => {
    await drain(env.client);
    // A payment for an order that never had a checkout: no shipment run to call back.
    await complete(await env.client.start(payment, { amount: 5 }, { key: 'ghost:pay' }));
    assert.deepEqual(await runsOf('ghost'), []);
    // The events after it are handled.
    await complete(await env.client.start(checkout, { amount: 7 }, { key: 'order-after-ghost' }));
    const [run] = await runsOf('order-after-ghost');
    assert.ok(run, 'the checkout after the stray payment triggered its run');
    await env.waitFor(run.run_id, 'waiting');
    await complete(await env.client.start(payment, { amount: 7 }, { key: 'order-after-ghost:pay' }));
    assert.deepEqual((await connectMachine(env.client, shipment).await('order-after-ghost', run.run_id, 'shipped', { timeout: '20s' })).object,
      { amount: 7, paid: 7 });
  });

  it('a crash after the act inside the batch\'s transaction leaves nothing; the restarted connector acts once', async () => {
    await drain(env.client);
    const before = await position();
    crashAfterAct = async () => {
      // The process dies here: its connection is gone before the batch (act + ack) commits.
      await env.pool.query(`select pg_terminate_backend(pid) from pg_stat_activity
                             where datname = current_database() and pid <> pg_backend_pid() and application_name = 'crashing'`);
    };
    const crashingPool = testPool({ connectionString: env.url, max: 2, application_name: 'crashing' });
    // The connection killed under it errors: expected here.
    crashingPool.on('error', () => undefined);
    crashingPool.on('connect', (c) => c.on('error', () => undefined));
    const crashing = createClient({ pool: crashingPool, logger: silentLogger });
    const run = await env.client.start(checkout, { amount: 12 }, { key: 'order-2' });
    await env.waitFor(run.id, 'completed');
    try {
      const crashed = await waitFor(async () => {
        const outcome = await machineConnectorStep({ client: crashing, machine: shipment }).catch((e: Error) => e);
        return outcome instanceof Error ? outcome : undefined;
      }, { what: 'the crash' });
      assert.ok(crashed instanceof Error);
    } finally {
      crashAfterAct = undefined;
      await crashing.close().catch(() => undefined);
      await crashingPool.end().catch(() => undefined);
    }
    assert.equal((await runsOf('order-2')).length, 0, 'the trigger rolled back with the batch');
    assert.equal(await position(), before, 'the consumer did not move');
    // A restarted process (a new pool) reads the event again and acts once.
    const restartedPool = testPool({ connectionString: env.url, max: 2 });
    const restarted = createClient({ pool: restartedPool, logger: silentLogger });
    try {
      assert.ok((await drain(restarted)) >= 1);
    } finally {
      await restarted.close();
      await restartedPool.end();
    }
    assert.equal((await runsOf('order-2')).length, 1);
    assert.notEqual(await position(), before);
  });

  it('a crash between an act committed outside the batch and the ack duplicates nothing: the trigger key and the callback id', async () => {
    await drain(env.client);
    actOutside = true;
    const crashed = new Set<string>();
    // Each source crashes the batch once, right after its act committed.
    crashAfterAct = (source) => {
      if (crashed.has(source.workflow)) return;
      crashed.add(source.workflow);
      throw new Error(`crashed after acting on ${source.workflow}`);
    };
    try {
      const before = await position();
      const first = await env.client.start(checkout, { amount: 7 }, { key: 'order-3' });
      await env.waitFor(first.id, 'completed');
      await waitFor(() => machineConnectorStep({ client: env.client, machine: shipment }).then(() => undefined, () => true), { what: 'the first crash' });
      const [run] = await runsOf('order-3');
      assert.ok(run, 'the act outside the batch committed');
      assert.equal(await position(), before, 'the ack rolled back');
      await drain(env.client); // the restart: the same event again, its trigger key finds the run
      assert.deepEqual((await runsOf('order-3')).map((r) => r.run_id), [run.run_id]);
      await env.waitFor(run.run_id, 'waiting');

      const pay = await env.client.start(payment, { amount: 7 }, { key: 'order-3:pay' });
      await env.waitFor(pay.id, 'completed');
      await waitFor(() => machineConnectorStep({ client: env.client, machine: shipment }).then(() => undefined, () => true), { what: 'the second crash' });
      assert.equal((await signalsOf(run.run_id)).length, 1, 'the callback committed before the crash');
      await drain(env.client); // the same callback again, dropped by its id
      const done = await connectMachine(env.client, shipment).await('order-3', run.run_id, 'shipped', { timeout: '20s' });
      assert.deepEqual(done.object, { amount: 7, paid: 7 });
      assert.equal((await signalsOf(run.run_id)).length, 1);
      // Redelivered after the run finished, the callback is still dropped (not refused).
      const [id] = await signalsOf(run.run_id);
      assert.equal(await connectMachine(env.client, shipment).callback('order-3', 'awaiting-payment', { charged: 7 }, { id }), false);
      assert.equal((await runsOf('order-3')).length, 1);
    } finally {
      actOutside = false;
      crashAfterAct = undefined;
    }
  });

  it('runMachineConnectors runs the connectors until aborted', async () => {
    const stop = new AbortController();
    const running = runMachineConnectors({ client: env.client, machine: shipment, signal: stop.signal, pollInterval: 20 });
    try {
      await env.client.start(checkout, { amount: 5 }, { key: 'order-4' });
      await waitFor(async () => (await runsOf('order-4')).length === 1, { what: 'the run triggered by the loop' });
    } finally {
      stop.abort();
      await running;
    }
  });

  it('refuses a bad source or function and a second connector of one name', () => {
    const builder = () => defineStateMachine({ name: 'x', status: z.enum(['a', 'b']), object: z.object({}) }).step('a', () => 'b', 'b');
    assert.throws(() => builder().connector({ name: 'c0' } as never, () => undefined), ValidationError);
    assert.throws(() => builder().connector(outboxConnector({ name: 'c1' }), 'nope' as never), ValidationError);
    assert.throws(() => builder().connector(outboxConnector({ name: 'c1' }), () => undefined).connector(outboxConnector({ name: 'c1' }), () => undefined),
      ValidationError);
    assert.throws(() => outboxConnector({ name: 'c2', foreignId: 'key' as never }), ValidationError);
    assert.throws(() => outboxConnector({ name: 'bad name!' }), ValidationError);
  });

  it('refuses a trigger key that started a run of another foreign id, writing nothing', async () => {
    const machine = connectMachine(env.client, shipment);
    const id = await machine.trigger('order-9', { object: { amount: 1 }, key: 'k-9' });
    assert.equal(await machine.trigger('order-9', { object: { amount: 1 }, key: 'k-9' }), id, 'a repeat returns the run');
    await assert.rejects(machine.trigger('order-10', { object: { amount: 1 }, key: 'k-9' }), /was used for another foreign id/);
    assert.equal((await runsOf('order-10')).length, 0);
    await assert.rejects(machine.trigger('order-11', { object: { amount: 1 }, key: '' }), ValidationError);
  });
});
