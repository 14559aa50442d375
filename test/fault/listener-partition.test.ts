/**
 * A LISTEN connection that dies silently: a TCP proxy between the worker and
 * Postgres stops forwarding the listener's connection in both directions
 * without closing it (a partition, or a firewall dropping an idle flow: no
 * FIN, no RST, so neither side notices). The worker's health check gets no
 * answer, drops the connection and listens on a new one, and NOTIFY wakes
 * it again, with polling out of the picture (a one-hour poll interval).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { z } from 'zod';
import { createWorker } from '../../src/worker/worker.ts';
import { defineWorkflow } from '../../src/workflow/define.ts';
import { silentLogger } from '../../src/protocol/logger.ts';
import { testPool } from '../helpers/db.ts';
import { useDatabase } from '../helpers/database-fixture.ts';
import { startProxy } from '../helpers/tcp-proxy.ts';
import { waitFor } from '../helpers/wait.ts';

const fx = useDatabase();

const echo = defineWorkflow({ name: 'echo-partition', input: z.object({ v: z.number() }) }, async (ctx, { v }) => ctx.step('echo', () => v));

describe('the LISTEN connection silently partitioned', () => {
  it('is replaced after its health check goes unanswered, and NOTIFY wakes the worker again', async () => {
    const url = new URL(fx.db.url);
    const proxy = await startProxy({ host: url.hostname, port: Number(url.port) });
    url.port = String(proxy.port);
    const pool = testPool({ connectionString: url.toString(), max: 4 });
    pool.on('error', () => undefined);
    // A one-hour poll: only NOTIFY (or the catch-up claim on a reconnect) can wake this worker.
    const worker = createWorker({ pool, workflows: [echo], pollInterval: 3_600_000, listenerHealthCheck: 300, logger: silentLogger });
    try {
      await worker.start();
      const listening = () => proxy.pipes.filter((p) => p.startup.includes('trellis-worker-listener') && !p.frozen);
      const first = await waitFor(() => listening()[0], { what: 'the listener connection through the proxy' });
      assert.equal(worker.listenerConnects, 1);
      const before = await fx.client.start(echo, { v: 1 });
      assert.equal(await before.result({ timeout: '10s' }), 1, 'NOTIFY reaches the worker through the proxy');

      first.frozen = true;
      await waitFor(() => worker.listenerConnects >= 2, { timeout: 15_000, what: 'the listener to reconnect' });
      assert.equal(listening().length, 1, 'one live listener connection, a new one');
      assert.notEqual(listening()[0], first);

      const t0 = Date.now();
      const afterRun = await fx.client.start(echo, { v: 2 });
      assert.equal(await afterRun.result({ timeout: '10s' }), 2);
      assert.ok(Date.now() - t0 < 10_000);
      assert.equal(worker.stats.claimed, 2, 'both runs claimed on a NOTIFY');
    } finally {
      await worker.stop();
      await pool.end();
      await proxy.close();
    }
  });
});
