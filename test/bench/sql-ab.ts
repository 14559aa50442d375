/**
 * `npx tsx test/bench/sql-ab.ts` (after `npm run build`): this tree's SQL
 * against a base commit's, one server, the same worker build, repetitions
 * interleaved (A, B, B, A, ...) so a busy neighbour hits both alike (issue 18).
 * Database A is this tree's schema with the base commit's versions of the
 * sql/ files that changed since (then sql/900_plans.sql) and the statements
 * of AB_REVERT (the inverse of this tree's newer migrations, default: the
 * index change of issue 18); database B is this tree as it is.
 * Per repetition and side: 1-step (RUNS1, default 10,000 per process) and
 * 10-step (RUNS10, 2,000) prefilled runs drained by PROCS (1) worker
 * processes; wf/s, steps/s, Postgres and worker CPU per workflow, the cores
 * other processes used and the load average. REPS (4) repetitions.
 *   AB_BASE=<commit> (default bf8ad1c) AB_ONLY=1-step|10-step
 */
import { execSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import pg from 'pg';
import type { RepFigures } from './results.ts';
import { BEFORE_MIGRATION_20 } from './reverts.ts';
import { startServer } from './server.ts';
import { fmt, median } from './stats.ts';
import { registerBench, trellisRep } from './throughput.ts';
import type { Kind } from './workflows.ts';

const BASE = process.env.AB_BASE ?? 'bf8ad1c';
const REVERT = process.env.AB_REVERT ?? BEFORE_MIGRATION_20;
const REPS = Number(process.env.REPS ?? 4);
const PROCS = Number(process.env.PROCS ?? 1);
const RUNS: Record<Kind, number> = { '1-step': Number(process.env.RUNS1 ?? 10_000), '10-step': Number(process.env.RUNS10 ?? 2_000) };
const kinds = (process.env.AB_ONLY ? [process.env.AB_ONLY] : ['1-step', '10-step']) as Kind[];

const changed = execSync(`git diff --name-only ${BASE} -- 'sql/*.sql'`, { encoding: 'utf8' }).split('\n').filter(Boolean)
  .filter((f) => f !== 'sql/900_plans.sql');
const server = await startServer();
const load = () => readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
try {
  const sides = { A: { name: 'ab_base', label: `base ${BASE} SQL` }, B: { name: 'ab_tree', label: 'this tree' } } as const;
  const pools: Record<'A' | 'B', { pool: pg.Pool; url: string }> = {} as never;
  for (const side of ['A', 'B'] as const) {
    const url = await server.createDatabase(sides[side].name, { trellis: true });
    const pool = new pg.Pool({ connectionString: url, max: 4 });
    if (side === 'A') {
      for (const f of changed) await pool.query(execSync(`git show ${BASE}:${f}`, { encoding: 'utf8' }));
      await pool.query(readFileSync(new URL('../../sql/900_plans.sql', import.meta.url), 'utf8'));
      await pool.query(REVERT);
    }
    await registerBench(pool);
    pools[side] = { pool, url };
  }
  console.log(`A = ${sides.A.label} (${changed.join(', ') || 'no sql/ file changed'} + revert), B = ${sides.B.label}; ${PROCS} process(es), ${REPS} reps`);
  const out: Record<string, RepFigures[]> = {};
  for (let r = 0; r < REPS; r++) {
    for (const kind of kinds) {
      for (const side of (r % 2 ? ['B', 'A'] : ['A', 'B']) as ('A' | 'B')[]) {
        const l = load();
        const f = await trellisRep(pools[side].pool, pools[side].url, { kind, procs: PROCS, runs: RUNS[kind] * PROCS });
        (out[`${side} ${kind}`] ??= []).push(f);
        console.log(`  rep ${r + 1} ${side} ${kind}: ${fmt(f.wfs)} wf/s, ${fmt(f.stepsPerS)} steps/s, CPU/wf pg ${fmt(f.pgCpuUsPerWf ?? Number.NaN)} + node ${fmt(f.nodeCpuUsPerWf ?? Number.NaN)} core-µs, others ${fmt(f.otherCores ?? Number.NaN, 2)} cores, load ${l}`);
      }
    }
  }
  console.log('\nmedians (A -> B):');
  for (const kind of kinds) {
    const m = (side: string, pick: (f: RepFigures) => number | undefined) => median(out[`${side} ${kind}`]!.map((f) => pick(f) ?? Number.NaN));
    const line = (what: string, pick: (f: RepFigures) => number | undefined, digits = 0) =>
      `${what} ${fmt(m('A', pick), digits)} -> ${fmt(m('B', pick), digits)} (${fmt((m('B', pick) / m('A', pick) - 1) * 100, 1)}%)`;
    console.log(`  ${kind}: ${line(kind === '1-step' ? 'wf/s' : 'steps/s', (f) => (kind === '1-step' ? f.wfs : f.stepsPerS))}; ` +
      `${line('pg µs/wf', (f) => f.pgCpuUsPerWf)}; ${line('node µs/wf', (f) => f.nodeCpuUsPerWf)}; others ${fmt(m('A', (f) => f.otherCores), 2)} / ${fmt(m('B', (f) => f.otherCores), 2)} cores`);
  }
  for (const side of ['A', 'B'] as const) await pools[side].pool.end();
} finally {
  await server.stop();
}
process.exit(0);
