/**
 * client.result() watches for trellis:run_finished only while it has
 * waiters (decision 0029): a fleet of workers that nobody waits on sends no
 * run_finished NOTIFY (each one woke every listening backend), a waiting
 * client holds the watch on a session of its own and is woken at once, and
 * it lets the watch go a few seconds after its last waiter.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { z } from 'zod';
import { createClient } from '../../src/client/client.ts';
import { loggerFrom, silentLogger } from '../../src/protocol/logger.ts';
import { createWorker, type Worker } from '../../src/worker/worker.ts';
import { defineWorkflow } from '../../src/workflow/define.ts';
import { freshDatabase, type TestDatabase } from '../helpers/db.ts';
import { deferred } from '../helpers/engine.ts';
import { sentinelListener } from '../helpers/sentinel.ts';
import { waitFor } from '../helpers/wait.ts';
import { startProxy, throughProxy } from '../helpers/tcp-proxy.ts';

let gate = deferred();
const gated = defineWorkflow({ name: 'watch-gated', input: z.object({ n: z.number() }) }, async (ctx, { n }) => {
  await ctx.step('gate', () => (n === 2 ? gate.promise : null));
  return n;
});

let db: TestDatabase;
let worker: Worker;
before(async () => {
  db = await freshDatabase();
  worker = createWorker({ pool: db.pool, workflows: [gated], pollInterval: 50, logger: silentLogger });
  await worker.start();
});
after(async () => {
  await worker?.stop({ timeout: 2000 });
  await db?.close();
});

const watchSessions = async () =>
  Number((await db.pool.query(`select count(*)::int as n from pg_stat_activity
                                where datname = current_database() and application_name = 'trellis-client-watch'`)).rows[0].n);
const watchLocks = async () =>
  Number((await db.pool.query(`select count(*)::int as n from pg_locks where locktype = 'advisory'
                                and database = (select oid from pg_database where datname = current_database())
                                and classid = 1414679634 and mode = 'ShareLock' and granted`)).rows[0].n);

describe('result() and trellis:run_finished', () => {
  it('nobody waiting: no NOTIFY; a waiter watches and is woken at once; the watch ends after the last waiter', async () => {
    const listener = await sentinelListener(db.url, 'trellis:run_finished');
    // Polls hourly: only the NOTIFY can end its wait within the test's timeout.
    const client = createClient({ pool: db.pool, logger: silentLogger, resultPollInterval: '1h' });
    try {
      const first = await client.start(gated, { n: 1 });
      await waitFor(async () => (await client.get(first.id))?.status === 'completed', { what: 'the first run completed' });
      assert.deepEqual(await listener.until(), [], 'no waiter: its end notified nobody');
      assert.equal(await watchSessions(), 0);

      gate = deferred();
      const second = await client.start(gated, { n: 2 });
      const result = second.result({ timeout: '20s' });
      await waitFor(async () => (await watchLocks()) === 8, { what: 'the client\'s watch taken' });
      assert.equal(await watchSessions(), 1);
      gate.resolve();
      assert.equal(await result, 2);
      assert.deepEqual(await listener.until(), [second.id], 'watched: its end notified');

      // A few seconds after its last waiter the client lets the watch go.
      await waitFor(async () => (await watchSessions()) === 0 && (await watchLocks()) === 0, { what: 'the watch released', interval: 100 });
      const third = await client.start(gated, { n: 3 });
      await waitFor(async () => (await client.get(third.id))?.status === 'completed', { what: 'the third run completed' });
      assert.deepEqual(await listener.until(), [], 'unwatched again');
    } finally {
      gate.resolve();
      await client.close();
      await listener.close();
    }
  });

  it('close() ends the watch session, also while the watch waits for a transaction; waiters poll meanwhile', async () => {
    const client = createClient({ pool: db.pool, logger: silentLogger, resultPollInterval: '100ms' });
    const held = await db.pool.connect();
    try {
      // A transaction holding every watch shard exclusively (as eight unwatched ends in flight would).
      await held.query('begin');
      await held.query('select pg_advisory_xact_lock(1414679634, k) from generate_series(0, 7) k');
      gate = deferred();
      const run = await client.start(gated, { n: 2 });
      const result = run.result({ timeout: '20s' }).catch((e: unknown) => e);
      await waitFor(async () => (await db.pool.query(`select count(*)::int as n from pg_stat_activity where datname = current_database()
                                                       and application_name = 'trellis-client-watch' and wait_event_type = 'Lock'`)).rows[0].n === 1,
        { what: 'the watch waiting' });
      gate.resolve();
      assert.equal(await result, 2, 'its poll found the end while the watch waited');
      assert.equal(await watchSessions(), 1, 'still waiting for the transaction');
      await client.close();
      await waitFor(async () => (await watchSessions()) === 0, { what: 'the watch session gone with the client' });
    } finally {
      gate.resolve();
      await held.query('rollback');
      held.release();
    }
  });
});

describe('result() while its LISTEN connection cannot be opened', () => {
  it('waits, polling, instead of failing at once; its polls open the listener once the server takes connections again', async () => {
    const proxy = await startProxy({ host: '127.0.0.1', port: Number(new URL(db.url).port) });
    // The listener's connection goes through the proxy, which drops every new one (a server that is full or restarting).
    proxy.refusing = true;
    const warnings: string[] = [];
    const logger = loggerFrom((level, message) => {
      if (level === 'warn') warnings.push(message);
    });
    const client = createClient({ pool: db.pool, listenUrl: throughProxy(db.url, proxy.port), logger, resultPollInterval: 50, handoff: false });
    try {
      gate = deferred();
      const run = await client.start(gated, { n: 2 });
      const waiting = run.result({ timeout: '20s' });
      const more = [run.result({ timeout: '20s' }), run.result({ timeout: '20s' })];
      let settled = false;
      void waiting.then(() => (settled = true), () => (settled = true));
      await waitFor(() => proxy.accepted >= 2, { what: 'the listener tried again by the polls' });
      assert.equal(settled, false, 'still waiting, not failed by the refused listener');
      gate.resolve();
      assert.equal(await waiting, 2, 'the run\'s end read by a poll');
      assert.deepEqual(await Promise.all(more), [2, 2]);
      assert.equal(warnings.filter((w) => w === 'result listener could not connect; waiters poll until it does').length, 1, 'said once, not per waiter');
      proxy.refusing = false;
      // The next wait's polls (or its own call) open the listener.
      gate = deferred();
      const second = await client.start(gated, { n: 2 });
      const next = second.result({ timeout: '20s' });
      await waitFor(() => proxy.of('trellis-client-listener').length > 0, { what: 'the listener connected through the proxy' });
      gate.resolve();
      assert.equal(await next, 2);
    } finally {
      gate.resolve();
      await client.close();
      await proxy.close();
    }
  });
});
