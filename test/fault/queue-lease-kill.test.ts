/**
 * A SIGKILLed worker holding a limited queue's only slot: the slot comes
 * back when the dead worker's lease expires (run_claim reclaims expired
 * leases before it counts the queue's running runs).
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { after, before, describe, it } from 'node:test';
import { createClient, type Client } from '../../src/client/client.ts';
import { silentLogger } from '../../src/protocol/logger.ts';
import { freshDatabase, type TestDatabase } from '../helpers/db.ts';
import { flowWorkers } from '../helpers/flow-workers.ts';
import { waitFor } from '../helpers/wait.ts';

let db: TestDatabase;
let client: Client;
const workers = flowWorkers(() => db.url);
const spawnWorker = workers.spawn;
const stopAll = workers.stopAll;

async function startJobs(queue: string, n: number, ms: number): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < n; i++) ids.push((await client.start('flow-job', { ms }, { queue })).id);
  return ids;
}

async function count(queue: string, status: string): Promise<number> {
  const { rows } = await db.pool.query('select count(*)::int as n from trellis.runs where queue = $1 and status = $2', [queue, status]);
  return rows[0].n;
}

before(async () => {
  db = await freshDatabase();
  client = createClient({ pool: db.pool, logger: silentLogger });
});
after(async () => {
  workers.killAll();
  await client.close();
  await db.close();
});

describe('a SIGKILLed worker holding a limited queue\'s only slot', () => {
  it('its slot is freed when its lease expires, and another worker runs the queue on', async () => {
    await client.setQueue('one', { concurrency: 1 });
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
    const { rows } = await db.pool.query('select id, attempt from trellis.runs where id = any ($1) order by attempt desc', [[first, second]]);
    assert.equal(rows[0].attempt, 2, 'the killed worker\'s run was claimed again');
    await stopAll();
  });
});
