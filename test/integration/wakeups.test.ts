/**
 * The wake-up gate (sql/210_wakeups.sql, decision 0021): starts that commit at
 * once skip their NOTIFY while a run of the same workflow is pending, so
 * concurrent starts are not serialised by Postgres's NOTIFY lock; and a run
 * whose start skipped it is still claimed at once, never left for the poll.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import pg from 'pg';
import { z } from 'zod';
import { createClient } from '../../src/client/client.ts';
import { createWorker } from '../../src/worker/worker.ts';
import { defineWorkflow } from '../../src/workflow/define.ts';
import { silentLogger } from '../../src/protocol/logger.ts';
import { useFreshDatabase } from '../helpers/database-fixture.ts';
import { waitFor } from '../helpers/wait.ts';
import { heldQueryPool } from '../helpers/held-query.ts';
import { startProxy, throughProxy } from '../helpers/tcp-proxy.ts';

const echo = defineWorkflow({ name: 'echo', input: z.object({ n: z.number() }) }, async (ctx, { n }) =>
  ctx.step('echo', () => n));

/** Counts trellis:run_ready NOTIFYs; `settle()` waits until every NOTIFY committed before it was delivered. */
async function countReady(url: string): Promise<{ count(): number; settle(): Promise<void>; close(): Promise<void> }> {
  const listener = new pg.Client({ connectionString: url });
  await listener.connect();
  let ready = 0;
  const sentinels = new Map<string, () => void>();
  listener.on('notification', (n) => {
    if (n.channel === 'trellis:run_ready') ready++;
    else sentinels.get(n.payload ?? '')?.();
  });
  await listener.query('listen "trellis:run_ready"; listen "test:sentinel"');
  return {
    count: () => ready,
    async settle() {
      // Notifications reach a listener in commit order: once a sentinel
      // sent now arrives, every earlier NOTIFY has too.
      const token = crypto.randomUUID();
      const arrived = new Promise<void>((resolve) => sentinels.set(token, resolve));
      const c = new pg.Client({ connectionString: url });
      await c.connect();
      await c.query(`select pg_notify('test:sentinel', $1)`, [token]);
      await c.end();
      await arrived;
    },
    close: () => listener.end(),
  };
}

