/**
 * `npx tsx test/bench/start-profile.ts`: where a start's server time goes.
 * 16 clients start runs through `trellis.run_start` for a few seconds with
 * track_functions = all; prints pg_stat_user_functions (self and total ms
 * per call) and the backend CPU per start. A profiling aid, not a family.
 */
import pg from 'pg';
import { postmasterPid, readCpu, cpuBetween } from './cpu.ts';
import { startServer } from './server.ts';

const server = await startServer();
try {
  const url = await server.createDatabase('bench_start_profile', { trellis: true });
  const admin = new pg.Client({ connectionString: url });
  await admin.connect();
  await admin.query(`alter database bench_start_profile set track_functions = 'all'`);
  await admin.query(`select trellis.workflow_register('[{"name":"p","version":"1","queue":"default"}]')`);
  const pool = new pg.Pool({ connectionString: url, max: 16 });
  const options = process.env.OPTIONS ?? '{"input_checked": true, "coalesce_notify": true}';
  const start = (i: number) => pool.query({ name: 's', text: `select trellis.run_start('p', $1::jsonb, $2::jsonb)`, values: [JSON.stringify({ i }), options] });
  await Promise.all(Array.from({ length: 16 }, (_, i) => start(i)));
  await admin.query('select pg_stat_reset()');
  const pm = await postmasterPid(admin);
  const c0 = readCpu(pm);
  let n = 0;
  const until = performance.now() + Number(process.env.SECONDS ?? 4) * 1000;
  await Promise.all(Array.from({ length: 16 }, async () => {
    while (performance.now() < until) await start(n++);
  }));
  const cpu = cpuBetween(c0, readCpu(pm));
  await pool.end();
  await new Promise((r) => setTimeout(r, 1200));
  console.log(`${n} starts, ${(n / cpu.seconds).toFixed(0)}/s, server CPU ${((cpu.server ?? 0) * 1e6 / n).toFixed(0)} µs/start, node ${(cpu.self * 1e6 / n).toFixed(0)} µs/start, others ${cpu.otherCores?.toFixed(2)} cores`);
  const { rows } = await admin.query(`select funcname, calls, round((self_time / calls * 1000)::numeric, 1) as self_us, round((total_time / calls * 1000)::numeric, 1) as total_us,
      round((self_time * 1000 / $1)::numeric, 1) as self_us_per_start
    from pg_stat_user_functions where schemaname = 'trellis' order by self_time desc limit 15`, [n]);
  console.table(rows);
  await admin.end();
} finally {
  await server.stop();
}
