/**
 * A connection terminated by the server (pg_terminate_backend: SQLSTATE 57P01,
 * what a fast shutdown sends every session) at a chosen moment, made
 * deterministic by holding a row lock the statement needs and terminating
 * the backend while it waits for it:
 * - a worker's checkpoint_apply: retried, the run completes, nothing fails;
 * - a client's run_start: a retryable DatabaseError, nothing written (a
 *   start not safe to make again); one with a key and the default policy
 *   is made again and gets its run.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import pg from 'pg';
import { z } from 'zod';
import { createClient } from '../../src/client/client.ts';
import { DatabaseError } from '../../src/errors.ts';
import { createWorker } from '../../src/worker/worker.ts';
import { defineWorkflow } from '../../src/workflow/define.ts';
import { silentLogger } from '../../src/protocol/logger.ts';
import { adminUrl, createDatabase, testPool } from '../helpers/db.ts';
import { useDatabase } from '../helpers/database-fixture.ts';
import { migrate } from '../../src/schema/install.ts';
import { startProxy, throughProxy } from '../helpers/tcp-proxy.ts';
import { waitFor } from '../helpers/wait.ts';

const fx = useDatabase({ client: { handoff: false } });

/** The pid of a backend of `app` waiting on a lock in a statement matching `like`. */
async function blockedBackend(app: string, like: string): Promise<number> {
  return waitFor(async () => {
    const { rows } = await fx.db.pool.query<{ pid: number }>(
      `select pid from pg_stat_activity where datname = current_database() and application_name = $1
          and wait_event_type = 'Lock' and query like $2`, [app, like]);
    return rows[0]?.pid;
  }, { what: `a backend of ${app} blocked in ${like}` });
}

let bodies = 0;
let gate!: () => void;
let opened = new Promise<void>((r) => (gate = r));
let reached!: () => void;
let atGate = new Promise<void>((r) => (reached = r));
const gated = defineWorkflow({ name: 'gated-terminate', input: z.object({ v: z.number() }) }, async (ctx, { v }) => {
  const a = await ctx.step('a', async () => {
    bodies++;
    reached();
    await opened;
    return v;
  });
  const b = await ctx.step('b', () => a + 1);
  return a + b;
});

describe('pg_terminate_backend of the worker connection during checkpoint_apply', () => {
  it('retries the checkpoint on a new connection: the run completes, its step ran once, no run fails', async () => {
    const pool = testPool({ connectionString: fx.db.url, max: 4, application_name: 'terminated-worker' });
    pool.on('error', () => undefined);
    const worker = createWorker({ pool, workflows: [gated], logger: silentLogger });
    const locker = new pg.Client({ connectionString: fx.db.url });
    await locker.connect();
    try {
      await worker.start();
      const run = await fx.client.start(gated, { v: 20 });
      await atGate;
      // Hold the run's row: the step's checkpoint waits for it, and is terminated waiting.
      await locker.query('begin');
      await locker.query('select 1 from trellis.runs where id = $1 for update', [run.id]);
      gate();
      const pid = await blockedBackend('terminated-worker', '%checkpoint_apply%');
      await fx.db.pool.query('select pg_terminate_backend($1)', [pid]);
      await locker.query('commit');

      assert.equal(await run.result({ timeout: '20s' }), 41);
      assert.equal(bodies, 1, 'the step body ran once');
      assert.equal(worker.stats.failed, 0);
      const { rows } = await fx.db.pool.query(`select count(*)::int as n from trellis.runs where status = 'failed'`);
      assert.equal(rows[0].n, 0, 'no failed runs');
      const steps = await fx.client.history(run.id);
      assert.deepEqual(steps.map((s) => [s.name, s.status]), [['a', 'completed'], ['b', 'completed']]);
    } finally {
      await locker.end().catch(() => undefined);
      await worker.stop();
      await pool.end();
      opened = Promise.resolve();
      atGate = Promise.resolve();
    }
  });
});

