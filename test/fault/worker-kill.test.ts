import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { after, before, describe, it } from 'node:test';
import { createClient, type Client } from '../../src/client/client.ts';
import { silentLogger } from '../../src/protocol/logger.ts';
import { freshDatabase, type TestDatabase } from '../helpers/db.ts';
import { waitFor } from '../helpers/wait.ts';

let db: TestDatabase;
let client: Client;
const children: ChildProcess[] = [];

async function spawnWorker(mode: 'block' | 'normal', startN?: number): Promise<ChildProcess & { out: () => string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'test/fault/worker-process.ts'], {
    env: { ...process.env, DATABASE_URL: db.url, FAULT_MODE: mode, LEASE_MS: '2000', ...(startN === undefined ? {} : { START_N: String(startN) }) },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  children.push(child);
  let out = '';
  child.stdout?.on('data', (d) => (out += d));
  await waitFor(() => out.includes('ready'), { what: `worker (${mode}) ready`, timeout: 30_000 });
  return Object.assign(child, { out: () => out });
}

before(async () => {
  db = await freshDatabase();
  await db.pool.query('create table public.fault_log (run_id uuid, step text, pid int, attempt int, at timestamptz default clock_timestamp())');
  client = createClient({ pool: db.pool, logger: silentLogger });
});
after(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  await client.close();
  await db.close();
});

describe('a worker process SIGKILLed in the middle of step 2 of 3', () => {
  it('the run completes on another worker process; step 1 ran once, step 2 at most twice', async () => {
    const a = await spawnWorker('block');
    const run = await client.start('fault-three', { n: 4 });
    await waitFor(async () => {
      const { rows } = await db.pool.query(`select pid from public.fault_log where run_id = $1 and step = 'step-2'`, [run.id]);
      return rows.length > 0;
    }, { what: 'step 2 started on worker A' });
    await waitFor(async () => (await client.history(run.id)).some((s) => s.name === 'step-2' && s.status === 'running'),
      { what: "step 2's running marker" });
    a.kill('SIGKILL');
    await once(a, 'exit');

    const b = await spawnWorker('normal');
    const output = (await client.result(run.id, { timeout: '30s' })) as { a: number; b: number; c: number; finishedBy: number };
    assert.deepEqual({ a: output.a, b: output.b, c: output.c }, { a: 5, b: 50, c: 51 });
    assert.equal(output.finishedBy, b.pid);

    const { rows } = await db.pool.query(
      'select step, count(*)::int as n, array_agg(distinct pid) as pids from public.fault_log where run_id = $1 group by step order by step',
      [run.id],
    );
    const counts = Object.fromEntries(rows.map((r) => [r.step, r.n]));
    assert.equal(counts['step-1'], 1, 'a checkpointed step never runs again');
    assert.ok(counts['step-2'] >= 1 && counts['step-2'] <= 2, `step 2 ran ${counts['step-2']} times`);
    assert.equal(counts['step-3'], 1);
    const attempts = await db.pool.query(`select pid, attempt from public.fault_log where run_id = $1 and step = 'step-2' order by at`, [run.id]);
    assert.deepEqual(attempts.rows.map((r) => r.attempt), [1, 2], 'the re-run knows it is attempt 2');
    const history = await client.history(run.id);
    assert.deepEqual(history.map((s) => [s.name, s.status, s.attempts]), [
      ['step-1', 'completed', 1],
      ['step-2', 'completed', 2],
      ['step-3', 'completed', 1],
    ]);
    const row = await client.get(run.id);
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
    await waitFor(async () => (await client.history(id)).some((s) => s.name === 'step-2' && s.status === 'running'),
      { what: "step 2's running marker" });
    const before = await client.get(id);
    assert.equal(before?.status, 'running');
    assert.equal(before?.attempt, 1);
    a.kill('SIGKILL');
    await once(a, 'exit');

    const b = await spawnWorker('normal');
    const output = (await client.result(id, { timeout: '30s' })) as { a: number; b: number; c: number; finishedBy: number };
    assert.deepEqual({ a: output.a, b: output.b, c: output.c }, { a: 9, b: 90, c: 91 });
    assert.equal(output.finishedBy, b.pid);
    const { rows } = await db.pool.query('select step, count(*)::int as n from public.fault_log where run_id = $1 group by step', [id]);
    const counts = Object.fromEntries(rows.map((r) => [r.step, r.n]));
    assert.equal(counts['step-1'], 1, 'the checkpointed step never runs again');
    assert.equal(counts['step-2'], 2);
    assert.equal(counts['step-3'], 1);
    assert.equal((await client.get(id))?.attempt, 2);
    b.kill('SIGTERM');
    await once(b, 'exit');
  });
});
