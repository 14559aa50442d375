/**
 * A backend terminated just as its new connection becomes ready, its FATAL
 * in the same socket read as the ReadyForQuery that completed the
 * checkout: pg emits 'error' on the connection before the code that
 * awaited `pool.connect()` resumes, and pg-pool no longer listens then. An
 * audit found that unheard 'error' ended worker and client processes
 * (ctx.transaction, client.get / list / result, a state machine's trigger,
 * a template's start, migrate with a pool). Now every checkout listens
 * from the moment the pool hands the connection over (db/connection.ts
 * `checkout`): the call fails with a retryable DatabaseError, a run
 * goes on, and nothing reaches process 'uncaughtException'. Errors of
 * Kysely's statements are TrellisErrors too (they were pg's raw errors).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { sql } from 'kysely';
import { z } from 'zod';
import { createClient } from '../../src/client/client.ts';
import { DatabaseError, isTrellisError, TimeoutError } from '../../src/errors.ts';
import { silentLogger } from '../../src/protocol/logger.ts';
import { migrate } from '../../src/schema/install.ts';
import { createWorker } from '../../src/worker/worker.ts';
import { connectMachine } from '../../src/state-machine/client.ts';
import { defineStateMachine } from '../../src/state-machine/define.ts';
import { defineWorkflow } from '../../src/workflow/define.ts';
import { testPool } from '../helpers/db.ts';
import { useDatabase } from '../helpers/database-fixture.ts';
import { startProxy, type TcpProxy, throughProxy } from '../helpers/tcp-proxy.ts';

const fx = useDatabase({ client: { handoff: false } });

const door = defineStateMachine({ name: 'checkout-break-door', status: z.enum(['closed', 'open']), object: z.object({ opened: z.number() }) })
  .step('closed', (run) => {
    run.object.opened += 1;
    return 'open';
  }, 'open')
  .build();

const ledger = defineWorkflow({ name: 'checkout-break-ledger', input: z.object({ n: z.number() }) }, async (ctx, { n }) => {
  await ctx.transaction('book', async ({ tx }) => {
    await tx.query('insert into public.checkout_break_ledger (n) values ($1)', [n]);
  });
  return n;
});

let proxy: TcpProxy;
const uncaught: unknown[] = [];
const heard = (error: unknown) => void uncaught.push(error);

describe('a backend terminated as its connection becomes ready, in the same read', () => {
  before(async () => {
    const u = new URL(fx.db.url);
    proxy = await startProxy({ host: u.hostname, port: Number(u.port) });
    await fx.db.pool.query('create table public.checkout_break_ledger (n integer primary key)');
    process.on('uncaughtException', heard);
  });
  after(async () => {
    process.off('uncaughtException', heard);
    await proxy.close();
  });

  it('fails client.get, list, a Kysely transaction and migrate with a retryable DatabaseError (result waits through it); the process lives', async () => {
    const run = await fx.client.start(ledger, { n: 0 });
    proxy.fatalAtReady = (startup) => startup.includes('checkout-break-client');
    const pool = testPool({ connectionString: throughProxy(fx.db.url, proxy.port), max: 2, application_name: 'checkout-break-client' });
    pool.on('error', () => undefined);
    const client = createClient({ pool, handoff: false, logger: silentLogger });
    try {
      const calls: [string, () => Promise<unknown>][] = [
        ['get', () => client.get(run.id)],
        ['list', () => client.list({ workflow: ledger })],
        ['a state machine\'s trigger (a Kysely transaction)', () => connectMachine(client, door).trigger('door-1', { object: { opened: 0 } })],
        ['migrate with the pool', () => migrate(pool)],
      ];
      for (const [what, call] of calls) {
        const error = await call().then(() => undefined, (e: unknown) => e);
        assert.ok(error instanceof DatabaseError, `${what}: ${String(error)}`);
        assert.equal(error.retryable, true, what);
      }
      // An app's own Kysely transaction gets pg's error, as its code expects (code the SQLSTATE), and the process lives.
      const own = await client.db.transaction().execute((trx) => trx.selectFrom('trellis.runs').select('id').execute()).then(() => undefined, (e: unknown) => e);
      assert.ok(own instanceof Error && !isTrellisError(own), String(own));
      // result waits through transient faults (its checkouts among them) until its timeout.
      await assert.rejects(client.result(run.id, { timeout: '2s' }), TimeoutError);
    } finally {
      await client.close();
      await pool.end();
      proxy.fatalAtReady = undefined;
    }
    assert.deepEqual(uncaught, []);
    // And on a healthy connection an app's own statement error through client.db keeps pg's fields (a handler
    // that skips a duplicate on code 23505), as before the checkout listened.
    const dup = await fx.client.db.transaction().execute(async (trx) => {
      await sql`insert into public.checkout_break_ledger (n) values (-1), (-1)`.execute(trx);
    }).then(() => undefined, (e: unknown) => e as { code?: string; constraint?: string });
    assert.deepEqual([dup?.code, dup?.constraint], ['23505', 'checkout_break_ledger_pkey']);
  });

  it('worker.start() meeting a lost connection at any of its start-up statements rejects with a retryable DatabaseError', async () => {
    for (let breakAt = 1; breakAt <= 6; breakAt++) {
      let opened = 0;
      proxy.fatalAtReady = (startup) => startup.includes('checkout-break-start') && ++opened === breakAt;
      // One statement per connection (maxUses 1): the breakAt-th statement of the start-up meets the break.
      const pool = testPool({ connectionString: throughProxy(fx.db.url, proxy.port), max: 1, maxUses: 1, application_name: 'checkout-break-start' });
      const worker = createWorker({ pool, workflows: [ledger], logger: silentLogger });
      try {
        const error = await worker.start().then(() => undefined, (e: unknown) => e);
        if (error === undefined) continue; // that many statements came before the listener: it started
        assert.ok(error instanceof DatabaseError && error.retryable, `break at statement ${breakAt}: ${String(error)}`);
      } finally {
        await worker.stop().catch(() => undefined);
        await pool.end();
        proxy.fatalAtReady = undefined;
      }
    }
    assert.deepEqual(uncaught, []);
  });

  it('a worker whose new connections break so now and then completes every run, each transactional step once', async () => {
    let opened = 0;
    proxy.fatalAtReady = (startup) => startup.includes('checkout-break-worker') && ++opened % 3 === 0;
    const pool = testPool({ connectionString: throughProxy(fx.db.url, proxy.port), max: 6, application_name: 'checkout-break-worker' });
    pool.on('error', () => undefined);
    // Connections closed once idle, so the worker keeps opening new ones (a third of them breaking at ready).
    (pool as unknown as { options: { idleTimeoutMillis: number } }).options.idleTimeoutMillis = 1;
    const worker = createWorker({ pool, workflows: [ledger], logger: silentLogger, pollInterval: 50 });
    await worker.start().catch(async () => worker.start()); // its start-up reads may meet a break too (retryable)
    try {
      const runs = await Promise.all(Array.from({ length: 20 }, (_, i) => fx.client.start(ledger, { n: i + 1 })));
      const outputs = await Promise.all(runs.map((r) => r.result({ timeout: '60s' })));
      assert.deepEqual(outputs, runs.map((_, i) => i + 1));
      const { rows } = await fx.db.pool.query('select count(*)::int as n from public.checkout_break_ledger where n > 0');
      assert.equal(rows[0].n, 20, 'each transactional step committed once');
      assert.ok(opened >= 6, `connections opened through the proxy: ${opened}`);
    } finally {
      await worker.stop();
      await pool.end();
      proxy.fatalAtReady = undefined;
    }
    assert.deepEqual(uncaught.map((e) => (isTrellisError(e) ? e.message : String(e))), []);
  });
});