describe('the client connection lost during run_start', () => {
  it('surfaces as a retryable DatabaseError, for a terminated backend and for a cut socket; nothing is written (a start not safe to make again: keyPolicy reuse)', async () => {
    const proxy = await startProxy({ host: '127.0.0.1', port: Number(new URL(fx.db.url).port) });
    const pool = testPool({ connectionString: throughProxy(fx.db.url, proxy.port), max: 2, application_name: 'terminated-client' });
    pool.on('error', () => undefined);
    const starter = createClient({ pool, logger: silentLogger, handoff: false });
    const holder = await fx.db.pool.connect();
    try {
      // An uncommitted start with the same key: the second start waits on its key.
      await holder.query('begin');
      await fx.client.start(gated, { v: 1 }, { key: 'k-terminate', tx: holder });
      for (const how of ['pg_terminate_backend', 'socket cut'] as const) {
        // (With the default keyPolicy, 'return', the start is made again: test/integration/key-policies.test.ts.)
        const pending = starter.start(gated, { v: 2 }, { key: 'k-terminate', keyPolicy: 'reuse' }).then(() => undefined, (e: unknown) => e);
        const pid = await blockedBackend('terminated-client', '%run_start%');
        if (how === 'pg_terminate_backend') await fx.db.pool.query('select pg_terminate_backend($1)', [pid]);
        else for (const p of proxy.of('terminated-client')) p.cut();
        const error = await pending;
        assert.ok(error instanceof DatabaseError, `${how}: a DatabaseError, not ${String(error)}`);
        assert.equal(error.retryable, true, how);
        if (how === 'socket cut') {
          await fx.db.pool.query('select pg_terminate_backend($1)', [pid]); // the server has not noticed yet
          assert.match(error.message, /Connection terminated/);
        }
      }
      // The default policy ('return') is safe to make again: after the cut it waits on the key again
      // (a new backend), and gets a run of its own once the holder rolls back.
      const made = starter.start(gated, { v: 3 }, { key: 'k-terminate' });
      const first = await blockedBackend('terminated-client', '%run_start%');
      for (const p of proxy.of('terminated-client')) p.cut();
      await fx.db.pool.query('select pg_terminate_backend($1)', [first]);
      await waitFor(async () => (await fx.db.pool.query(`select 1 from pg_stat_activity where datname = current_database()
        and application_name = 'terminated-client' and wait_event_type = 'Lock' and query like '%run_start%' and pid <> $1`, [first])).rowCount,
        { what: 'the start made again, waiting on the key' });
      await holder.query('rollback');
      const { id } = await made;
      const { rows } = await fx.db.pool.query(`select id, input from trellis.runs where key = 'k-terminate'`);
      assert.deepEqual(rows, [{ id, input: { v: 3 } }], 'the starts that failed wrote nothing; the one made again, its run');
    } finally {
      holder.release();
      await starter.close();
      await pool.end();
      await proxy.close();
    }
  });
});

describe('a worker started again under the same id', () => {
  it('gives back at once the runs its previous process held, instead of waiting out their lease', async () => {
    const echo = defineWorkflow({ name: 'same-id-echo', input: z.object({ v: z.number() }) }, async (ctx, { v }) => ctx.step('echo', () => v));
    await fx.client.register(echo);
    const run = await fx.client.start(echo, { v: 7 }, { queue: 'same-id' });
    // The previous process claimed it (for an hour) and died.
    const { rows } = await fx.db.pool.query(
      `select id from trellis.run_claim('fixed-worker', array['same-id'], '{same-id-echo}', '{1}', 1, '1 hour')`);
    assert.equal(rows[0].id, run.id);
    const worker = createWorker({ pool: fx.db.pool, id: 'fixed-worker', workflows: [echo], queues: ['same-id'], logger: silentLogger });
    try {
      await worker.start();
      assert.equal(await run.result({ timeout: '20s' }), 7);
    } finally {
      await worker.stop();
    }
  });
});


describe('migrate(pool) when the server ends its connection between statements', () => {
  it('rejects with a retryable DatabaseError instead of killing the process with an unhandled error event', async () => {
    const target = await createDatabase();
    const real = new pg.Pool({ connectionString: target.url, max: 1 });
    real.on('error', () => undefined);
    const admin = new pg.Client({ connectionString: adminUrl() });
    await admin.connect();
    try {
      let statements = 0;
      // A pg-shaped pool whose client, before the install's fourth statement,
      // has its backend terminated and waits until the FATAL has arrived:
      // the server ends the session while migrate holds the client idle.
      const pool = {
        totalCount: 0, idleCount: 0,
        connect: async () => {
          const client = await real.connect();
          const { rows: [me] } = await client.query<{ pid: number }>('select pg_backend_pid() as pid');
          return new Proxy(client, {
            get(t, key) {
              if (key === 'query') {
                return async (...args: unknown[]) => {
                  if (++statements === 4) {
                    const ended = new Promise((resolve) => t.once('end', resolve));
                    await admin.query('select pg_terminate_backend($1)', [me!.pid]);
                    await ended;
                  }
                  return (t.query as (...a: unknown[]) => unknown)(...args);
                };
              }
              const value = Reflect.get(t, key, t) as unknown;
              return typeof value === 'function' ? value.bind(t) : value;
            },
          });
        },
      };
      const error = await migrate(pool as unknown as pg.Pool).then(() => assert.fail('migrate resolved'), (e: unknown) => e);
      assert.ok(error instanceof DatabaseError && error.retryable, `a retryable DatabaseError, not ${String(error)}`);
      assert.ok(statements >= 4);
      // Nothing was installed, and the pool's next client installs everything.
      const again = await migrate(real);
      assert.ok(again.applied.length > 0);
    } finally {
      await admin.end();
      await real.end();
      await target.drop();
    }
  });
});
