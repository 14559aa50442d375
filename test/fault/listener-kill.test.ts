import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { z } from 'zod';
import { createWorker } from '../../src/worker/worker.ts';
import { defineWorkflow } from '../../src/workflow/define.ts';
import { silentLogger } from '../../src/protocol/logger.ts';
import { useDatabase } from '../helpers/database-fixture.ts';
import { waitFor } from '../helpers/wait.ts';

const fx = useDatabase({ client: { resultPollInterval: 200 } });

const stuck = defineWorkflow({ name: 'stuck', input: z.object({}) }, async (ctx) =>
  ctx.step('hang', ({ signal }) => new Promise<string>((resolve) => {
    signal.addEventListener('abort', () => resolve(`aborted at ${Date.now()}`), { once: true });
  })));

const echo = defineWorkflow({ name: 'echo', input: z.object({ v: z.number() }) }, async (ctx, { v }) => ctx.step('echo', () => v));

async function listenerPid(): Promise<number | undefined> {
  const { rows } = await fx.db.pool.query(
    `select pid from pg_stat_activity where datname = current_database() and application_name = 'trellis-worker-listener'`,
  );
  return rows[0]?.pid;
}

describe('the listener backend killed with pg_terminate_backend', () => {
  it('work started afterwards still runs within the poll interval', async () => {
    const pollMs = 500;
    const worker = createWorker({ pool: fx.db.pool, workflows: [echo], pollInterval: pollMs, logger: silentLogger });
    await worker.start();
    try {
      const pid = await waitFor(listenerPid, { what: 'listener backend' });
      await fx.db.pool.query('select pg_terminate_backend($1)', [pid]);
      const t0 = Date.now();
      const run = await fx.client.start(echo, { v: 7 });
      assert.equal(await run.result({ timeout: '10s' }), 7);
      const elapsed = Date.now() - t0;
      // Either the poll or the reconnect's catch-up claim picks it up.
      assert.ok(elapsed < pollMs + 1000, `took ${elapsed} ms with a ${pollMs} ms poll interval`);
    } finally {
      await worker.stop();
    }
  });

  it('LISTEN comes back: after the reconnect a NOTIFY wakes the worker with polling out of the picture', async () => {
    // A one-hour poll: only NOTIFY (or the catch-up claim on reconnect) can wake this worker.
    const worker = createWorker({ pool: fx.db.pool, workflows: [echo], pollInterval: 3_600_000, logger: silentLogger });
    await worker.start();
    try {
      const first = await waitFor(listenerPid, { what: 'listener backend' });
      await fx.db.pool.query('select pg_terminate_backend($1)', [first]);
      const second = await waitFor(async () => {
        const pid = await listenerPid();
        return pid !== undefined && pid !== first ? pid : undefined;
      }, { what: 'a new listener backend' });
      assert.notEqual(second, first);
      await waitFor(() => worker.listenerConnects >= 2, { what: 'listener reconnected' });
      for (let i = 0; i < 3; i++) {
        const run = await fx.client.start(echo, { v: i });
        assert.equal(await run.result({ timeout: '10s' }), i);
      }
    } finally {
      await worker.stop();
    }
  });

  it('a cancel request whose NOTIFY was missed still aborts the running step within the poll interval', async () => {
    const pollMs = 300;
    // Heartbeats (a third of the 30 s lease) are too slow to be what delivers it.
    const worker = createWorker({ pool: fx.db.pool, workflows: [stuck], pollInterval: pollMs, logger: silentLogger });
    await worker.start();
    try {
      const run = await fx.client.start(stuck, {});
      await waitFor(async () => (await fx.db.pool.query(
        `select 1 from trellis.steps where run_id = $1 and status = 'running'`, [run.id])).rowCount, { what: 'the step to start' });
      // The listener is gone for good: the cancel NOTIFY reaches nobody.
      await (worker as unknown as { listener: { close(): Promise<void> } }).listener.close();
      const t0 = Date.now();
      await fx.client.cancel(run.id, 'missed notify');
      await waitFor(async () => (await fx.client.get(run.id))?.status === 'cancelled', { what: 'the run to end cancelled', timeout: 10_000 });
      const elapsed = Date.now() - t0;
      assert.ok(elapsed < pollMs + 1000, `took ${elapsed} ms with a ${pollMs} ms poll interval`);
    } finally {
      await worker.stop();
    }
  });
});
