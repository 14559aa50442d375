/**
 * `npx tsx test/bench/worker-profile.ts`: where a worker's server time goes.
 * PROCS (1) worker processes drain RUNS (10,000) prefilled one-step runs
 * (KIND=10: ten-step) with track_functions = all; prints the server and worker CPU per run and
 * pg_stat_user_functions (self and total µs per run). A profiling aid (issue 18).
 */
import pg from 'pg';
import { measureRun } from './procs.ts';
import { startServer } from './server.ts';
import { BUSY, enqueue, registerBench } from './throughput.ts';

const runs = Number(process.env.RUNS ?? 10_000);
const server = await startServer();
try {
  const url = await server.createDatabase('bench_worker_profile', { trellis: true });
  const admin = new pg.Client({ connectionString: url });
  await admin.connect();
  await admin.query(`alter database bench_worker_profile set track_functions = 'all'`);
  await registerBench(admin);
  await enqueue(admin, process.env.KIND === '10' ? 'bench-10' : 'bench-1', runs);
  await admin.query('select pg_stat_reset()');
  const m = await measureRun({ url, file: './worker-process.ts', env: {}, procs: Number(process.env.PROCS ?? 1), total: runs,
    remainingSql: `select count(*) as remaining from trellis.runs where status <> 'completed'`, pollSql: BUSY });
  console.log(`${Math.round(m.rate)} wf/s; CPU per run: server ${Math.round((m.cpu.server ?? 0) * 1e6 / m.items)} µs, worker ${Math.round((m.cpu.procs ?? 0) * 1e6 / m.items)} µs; others ${m.cpu.otherCores?.toFixed(2)} cores`);
  for (const c of m.childStats as { claimed: number; claims: number; committer?: { flushes: number; ops: number } | undefined }[]) {
    console.log(`  process: ${c.claimed} runs in ${c.claims} claims, ${c.committer?.ops} ops in ${c.committer?.flushes} commits`);
  }
  const { rows } = await admin.query(`select funcname, calls, round((self_time * 1000 / $1)::numeric, 1) as self_us_per_run,
      round((total_time * 1000 / $1)::numeric, 1) as total_us_per_run
    from pg_stat_user_functions where schemaname = 'trellis' order by self_time desc limit 20`, [m.items]);
  console.table(rows);
  await admin.end();
} finally {
  await server.stop();
}
