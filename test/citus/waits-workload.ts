/**
 * The waits workload of test/citus/run.ts: N runs of `citus-waits`
 * (test/citus/worker-process.ts: a step, a 200 ms timer, a wait for signal
 * `go`, a child run — keyed, so in another bucket, for even inputs — and a
 * step), executed by two worker processes. The test sends `go` to every run
 * it finds waiting without a timer (the signal wait; signal id `go`, so a
 * repeat is dropped), which wakes it through signal_send. Returns how many
 * runs and children completed, whether each output is right, and the most
 * times any step executed.
 */
import type { ChildProcess } from 'node:child_process';
import { sql } from './cluster.ts';
import { startWorker } from './workload.ts';

export interface WaitsResult {
  completed: number;
  children: number;
  wrongOutputs: number;
  signalsSent: number;
  maxCalls: number;
  seconds: number;
}

export async function waitsWorkload(url: string, runs: number, timeoutMs = 600_000): Promise<WaitsResult> {
  await sql(url, 'create table if not exists citus_calls (run_id uuid not null, step integer not null, n integer not null, primary key (run_id, step))');
  await sql(url, `select trellis.workflow_register('[{"name":"citus-waits","version":"1","queue":"default"},
                                                    {"name":"citus-kid","version":"1","queue":"default"}]')`);
  await sql(url, `select trellis.run_start('citus-waits', jsonb_build_object('i', g), jsonb_build_object('key', 'waits-' || g))
                    from generate_series(1, $1::int) g`, [runs]);
  const workers: ChildProcess[] = [];
  const started = Date.now();
  let signalsSent = 0;
  try {
    workers.push(...await Promise.all([startWorker(url), startWorker(url)]));
    while (Date.now() - started < timeoutMs) {
      // Waiting without a timer and before its child: the signal wait. (The
      // ids are read first: an engine function cannot run inside a query on a shard.)
      const waiting = await sql<{ id: string }>(url, `select r.id from trellis.runs r
        where r.workflow = 'citus-waits' and r.status = 'waiting' and r.run_at = 'infinity'`);
      // One transaction per signal, as client.signal sends them (one transaction
      // locking many runs in no order could deadlock with the workers' checkpoints).
      for (const { id } of waiting) {
        const [sent] = await sql<{ ok: boolean }>(url, `select trellis.signal_send($1, 'go', '{}', 'go') as ok`, [id]);
        if (sent!.ok) signalsSent++;
      }
      const [row] = await sql<{ open: string }>(url, `select count(*) as open from trellis.runs
        where workflow in ('citus-waits', 'citus-kid') and status not in ('completed', 'failed', 'cancelled')`);
      if (Number(row!.open) === 0) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    const seconds = (Date.now() - started) / 1000;
    const [done] = await sql<{ runs: string; kids: string; wrong: string }>(url, `select
        count(*) filter (where workflow = 'citus-waits' and status = 'completed') as runs,
        count(*) filter (where workflow = 'citus-kid' and status = 'completed') as kids,
        count(*) filter (where workflow = 'citus-waits' and status = 'completed'
                           and output <> to_jsonb((input->>'i')::int * 3)) as wrong
        from trellis.runs where workflow in ('citus-waits', 'citus-kid')`);
    const [calls] = await sql<{ max: number | null }>(url, `select max(n) as max from citus_calls where step >= 10`);
    return { completed: Number(done!.runs), children: Number(done!.kids), wrongOutputs: Number(done!.wrong),
             signalsSent, maxCalls: Number(calls!.max ?? 0), seconds };
  } finally {
    await Promise.all(workers.map((w) => new Promise((r) => { w.once('exit', r); w.kill('SIGTERM'); })));
  }
}
