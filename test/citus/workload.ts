/**
 * The workload of test/citus/run.ts: N runs of `citus-three` (three steps)
 * started at once, executed by two worker processes; how many completed, the
 * most times any step executed (1 unless a step ran twice) and runs/s from
 * the first claim to the last completion.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { sql } from './cluster.ts';

export interface WorkloadResult {
  completed: number;
  maxCalls: number;
  runsPerSecond: number;
}

const root = fileURLToPath(new URL('../..', import.meta.url));

/** A worker process (test/citus/worker-process.ts) on `url`, once it has started. */
export function startWorker(url: string): Promise<ChildProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'test/citus/worker-process.ts'], {
    cwd: root,
    env: { ...process.env, WORKLOAD_URL: url },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  return new Promise((resolve, reject) => {
    child.stdout!.on('data', (d: Buffer) => {
      if (d.toString().includes('started')) resolve(child);
    });
    child.on('exit', (code) => reject(new Error(`worker process exited with ${code} before it started`)));
  });
}

export async function workload(url: string, runs: number, timeoutMs = 600_000): Promise<WorkloadResult> {
  await sql(url, 'drop table if exists citus_calls');
  await sql(url, 'create table citus_calls (run_id uuid not null, step integer not null, n integer not null, primary key (run_id, step))');
  await sql(url, `select trellis.workflow_register('[{"name":"citus-three","version":"1","queue":"default"}]')`);
  await sql(url, `select trellis.run_start('citus-three', jsonb_build_object('i', g), jsonb_build_object('key', 'citus-' || g))
                    from generate_series(1, $1::int) g`, [runs]);
  const workers: ChildProcess[] = [];
  const started = Date.now();
  try {
    workers.push(...await Promise.all([startWorker(url), startWorker(url)]));
    let completed = 0;
    while (Date.now() - started < timeoutMs) {
      const [row] = await sql<{ done: string; open: string }>(url, `select count(*) filter (where status = 'completed') as done,
        count(*) filter (where status not in ('completed', 'failed', 'cancelled')) as open
        from trellis.runs where workflow = 'citus-three'`);
      completed = Number(row!.done);
      if (Number(row!.open) === 0) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    // From the first claim to the last completion (the worker processes' start-up is not the engine's).
    const [span] = await sql<{ s: number | null }>(url, `select extract(epoch from max(finished_at) - min(started_at))::float8 as s
      from trellis.runs where workflow = 'citus-three'`);
    const [calls] = await sql<{ max: number | null }>(url, 'select max(n) as max from citus_calls');
    return { completed, maxCalls: Number(calls!.max ?? 0), runsPerSecond: completed / Math.max(Number(span!.s ?? 0), 0.001) };
  } finally {
    await Promise.all(workers.map((w) => new Promise((r) => { w.once('exit', r); w.kill('SIGTERM'); })));
  }
}
