/**
 * A lifecycle hook is delivered even when the process that finished the run
 * is SIGKILLed right after its commit: the delivery is a row written in the
 * run's transaction, and another worker claims it (once the dead worker's
 * hook lease expires, moved along with the virtual clock).
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { describe, it } from 'node:test';
import { z } from 'zod';
import { createWorker } from '../../src/worker/worker.ts';
import { defineWorkflow } from '../../src/workflow/define.ts';
import { silentLogger } from '../../src/protocol/logger.ts';
import { useDatabase } from '../helpers/database-fixture.ts';
import { waitFor } from '../helpers/wait.ts';
import { killIfRunning, spawnReady } from './harness/ready-process.ts';

const fx = useDatabase({ virtualClock: true });

describe('a worker SIGKILLed right after it completed a run', () => {
  it('leaves the onComplete hook to another worker, which delivers it', async () => {
    const child = await spawnReady('test/fault/hook-process.ts', { DATABASE_URL: fx.db.url }, { what: 'worker process ready', timeout: 30_000 });
    try {
      const received: string[] = [];
      const hooked = defineWorkflow({
        name: 'hook-kill', input: z.object({ n: z.number() }),
        hooks: { timeout: '10s', onComplete: (e) => void received.push(`${e.runId} ${JSON.stringify(e.output)}`) },
      }, async (ctx, { n }) => ctx.step('double', () => n * 2));
      const run = await fx.client.start(hooked, { n: 21 });
      // The moment the run's end is committed, the finishing process dies.
      await waitFor(async () => (await fx.client.get(run.id))?.status === 'completed', { what: 'run completed', interval: 5 });
      child.kill('SIGKILL');
      await once(child, 'exit');
      const [delivery] = (await fx.db.pool.query('select status from trellis.hook_deliveries where run_id = $1', [run.id])).rows;
      assert.ok(delivery, 'the delivery outlived the process');
      // Whatever the dead process held expires (its lease is the hook timeout plus 30 s).
      await fx.db.pool.query(`select trellis.clock_advance('1 minute')`);
      const other = createWorker({ pool: fx.db.pool, workflows: [hooked], logger: silentLogger, hookDelivery: { interval: 20 } });
      await other.start();
      try {
        await waitFor(() => received.length > 0, { what: 'the hook delivered by the other worker' });
        await waitFor(async () => (await fx.db.pool.query('select 1 from trellis.hook_deliveries where run_id = $1', [run.id])).rows.length === 0,
          { what: 'the delivery deleted' });
        assert.deepEqual(received, [`${run.id} 42`]);
      } finally {
        await other.stop({ timeout: 1000 });
      }
    } finally {
      killIfRunning(child);
    }
  });
});
