/**
 * A state machine's onComplete hook is durable: when the process that
 * completed the run is SIGKILLed right after the commit (holding the hook,
 * or before claiming it), another worker delivers the hook, once, with the
 * machine's final status and object. (An in-process hook would be lost.)
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { describe, it } from 'node:test';
import { connectMachine } from '../../src/state-machine/client.ts';
import type { MachineHookEvent } from '../../src/state-machine/types.ts';
import { createWorker } from '../../src/worker/worker.ts';
import { silentLogger } from '../../src/protocol/logger.ts';
import { useDatabase } from '../helpers/database-fixture.ts';
import { waitFor } from '../helpers/wait.ts';
import { killIfRunning, spawnReady } from './harness/ready-process.ts';
import { hookedMachine } from './machine-hook-defs.ts';

const fx = useDatabase({ virtualClock: true });

describe('a worker SIGKILLed right after it completed a state machine run', () => {
  it('leaves the machine\'s onComplete hook to another worker, which runs it once', async () => {
    const child = await spawnReady('test/fault/machine-hook-process.ts', { DATABASE_URL: fx.db.url }, { what: 'worker process ready', timeout: 30_000 });
    try {
      const received: MachineHookEvent<string, unknown>[] = [];
      const machine = hookedMachine((event) => void received.push(event));
      const runId = await connectMachine(fx.client, machine).trigger('order-7', { object: { n: 21 } });
      await waitFor(async () => (await fx.client.get(runId))?.status === 'completed', { what: 'run completed', interval: 5 });
      child.kill('SIGKILL');
      await once(child, 'exit');
      assert.equal(received.length, 0);
      const pending = await fx.db.pool.query('select hook from trellis.hook_deliveries where run_id = $1', [runId]);
      assert.deepEqual(pending.rows, [{ hook: 'onComplete' }], 'the delivery outlived the process');
      // Whatever the dead process held expires (its lease is the hook timeout plus 30 s).
      await fx.db.pool.query(`select trellis.clock_advance('2 minutes')`);
      const other = createWorker({ pool: fx.db.pool, workflows: [machine.workflow], logger: silentLogger, hookDelivery: { interval: 20 } });
      await other.start();
      try {
        await waitFor(async () => (await fx.db.pool.query('select 1 from trellis.hook_deliveries where run_id = $1', [runId])).rows.length === 0,
          { what: 'the delivery done and deleted' });
        assert.deepEqual(received.map((e) => [e.event, e.machine, e.runId, e.foreignId, e.status, e.object]),
          [['complete', 'machine-hook-kill', runId, 'order-7', 'done', { n: 42 }]]);
      } finally {
        await other.stop({ timeout: 1000 });
      }
    } finally {
      killIfRunning(child);
    }
  });
});
