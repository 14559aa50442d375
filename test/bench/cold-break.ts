/**
 * `npx tsx test/bench/cold-break.ts`: where a new session's first start
 * goes (issue 18, goal 4). For each of N (30) rounds and each sequence
 * below, a fresh connection runs the sequence's statements one by one and
 * the backend's CPU for each is read from /proc/<pid>/schedstat (the server
 * must be on this machine: the embedded one, or DATABASE_URL's). Prints the
 * median per statement. The last statement of each sequence is the warm
 * start, for comparison; "first" is everything before it.
 *   bare:    the first run_start of the session, then a warm one
 *   rels:    the tables a start touches opened (and their indexes read by
 *            the planner) first, then run_start
 *   insert:  a plain insert into trellis.runs first (rolled back)
 *   name:    _check_name's first call first (its regex compiled)
 *   SEQS='{"name": ["sql", ...]}' replaces the sequences.
 */
import { readFileSync } from 'node:fs';
import pg from 'pg';
import { processCpuPrecise } from './cpu.ts';
import { startServer } from './server.ts';
import { fmt, median } from './stats.ts';

const cpuMs = (pid: number) => (processCpuPrecise(pid) ?? Number.NaN) * 1000;
const N = Number(process.env.N ?? 30);
const START = `select trellis.run_start('cold-break', '{"a":1}'::jsonb, '{"input_checked":true}'::jsonb)`;
const SEQUENCES: Record<string, string[]> = process.env.SEQS ? JSON.parse(process.env.SEQS) : {
  bare: [START, START],
  rels: [...['runs', 'events', 'queues', 'workflows', 'settings', 'run_transitions'].map((t) => `select 1 from trellis.${t} where false`), START, START],
  insert: ['begin', `insert into trellis.runs (bucket, id, workflow, version, queue, status, input, metadata, run_at, created_at, updated_at)
    values (1, gen_random_uuid(), 'cold-break', '1', 'default', 'pending', '{}', '{}', now(), now(), now())`, 'rollback', START, START],
  name: [`select trellis._check_name('abc', 'workflow')`, START, START],
};

const server = await startServer();
try {
  const url = await server.createDatabase('bench_cold_break', { trellis: true });
  const admin = new pg.Client({ connectionString: url });
  await admin.connect();
  await admin.query(`select trellis.workflow_register('[{"name":"cold-break","version":"1","queue":"default"}]')`);
  const out: Record<string, number[][]> = {};
  for (let i = 0; i < N; i++) {
    for (const [name, statements] of Object.entries(SEQUENCES)) {
      const c = new pg.Client({ connectionString: url });
      await c.connect();
      const pid = (await c.query('select pg_backend_pid() as p')).rows[0].p as number;
      await c.query('select 1');
      const row: number[] = [];
      for (const text of statements) {
        const before = cpuMs(pid);
        await c.query(text);
        row.push(cpuMs(pid) - before);
      }
      await c.end();
      (out[name] ??= []).push(row);
    }
  }
  console.log(`${N} fresh sessions per sequence; backend CPU (ms), median; load ${readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')}`);
  for (const [name, rows] of Object.entries(out)) {
    const first = median(rows.map((r) => r.slice(0, -1).reduce((a, b) => a + b, 0)));
    console.log(`${name}: first ${fmt(first, 2)} ms, warm start ${fmt(median(rows.map((r) => r.at(-1) as number)), 2)} ms`);
    for (const [j, text] of (SEQUENCES[name] as string[]).slice(0, -1).entries()) {
      console.log(`  ${fmt(median(rows.map((r) => r[j] as number)), 2).padStart(6)}  ${text.replace(/\s+/g, ' ').slice(0, 70)}`);
    }
  }
  await admin.end();
  await server.dropDatabase('bench_cold_break');
} finally {
  await server.stop();
}
process.exit(0);
