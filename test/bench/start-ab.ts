/**
 * `npx tsx test/bench/start-ab.ts`: the start path of this tree's SQL
 * against a base commit's, one server, repetitions interleaved (A, B, B, A,
 * ...) so a busy neighbour hits both alike (issue 18). Database A is this
 * tree's schema with the base commit's versions of the sql/ files that
 * changed since (then sql/900_plans.sql and sql/950_grants.sql, which set
 * the functions' settings); database B is this tree as it is.
 * Per repetition and side:
 * - `one`: N (3,000) `trellis.run_start` calls from one connection in one
 *   transaction that is rolled back (each call a statement of its own,
 *   prepared, with the options the client sends): the backend's CPU per
 *   start (/proc schedstat), without the commit's, which is the same for
 *   both sides and the noisiest part;
 * - `commit`: N / 3 more calls from that connection, each its own
 *   transaction: the backend's CPU per start with its commit and what
 *   PL/pgSQL sets up again in each transaction (its expressions' state);
 * - `16`: 16 clients each calling `client.start` one at a time for SECONDS
 *   (4): starts/s and the server's and this process's CPU per start.
 *   AB_BASE=<commit> (default HEAD) REPS (4); AB_SQL_A / AB_SQL_B: SQL run
 *   in that side's database after its set-up (to measure a variant, e.g.
 *   a constraint dropped, without a commit of its own).
 */
import { execSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import pg from 'pg';
import { z } from 'zod';
import { createClient } from '../../src/client/client.ts';
import { silentLogger } from '../../src/protocol/logger.ts';
import { defineWorkflow } from '../../src/workflow/define.ts';
import { cpuBetween, postmasterPid, processCpuPrecise, readCpu } from './cpu.ts';
import { startServer } from './server.ts';
import { fmt, median } from './stats.ts';

const BASE = process.env.AB_BASE ?? 'HEAD';
const REPS = Number(process.env.REPS ?? 4);
const N = Number(process.env.N ?? 3000);
const SECONDS = Number(process.env.SECONDS ?? 4);
const wf = defineWorkflow({ name: 'bench-start', input: z.object({ i: z.number() }) }, async (ctx, { i }) => ctx.step('noop', () => i));
const changed = execSync(`git diff --name-only ${BASE} -- 'sql/*.sql'`, { encoding: 'utf8' }).split('\n').filter(Boolean)
  .filter((f) => f !== 'sql/900_plans.sql' && f !== 'sql/950_grants.sql');
const server = await startServer();
const load = () => readFileSync('/proc/loadavg', 'utf8').split(' ')[0];
type Side = 'A' | 'B';
try {
  const sides: Record<Side, { pool: pg.Pool; one: pg.Client; pid: number; client: ReturnType<typeof createClient> }> = {} as never;
  for (const side of ['A', 'B'] as const) {
    const url = await server.createDatabase(side === 'A' ? 'start_ab_base' : 'start_ab_tree', { trellis: true });
    const pool = new pg.Pool({ connectionString: url, max: 16 });
    pool.on('error', () => {});
    if (side === 'A') {
      // A function whose result columns changed since the base cannot be
      // replaced (42P13): the base's file drops it first.
      const drops = (text: string) => [...text.matchAll(/create or replace function (trellis\.[a-z_]+)\([^;]*?\)\s*returns table/g)].map((m) => m[1]!);
      for (const f of changed) {
        const text = execSync(`git show ${BASE}:${f}`, { encoding: 'utf8' });
        await pool.query(`do $$ declare f regprocedure; begin
          for f in select p.oid::regprocedure from pg_proc p where p.oid::regproc::text = any ($1::text[])
                      or ('trellis.' || p.proname) = any ($1::text[]) and p.pronamespace = 'trellis'::regnamespace loop
            execute format('drop function %s', f);
          end loop; end $$`.replace('$1::text[]', `array[${drops(text).map((n) => `'${n}'`).join(',') || "''"}]::text[]`).replace('$1::text[]', `array[${drops(text).map((n) => `'${n}'`).join(',') || "''"}]::text[]`));
        await pool.query(text);
      }
      for (const f of ['900_plans', '950_grants']) await pool.query(readFileSync(new URL(`../../sql/${f}.sql`, import.meta.url), 'utf8'));
    }
    const client = createClient({ pool, handoff: false, logger: silentLogger });
    await client.register(wf);
    const extra = process.env[`AB_SQL_${side}`];
    if (extra) await pool.query(extra);
    const one = new pg.Client({ connectionString: url });
    await one.connect();
    const pid = (await one.query('select pg_backend_pid() as p')).rows[0].p as number;
    sides[side] = { pool, one, pid, client };
  }
  console.log(`A = base ${BASE} (${changed.join(', ') || 'no sql/ file changed'}), B = this tree; ${REPS} reps, load ${load()}`);
  const out: Record<string, number[]> = {};
  const push = (k: string, v: number) => (out[k] ??= []).push(v);
  const opts = JSON.stringify({ input_checked: true, coalesce_notify: true });
  for (let r = 0; r < REPS; r++) {
    for (const side of (r % 2 ? ['B', 'A'] : ['A', 'B']) as Side[]) {
      const s = sides[side];
      const call = (i: number) => s.one.query({ name: 'rs', text: 'select trellis.run_start($1, $2::jsonb, $3::jsonb)', values: ['bench-start', `{"i":${i}}`, opts] });
      await s.one.query('begin');
      for (let i = 0; i < 200; i++) await call(i);
      const c0 = processCpuPrecise(s.pid)!;
      for (let i = 0; i < N; i++) await call(i);
      const one = (processCpuPrecise(s.pid)! - c0) * 1e6 / N;
      await s.one.query('rollback');
      push(`${side} one`, one);
      const c2 = processCpuPrecise(s.pid)!;
      for (let i = 0; i < N / 3; i++) await call(i);
      const commit = (processCpuPrecise(s.pid)! - c2) * 1e6 / (N / 3);
      push(`${side} commit`, commit);
      const pm = await postmasterPid(s.one);
      let n = 0;
      const end = performance.now() + SECONDS * 1000;
      const c1 = readCpu(pm);
      await Promise.all(Array.from({ length: 16 }, async () => {
        while (performance.now() < end) { await s.client.start(wf, { i: n }); n++; }
      }));
      const d = cpuBetween(c1, readCpu(pm));
      push(`${side} rate`, n / d.seconds); push(`${side} server`, d.server! * 1e6 / n); push(`${side} node`, d.self * 1e6 / n);
      console.log(`  rep ${r + 1} ${side}: one ${fmt(one)}, commit ${fmt(commit)} µs/start; 16 clients ${fmt(n / d.seconds)}/s, server ${fmt(d.server! * 1e6 / n)} + node ${fmt(d.self * 1e6 / n)} µs/start, others ${fmt(d.otherCores ?? Number.NaN, 2)} cores, load ${load()}`);
    }
  }
  const m = (k: string) => median(out[k]!);
  const line = (what: string, k: string) => `${what} ${fmt(m(`A ${k}`))} -> ${fmt(m(`B ${k}`))} (${fmt((m(`B ${k}`) / m(`A ${k}`) - 1) * 100, 1)}%)`;
  console.log(`\nmedians (A -> B): ${line('one-connection backend µs/start', 'one')}; ${line('each committed', 'commit')}; ${line('16 clients starts/s', 'rate')}; ${line('server µs/start', 'server')}; ${line('node µs/start', 'node')}`);
  for (const side of ['A', 'B'] as const) { await sides[side].client.close(); await sides[side].one.end(); await sides[side].pool.end(); }
} finally {
  await server.stop();
}
process.exit(0);
