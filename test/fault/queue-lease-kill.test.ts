/**
 * A SIGKILLed worker holding a limited queue's only slot: the slot comes
 * back when the dead worker's lease expires (run_claim reclaims expired
 * leases before it counts the queue's running runs).
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { describe, it } from 'node:test';
import { useFlowFixture } from '../helpers/flow-workers.ts';
import { waitFor } from '../helpers/wait.ts';

const flow = useFlowFixture();
const { startJobs, count, stopAll } = flow;
const spawnWorker = flow.spawn;

describe('a SIGKILLed worker holding a limited queue\'s only slot', () => {
  it('its slot is freed when its lease expires, and another worker runs the queue on', async () => {
    await flow.client.setQueue('one', { concurrency: 1 });
    const a = await spawnWorker('one', { FLOW_MODE: 'block', LEASE_MS: '2000' });
    const [first, second] = await startJobs('one', 2, 0);
    await waitFor(async () => (await count('one', 'running')) === 1, { what: 'a run holds the slot' });
    a.kill('SIGKILL');
    await once(a, 'exit');
    await spawnWorker('one', { LEASE_MS: '2000' });
    let most = 0;
    await waitFor(async () => {
      most = Math.max(most, await count('one', 'running'));
      return (await count('one', 'completed')) === 2;
    }, { what: 'both runs completed after the lease expired', interval: 10, timeout: 30_000 });
    assert.ok(most <= 1, `at most one running, saw ${most}`);
    const { rows } = await flow.db.pool.query('select id, attempt from trellis.runs where id = any ($1) order by attempt desc', [[first, second]]);
    assert.equal(rows[0].attempt, 2, 'the killed worker\'s run was claimed again');
    await stopAll();
  });
});