describe('wake-up gate', () => {
  const fx = useFreshDatabase();

  it('starts that commit at once skip their NOTIFY while a run of the workflow is pending; a start in a caller transaction and a plain SQL start still notify', async () => {
    const ready = await countReady(fx.db.url);
    const client = createClient({ pool: fx.db.pool, logger: silentLogger, handoff: false });
    try {
      await client.register(echo);
      // No worker: the first start finds nothing pending and notifies.
      await client.start(echo, { n: -1 });
      await ready.settle();
      assert.equal(ready.count(), 1, 'the first start notifies');
      // The next 20, concurrent, each find a pending run of echo and skip
      // theirs. (Not 20 starts from nothing: how many of those race the
      // first commit depends on the machine's load; a busy CI run saw 7.)
      const runs = await Promise.all(Array.from({ length: 20 }, (_, n) => client.start(echo, { n })));
      await ready.settle();
      assert.equal(runs.length, 20);
      const coalesced = ready.count();
      assert.equal(coalesced, 1, `${coalesced - 1} NOTIFYs for 20 concurrent starts behind a pending run`);

      const c = await fx.db.pool.connect();
      try {
        await c.query('begin');
        await client.start(echo, { n: 100 }, { tx: c });
        await c.query('commit');
      } finally {
        c.release();
      }
      await fx.db.pool.query(`select trellis.run_start('echo', '{"n": 101}')`);
      await ready.settle();
      assert.equal(ready.count(), coalesced + 2, 'a start in a caller transaction and a plain SQL start each notify');
    } finally {
      await client.close();
      await ready.close();
    }
  });

  it('a run whose start skipped its NOTIFY while the worker drained is claimed at once, not at the next poll (an hour here)', async () => {
    const gated = defineWorkflow({ name: 'gated', input: z.object({ n: z.number() }) }, async (ctx, { n }) =>
      ctx.step('double', () => n * 2));
    const client = createClient({ pool: fx.db.pool, logger: silentLogger, handoff: false });
    const ready = await countReady(fx.db.url);
    const tx = new pg.Client({ connectionString: fx.db.url });
    await tx.connect();
    const worker = createWorker({ pool: fx.db.pool, workflows: [gated], pollInterval: '1 hour', logger: silentLogger });
    try {
      await client.register(gated);
      // A pending run, then a coalescing start left in flight: it sees the
      // pending run, so it holds the queue's gate and will not notify.
      const first = await client.start(gated, { n: 1 });
      await tx.query('begin');
      const { rows: [late] } = await tx.query<{ id: string }>(
        `select trellis.run_start('gated', '{"n": 21}', '{"coalesce_notify": true}') as id`);
      await ready.settle();
      const before = ready.count();

      // The worker claims the first run, then finds the gate held and looks again until it closes.
      await worker.start();
      assert.equal(await first.result({ timeout: '20s' }), 2);
      await waitFor(() => worker.stats.gateBusy >= 2, { what: 'the worker looking again at the held gate' });
      await tx.query('commit');
      assert.equal(await client.result(late!.id, { timeout: '20s' }), 42);
      await ready.settle();
      assert.equal(ready.count(), before, 'the late start never notified');
    } finally {
      await worker.stop({ timeout: 2000 });
      await client.close();
      await tx.end().catch(() => undefined);
      await ready.close();
    }
  });

  it('a wake while the worker looks at the gate again is not lost: that look\'s snapshot may predate the run it is about', async () => {
    const later = defineWorkflow({ name: 'gate-look', input: z.object({ n: z.number() }) }, async (ctx, { n }) =>
      ctx.step('triple', () => n * 3));
    const client = createClient({ pool: fx.db.pool, logger: silentLogger, handoff: false });
    // The worker's looks before going idle go through a pool that can answer one late.
    // Held: the first look that finds the gate free and nothing due (a look
    // sent before arm() and run after the rollback is that one too).
    const held = heldQueryPool(fx.db.url, 'trellis_run_idle_check', 'answer',
      (result) => result.rows[0]?.gate_busy === false && result.rows[0]?.ms === null);
    const tx = new pg.Client({ connectionString: fx.db.url });
    await tx.connect();
    // Its listener goes through a proxy the test freezes, so the run's own
    // NOTIFY does not reach it: the wake the test makes is the only news.
    const u = new URL(fx.db.url);
    const proxy = await startProxy({ host: u.hostname, port: Number(u.port) });
    const worker = createWorker({ pool: held.pool, workflows: [later], pollInterval: '1 hour', logger: silentLogger,
      listenUrl: throughProxy(fx.db.url, proxy.port), listenerHealthCheck: '1 minute' });
    try {
      await client.register(later);
      // A coalescing start in flight holds the queue's gate: the worker looks again and again.
      await tx.query('begin');
      await tx.query(`select trellis.run_start('gate-look', '{"n": 0}', '{"coalesce_notify": true}')`);
      await worker.start();
      await waitFor(() => worker.stats.gateBusy >= 1, { what: 'the worker finding the gate held' });
      // The next look finds the gate free (the start rolled back) and nothing
      // due; its answer is held until a run has started meanwhile.
      held.arm();
      await tx.query('rollback');
      await held.reached();
      for (const pipe of proxy.pipes) pipe.frozen = true;
      const run = await client.start(later, { n: 14 });
      worker.wake(); // as its NOTIFY would, while that look is still under way
      held.release();
      assert.equal(await run.result({ timeout: '10s' }), 42, 'claimed at once, not at the next poll (an hour here)');
    } finally {
      held.release();
      await worker.stop({ timeout: 2000 });
      await client.close();
      await tx.end().catch(() => undefined);
      await held.pool.end();
      await proxy.close();
    }
  });
});
