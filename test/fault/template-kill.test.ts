import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { after, describe, it } from 'node:test';
import { useDatabase } from '../helpers/database-fixture.ts';
import { waitFor } from '../helpers/wait.ts';
import { killIfRunning, spawnReady } from './harness/ready-process.ts';

const children: ChildProcess[] = [];
// Registered before useDatabase's after(), so it runs first: no worker process outlives the database.
after(() => children.forEach(killIfRunning));
const fx = useDatabase({
  setUp: ({ db }) => db.pool.query('create table public.fault_log (run_id uuid, step text, pid int, attempt int, at timestamptz default clock_timestamp())'),
});

async function spawnWorker(mode: 'block' | 'normal'): Promise<ChildProcess> {
  return spawnReady('test/fault/template-worker-process.ts', { DATABASE_URL: fx.db.url, FAULT_MODE: mode, LEASE_MS: '2000' },
    { what: `template worker (${mode}) ready`, timeout: 30_000, into: children });
}

describe('a template worker process SIGKILLed between steps', () => {
  it('the template run started from SQL completes on another worker, from the state saved after its last step', async () => {
    const a = await spawnWorker('block');
    await fx.db.pool.query(`select trellis.template_set('relay', '{"steps": [{"name": "first"}, {"name": "second"}, {"name": "third"}]}')`);
    const { rows: [started] } = await fx.db.pool.query(`select trellis.template_start('relay', '{"trail": []}') as id`);
    const runId = started.id as string;
    // 'first' is checkpointed and 'second' has begun on A: kill A there.
    await waitFor(async () => (await fx.client.history(runId)).some((s) => s.name === 'first' && s.status === 'completed'),
      { what: "the checkpoint of 'first'" });
    await waitFor(async () => (await fx.db.pool.query(`select 1 from public.fault_log where run_id = $1 and step = 'second'`, [runId])).rows.length > 0,
      { what: "'second' started on worker A" });
    // The attempt's 'running' marker is written beside the body, not before
    // it: kill A once it is committed, so the attempt count below is known.
    await waitFor(async () => (await fx.client.history(runId)).some((s) => s.name === 'second' && s.status === 'running'),
      { what: "the 'running' marker of 'second'" });
    a.kill('SIGKILL');
    await once(a, 'exit');

    const b = await spawnWorker('normal');
    const output = (await fx.client.result(runId, { timeout: '30s' })) as { state: { trail: string[] } };
    assert.deepEqual(output.state.trail, [`first@${a.pid}`, `second@${b.pid}`, `third@${b.pid}`]);
    const { rows } = await fx.db.pool.query('select step, count(*)::int as n from public.fault_log where run_id = $1 group by step order by step', [runId]);
    assert.deepEqual(Object.fromEntries(rows.map((r) => [r.step, r.n])), { first: 1, second: 2, third: 1 });
    const history = await fx.client.history(runId);
    assert.deepEqual(history.map((s) => [s.name, s.status, s.attempts]), [['first', 'completed', 1], ['second', 'completed', 2], ['third', 'completed', 1]]);
    b.kill('SIGTERM');
    await once(b, 'exit');
  });
});
