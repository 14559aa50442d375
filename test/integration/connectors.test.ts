import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { sql } from 'kysely';
import pg from 'pg';
import { z } from 'zod';
import { type ConnectorContext, type ConnectorEvent, connectorStep, runConnector } from '../../src/connectors/connector.ts';
import { tableConnector } from '../../src/connectors/table-connector.ts';
import { IllegalTransitionError, ValidationError } from '../../src/errors.ts';
import { connectMachine } from '../../src/state-machine/client.ts';
import { defineStateMachine } from '../../src/state-machine/define.ts';
import { createTestEnv, type TestEnv } from '../../src/testing/env.ts';
import type { Logger } from '../../src/protocol/logger.ts';
import { waitFor } from '../helpers/wait.ts';

const OrderStatus = z.enum(['placed', 'paid', 'shipped']);
const orderFlow = defineStateMachine({ name: 'order-flow', status: OrderStatus, object: z.object({ amount: z.number(), paidBy: z.string().optional() }) })
  .callback('placed', (run, payload) => {
    run.object.paidBy = (payload as { by?: string | undefined }).by ?? 'unknown';
    return 'paid';
  }, 'paid')
  .step('paid', () => 'shipped', 'shipped')
  .build();

describe('connectors', () => {
  let env: TestEnv;
  before(async () => {
    env = await createTestEnv({ workflows: [orderFlow.workflow] });
    await env.pool.query(`
      create schema app;
      create table app.orders (id text primary key, amount int not null, paid_by text);
      -- The pattern: the app's own write starts the machine run and delivers its callback, in the writer's transaction.
      create function app.orders_to_machine() returns trigger language plpgsql as $$
      begin
        if tg_op = 'INSERT' then
          perform trellis.machine_trigger('order-flow', new.id,
            jsonb_build_object('status', 'placed', 'object', jsonb_build_object('amount', new.amount)));
        elsif new.paid_by is distinct from old.paid_by then
          perform trellis.machine_callback('order-flow', new.id, 'placed', jsonb_build_object('by', new.paid_by),
                                           'orders:' || new.id || ':paid');
        end if;
        return new;
      end $$;
      create trigger orders_to_machine after insert or update on app.orders
        for each row execute function app.orders_to_machine();
      create table app.payment_events (id bigserial primary key, tx xid8 not null default pg_current_xact_id(),
        foreign_id text not null, type text not null, payload jsonb not null default '{}');`);
  });
  after(async () => env?.close());

  it('an app table trigger starts a run and delivers its callback in the writer\'s transaction', async () => {
    const orders = connectMachine(env.client, orderFlow);
    const c = await env.pool.connect();
    try {
      await c.query('begin');
      await c.query(`insert into app.orders (id, amount) values ('o-1', 30)`);
      await c.query('rollback');
    } finally {
      c.release();
    }
    assert.equal((await env.pool.query(`select count(*)::int as n from trellis.machine_runs where foreign_id = 'o-1'`)).rows[0].n, 0, 'rolled back with the write');
    await env.pool.query(`insert into app.orders (id, amount) values ('o-1', 30)`);
    const { runId } = await orders.get('o-1');
    await env.waitFor(runId, 'waiting');
    await assert.rejects(env.pool.query(`insert into app.orders (id, amount) values ('o-1', 30)`), /duplicate key/);
    await env.pool.query(`update app.orders set paid_by = 'card' where id = 'o-1'`);
    const shipped = await orders.await('o-1', runId, 'shipped', { timeout: '20s' });
    assert.deepEqual(shipped.object, { amount: 30, paidBy: 'card' });
  });

  it('the table connector delivers events in commit-safe order, once, moving its cursor with them', async () => {
    const orders = connectMachine(env.client, orderFlow);
    const first = await orders.trigger('o-2', { object: { amount: 1 } });
    const second = await orders.trigger('o-3', { object: { amount: 2 } });
    const connector = tableConnector({ name: 'payments', table: 'app.payment_events' });
    const seen: string[] = [];
    const step = () => connectorStep({ client: env.client, connector,
      handle: async (event, { tx }) => {
        seen.push(`${event.foreignId} ${event.type}`);
        await orders.callback(event.foreignId, 'placed', event.payload, { id: event.id, tx });
      } });
    // A writer whose transaction began first commits last: nothing after it may be read before it.
    // The horizon is the oldest transaction still running on the whole server (any database), so a
    // read may hand out less than is committed; `upTo` steps until the events expected are seen.
    const upTo = (n: number, what: string) => waitFor(async () => { await step(); return seen.length >= n || undefined; }, { what });
    const late = new pg.Client({ connectionString: env.url });
    const blocker = new pg.Client({ connectionString: env.url });
    await late.connect();
    await blocker.connect();
    try {
      await late.query('begin');
      await late.query(`insert into app.payment_events (foreign_id, type, payload) values ('o-2', 'settled', '{"by": "late"}')`);
      // A transaction that began between the two writers, holding an id and still open.
      await blocker.query('begin');
      await blocker.query('select pg_current_xact_id()');
      await env.pool.query(`insert into app.payment_events (foreign_id, type, payload) values ('o-3', 'settled', '{"by": "early"}')`);
      assert.equal(await step(), 0, 'the later transaction waits behind the open one');
      await late.query('commit');
      await upTo(1, 'the late writer\'s event');
      assert.equal(await step(), 0, 'the newer event still waits for the transaction open before it');
      assert.deepEqual(seen, ['o-2 settled']);
      await blocker.query('commit');
    } finally {
      await late.end();
      await blocker.end();
    }
    await upTo(2, 'the newer event');
    assert.deepEqual(seen, ['o-2 settled', 'o-3 settled']);
    assert.equal(await step(), 0, 'the cursor moved with the batch');
    assert.equal((await orders.await('o-2', first, 'shipped', { timeout: '20s' })).object.paidBy, 'late');
    assert.equal((await orders.await('o-3', second, 'shipped', { timeout: '20s' })).object.paidBy, 'early');
    const cursor = await env.pool.query(`select cursor from trellis.connector_cursors where name = 'payments'`);
    assert.ok(cursor.rows[0].cursor.id);
  });

  it('runConnector keeps handling new events until it is stopped', async () => {
    const orders = connectMachine(env.client, orderFlow);
    const runId = await orders.trigger('o-5', { object: { amount: 5 } });
    const controller = new AbortController();
    const loop = runConnector({ client: env.client, connector: tableConnector({ name: 'loop', table: 'app.payment_events' }),
      pollInterval: 50, signal: controller.signal,
      handle: async (event, { tx }) => {
        if (event.foreignId === 'o-5') await orders.callback(event.foreignId, 'placed', event.payload, { id: event.id, tx });
      } });
    await env.pool.query(`insert into app.payment_events (foreign_id, type, payload) values ('o-5', 'settled', '{"by": "loop"}')`);
    assert.equal((await orders.await('o-5', runId, 'shipped', { timeout: '20s' })).object.paidBy, 'loop');
    controller.abort();
    await loop;
  });

  it('a batch whose connection breaks while its handler runs is rolled back and retried; the process goes on', async () => {
    const handled: string[] = [];
    const warned: string[] = [];
    const noop = () => {};
    const logger = { debug: noop, info: noop, error: noop, warn: (message: unknown) => { warned.push(String(message)); } } as unknown as Logger;
    let cut = false;
    await env.pool.query(`insert into app.payment_events (foreign_id, type) values ('cut-1', 'x'), ('cut-2', 'x')`);
    const controller = new AbortController();
    const loop = runConnector({ client: env.client, connector: tableConnector({ name: 'cut', table: 'app.payment_events' }),
      pollInterval: 50, signal: controller.signal, logger,
      handle: async (event, { tx }) => {
        if (!event.foreignId.startsWith('cut-')) return; // earlier tests' events
        if (!cut) {
          cut = true;
          // The batch's own backend is terminated while the handler runs: its connection breaks while checked out.
          const { pid } = (await sql<{ pid: number }>`select pg_backend_pid() as pid`.execute(tx)).rows[0]!;
          await env.pool.query('select pg_terminate_backend($1)', [pid]);
          await waitFor(async () => (await env.pool.query('select 1 from pg_stat_activity where pid = $1', [pid])).rowCount === 0, { what: 'the backend gone' });
        }
        handled.push(event.foreignId);
      } });
    try {
      await waitFor(() => handled.includes('cut-2') && warned.includes('connector batch failed; retrying'), { what: 'the batch retried after the broken connection' });
      assert.deepEqual(handled.filter((f) => f === 'cut-2').length, 1, 'the retried batch handled the rest once');
    } finally {
      controller.abort();
      await loop;
    }
  });

  it('runConnector without a logger reports a batch that keeps failing on stderr (it was silent while stuck)', async () => {
    const lines: string[] = [];
    const write = process.stderr.write.bind(process.stderr);
    process.stderr.write = ((chunk: string | Uint8Array, ...rest: unknown[]) => {
      lines.push(String(chunk));
      return (write as (...a: unknown[]) => boolean)(chunk, ...rest);
    }) as typeof process.stderr.write;
    const controller = new AbortController();
    try {
      await env.pool.query(`insert into app.payment_events (foreign_id, type) values ('poison', 'settled')`);
      const loop = runConnector({ client: env.client, connector: tableConnector({ name: 'stuck', table: 'app.payment_events' }),
        pollInterval: 50, signal: controller.signal,
        handle: (event) => { if (event.foreignId === 'poison') throw new Error('cannot handle poison'); } });
      await waitFor(() => lines.some((l) => l.includes('connector batch failed; retrying') && l.includes('"connector":"stuck"') && l.includes('cannot handle poison')),
        { what: 'the failed batch on stderr' });
      controller.abort();
      await loop;
    } finally {
      controller.abort();
      process.stderr.write = write;
    }
  });

  it('a batch whose handler throws is rolled back, cursor included, and read again', async () => {
    await env.pool.query(`insert into app.payment_events (foreign_id, type) values ('nobody', 'settled')`);
    const connector = tableConnector({ name: 'strict', table: 'app.payment_events' });
    const orders = connectMachine(env.client, orderFlow);
    const handle = async (event: ConnectorEvent, { tx }: ConnectorContext) => {
      await orders.callback(event.foreignId, 'placed', event.payload, { id: event.id, tx });
    };
    await assert.rejects(connectorStep({ client: env.client, connector, handle }), /no unfinished run/);
    assert.equal((await env.pool.query(`select cursor from trellis.connector_cursors where name = 'strict'`)).rows.length, 0);
    assert.throws(() => tableConnector({ name: 'x', table: 'app.events; drop table x' }), ValidationError);
  });

  it('a handler that catches a refused trigger has that event\'s writes undone and the batch goes on', async () => {
    const orders = connectMachine(env.client, orderFlow);
    const held = await orders.trigger('o-skip', { object: { amount: 1 } });
    await env.pool.query(`insert into app.payment_events (foreign_id, type) values ('o-skip', 'opened'), ('o-after', 'opened')`);
    await env.pool.query('create table app.connector_log (foreign_id text not null)');
    const refused: string[] = [];
    const handle = async (event: ConnectorEvent, { tx }: ConnectorContext) => {
      if (event.foreignId !== 'o-skip' && event.foreignId !== 'o-after') return; // earlier tests' events
      await tx.insertInto('app.connector_log' as never).values({ foreign_id: event.foreignId } as never).execute();
      try {
        await orders.trigger(event.foreignId, { object: { amount: 2 }, tx });
      } catch (error) {
        // o-skip already has an unfinished run: TR004, caught and skipped.
        if (!(error instanceof IllegalTransitionError)) throw error;
        refused.push(event.foreignId);
      }
    };
    const connector = tableConnector({ name: 'tolerant', table: 'app.payment_events' });
    // Events become readable below the horizon of running transactions
    // (other tests' may hold it back): step until both were handled.
    const logged = async () => (await env.pool.query('select foreign_id from app.connector_log')).rows;
    await waitFor(async () => {
      await connectorStep({ client: env.client, connector, handle });
      return refused.length === 1 && (await logged()).length === 1;
    }, { what: 'both events handled' });
    assert.deepEqual(refused, ['o-skip']);
    assert.deepEqual(await logged(), [{ foreign_id: 'o-after' }],
      'the refused event\'s own write was undone with it; the next event\'s kept');
    const runs = (await env.pool.query(`select metadata->>'foreign_id' as f, count(*)::int as n from trellis.runs
                                         where metadata->>'foreign_id' in ('o-skip', 'o-after') group by 1 order by 1`)).rows;
    assert.deepEqual(runs, [{ f: 'o-after', n: 1 }, { f: 'o-skip', n: 1 }]);
    assert.ok(held);
  });
});
