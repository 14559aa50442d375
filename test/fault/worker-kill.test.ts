import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { after, describe, it } from 'node:test';
import { useDatabase } from '../helpers/database-fixture.ts';
import { waitFor } from '../helpers/wait.ts';
import { killIfRunning, type ReadyProcess, spawnReady } from './harness/ready-process.ts';

const children: ChildProcess[] = [];
// Registered before useDatabase's after(), so it runs first: no worker process outlives the database.
after(() => children.forEach(killIfRunning));
const fx = useDatabase({
  setUp: ({ db }) => db.pool.query('create table public.fault_log (run_id uuid, step text, pid int, attempt int, at timestamptz default clock_timestamp())'),
});

async function spawnWorker(mode: 'block' | 'normal', startN?: number): Promise<ReadyProcess> {
  return spawnReady('test/fault/worker-process.ts', { DATABASE_URL: fx.db.url, FAULT_MODE: mode, LEASE_MS: '2000', ...(startN === undefined ? {} : { START_N: String(startN) }) },
    { what: `worker (${mode}) ready`, timeout: 30_000, into: children });
}

describe('a worker process SIGKILLed in the middle of step 2 of 3', () => {
  it('the run completes on another worker process; step 1 ran once, step 2 at most twice', async () => {
    const a = await spawnWorker('block');
    const run = await fx.client.start('fault-three', { n: 4 });
    await waitFor(async () => {
      const { rows } = await fx.db.pool.query(`select pid from public.fault_log where run_id = $1 and step = 'step-2'`, [run.id]);
      return rows.length > 0;
    }, { what: 'step 2 started on worker A' });
    await waitFor(async () => (await fx.client.history(run.id)).some((s) => s.name === 'step-2' && s.status === 'running'),
      { what: "step 2's running marker" });
    a.kill('SIGKILL');
    await once(a, 'exit');

    const b = await spawnWorker('normal');
    const output = (await fx.client.result(run.id, { timeout: '30s' })) as { a: number; b: number; c: number; finishedBy: number };
    assert.deepEqual({ a: output.a, b: output.b, c: output.c }, { a: 5, b: 50, c: 51 });
    assert.equal(output.finishedBy, b.pid);

    const { rows } = await fx.db.pool.query(
      'select step, count(*)::int as n, array_agg(distinct pid) as pids from public.fault_log where run_id = $1 group by step order by step',
      [run.id],
    );
    const counts = Object.fromEntries(rows.map((r) => [r.step, r.n]));
    assert.equal(counts['step-1'], 1, 'a checkpointed step never runs again');
    assert.ok(counts['step-2'] >= 1 && counts['step-2'] <= 2, `step 2 ran ${counts['step-2']} times`);
    assert.equal(counts['step-3'], 1);
    const attempts = await fx.db.pool.query(`select pid, attempt from public.fault_log where run_id = $1 and step = 'step-2' order by at`, [run.id]);
    assert.deepEqual(attempts.rows.map((r) => r.attempt), [1, 2], 'the re-run knows it is attempt 2');
    const history = await fx.client.history(run.id);
    assert.deepEqual(history.map((s) => [s.name, s.status, s.attempts]), [
      ['step-1', 'completed', 1],
      ['step-2', 'completed', 2],
      ['step-3', 'completed', 1],
    ]);
    const row = await fx.client.get(run.id);
    assert.equal(row?.status, 'completed');
    assert.equal(row?.attempt, 2, 'claimed twice: once by A, once by B after the lease expired');
    b.kill('SIGTERM');
    await once(b, 'exit');
  });
});

describe('a process that started a run and took it by local hand-off, SIGKILLed in step 2', () => {
  it('the lease it took at the start expires and another worker process completes the run', async () => {
    const a = await spawnWorker('block', 8);
    const started = await waitFor(() => /started (\S+) (\d+)/.exec(a.out()), { what: 'the start in worker A' });
    const id = started[1] as string;
    assert.equal(started[2], '1', 'handed to A, not claimed');
    await waitFor(async () => (await fx.client.history(id)).some((s) => s.name === 'step-2' && s.status === 'running'),
      { what: "step 2's running marker" });
    const before = await fx.client.get(id);
    assert.equal(before?.status, 'running');
    assert.equal(before?.attempt, 1);
    a.kill('SIGKILL');
    await once(a, 'exit');

    const b = await spawnWorker('normal');
    const output = (await fx.client.result(id, { timeout: '30s' })) as { a: number; b: number; c: number; finishedBy: number };
    assert.deepEqual({ a: output.a, b: output.b, c: output.c }, { a: 9, b: 90, c: 91 });
    assert.equal(output.finishedBy, b.pid);
    const { rows } = await fx.db.pool.query('select step, count(*)::int as n from public.fault_log where run_id = $1 group by step', [id]);
    const counts = Object.fromEntries(rows.map((r) => [r.step, r.n]));
    assert.equal(counts['step-1'], 1, 'the checkpointed step never runs again');
    assert.equal(counts['step-2'], 2);
    assert.equal(counts['step-3'], 1);
    assert.equal((await fx.client.get(id))?.attempt, 2);
    b.kill('SIGTERM');
    await once(b, 'exit');
  });
});
