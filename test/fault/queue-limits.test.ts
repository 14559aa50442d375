/**
 * Flow control across worker processes (sql/230_queue_claim.sql): the limits
 * live in the claim transaction, so they hold however many workers claim,
 * and a SIGKILLed worker's slot comes back when its lease expires.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { after, before, describe, it } from 'node:test';
import { createClient, type Client } from '../../src/client/client.ts';
import { silentLogger } from '../../src/workflow/logger.ts';
import { freshDatabase, type TestDatabase } from '../helpers/db.ts';
import { waitFor } from '../helpers/wait.ts';

let db: TestDatabase;
let client: Client;
const children: ChildProcess[] = [];

async function spawnWorker(queue: string, env: Record<string, string> = {}): Promise<ChildProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'test/fault/queue-process.ts'], {
    env: { ...process.env, DATABASE_URL: db.url, FLOW_QUEUE: queue, ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  children.push(child);
  let out = '';
  child.stdout?.on('data', (d) => (out += d));
  await waitFor(() => out.includes('ready'), { what: `worker on ${queue} ready`, timeout: 90_000 });
  return child;
}

async function stopAll(): Promise<void> {
  for (const c of children.splice(0)) {
    if (c.exitCode === null && c.signalCode === null) {
      c.kill('SIGTERM');
      await once(c, 'exit');
    }
  }
}

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
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  await client.close();
  await db.close();
});

describe('a global concurrency limit across worker processes', () => {
  it('three workers with ten slots each never run more than 3 runs of a queue limited to 3', async () => {
    await client.setQueue('three', { concurrency: 3 });
    await Promise.all([spawnWorker('three'), spawnWorker('three'), spawnWorker('three')]);
    // 30 runs of 150 ms through 3 slots: at least 1.5 s of sampling.
    await startJobs('three', 30, 150);
    let most = 0;
    let samples = 0;
    await waitFor(async () => {
      const running = await count('three', 'running');
      most = Math.max(most, running);
      samples++;
      return (await count('three', 'completed')) === 30;
    }, { what: '30 runs completed', interval: 5, timeout: 60_000 });
    assert.ok(most <= 3, `at most 3 running, saw ${most}`);
    assert.equal(most, 3, 'the limit is reached (the workers do run in parallel)');
    assert.ok(samples > 10, `sampled ${samples} times`);
    const { rows } = await db.pool.query(`select count(distinct (output #>> '{}'))::int as n from trellis.runs where queue = 'three'`);
    assert.ok(rows[0].n >= 2, `runs finished on ${rows[0].n} worker processes`);
    await stopAll();
  });
});

describe('a rate limit across worker processes', () => {
  it('two workers claim at most 5 runs per 1s window of a queue limited to 5 per second', async () => {
    // Every claim of the queue, with the engine time of its transaction.
    await db.pool.query(`create table public.claims (run_id uuid, at timestamptz)`);
    await db.pool.query(`create function public.log_claim() returns trigger language plpgsql as $$
      begin insert into public.claims values (new.id, trellis.now()); return new; end $$`);
    await db.pool.query(`create trigger log_claim after update of status on trellis.runs for each row
      when (new.status = 'running' and old.status <> 'running' and new.queue = 'rated') execute function public.log_claim()`);
    await client.setQueue('rated', { rate: { limit: 5, period: '1s' } });
    await Promise.all([spawnWorker('rated'), spawnWorker('rated')]);
    await startJobs('rated', 16, 0);
    await waitFor(async () => (await count('rated', 'completed')) === 16, { what: '16 runs completed', timeout: 60_000 });
    const { rows } = await db.pool.query(`select floor(extract(epoch from at))::bigint as w, count(*)::int as n
                                            from public.claims group by 1 order by 1`);
    assert.ok(rows.every((r) => r.n <= 5), `claims per window: ${rows.map((r) => r.n).join(', ')}`);
    assert.ok(rows.length >= 4, `16 claims at 5 per second take at least 4 windows, took ${rows.length}`);
    await stopAll();
  });
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
