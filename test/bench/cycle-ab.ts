/**
 * `npx tsx test/bench/cycle-ab.ts`: one run at a time through start, claim
 * and a completing checkpoint (a step and the run's end), each statement its
 * own transaction on one connection, as the hand-off and queue paths do it
 * at low load; the backend's CPU (/proc schedstat) of each phase per run,
 * for this tree's SQL against a base commit's, switched back and forth in
 * one database (each switch re-applies the sql/ files that differ, then
 * sql/900_plans.sql and sql/950_grants.sql, and discards the session's
 * plans), rounds interleaved (A, B, B, A, ...). Issue 18: the fixed cost of
 * a call, which a batch of 100 runs shares and a single run pays alone.
 *   AB_BASE=<commit> (default HEAD) ROUNDS (6) N (1,500 runs per round)
 *   AB_SQL_A / AB_SQL_B: SQL run after each switch to that side (a variant
 *   measured without a commit of its own, e.g. a table's constraints; it
 *   must undo the other side's, as the switches alternate in one database).
 */
import { execSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { cycleSession, oneRunCycle } from './one-run-cycle.ts';
import { startServer } from './server.ts';
import { fmt, median } from './stats.ts';

const BASE = process.env.AB_BASE ?? 'HEAD';
const ROUNDS = Number(process.env.ROUNDS ?? 6);
const N = Number(process.env.N ?? 1500);
const changed = execSync(`git diff --name-only ${BASE} -- 'sql/*.sql'`, { encoding: 'utf8' }).split('\n').filter(Boolean)
  .filter((f) => f !== 'sql/900_plans.sql' && f !== 'sql/950_grants.sql');
// A file this tree added has no base text: side A leaves its functions as B defined them.
const baseText = (f: string) => { try { return execSync(`git show ${BASE}:${f}`, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }); } catch { return ''; } };
const text = { A: changed.map(baseText).filter(Boolean), B: changed.map((f) => readFileSync(f, 'utf8')) };
const after = ['sql/900_plans.sql', 'sql/950_grants.sql'].map((f) => readFileSync(f, 'utf8'));
const server = await startServer();
try {
  const url = await server.createDatabase('cycle_ab', { trellis: true });
  const { c, pid } = await cycleSession(url);
  const cycle = oneRunCycle(c, pid, '{"input_checked": true, "coalesce_notify": true}');
  console.log(`A = base ${BASE} (${changed.join(', ') || 'no sql/ file changed'}), B = this tree; ${ROUNDS} rounds of ${N} runs, load ${readFileSync('/proc/loadavg', 'utf8').split(' ')[0]}`);
  const out: Record<string, number[]> = {};
  for (let round = 0; round < ROUNDS; round++) {
    for (const side of (round % 2 ? ['B', 'A'] : ['A', 'B']) as ('A' | 'B')[]) {
      for (const sql of [...text[side], ...after]) await c.query(sql);
      const extra = process.env[`AB_SQL_${side}`];
      if (extra) await c.query(extra);
      await c.query('discard plans');
      await c.query('truncate trellis.runs, trellis.events cascade');
      for (let i = 0; i < 100; i++) await cycle.run(false);
      cycle.reset();
      for (let i = 0; i < N; i++) await cycle.run();
      const t = cycle.cpu;
      const per = (x: number) => x * 1e6 / N;
      for (const [k, v] of Object.entries(t)) (out[`${side} ${k}`] ??= []).push(per(v));
      (out[`${side} total`] ??= []).push(per(t.start + t.claim + t.checkpoint));
      console.log(`  round ${round + 1} ${side}: start ${fmt(per(t.start))}, claim ${fmt(per(t.claim))}, checkpoint ${fmt(per(t.checkpoint))} µs backend CPU per run`);
    }
  }
  console.log('\nmedians (A -> B):');
  for (const k of ['start', 'claim', 'checkpoint', 'total']) {
    const a = median(out[`A ${k}`]!); const b = median(out[`B ${k}`]!);
    console.log(`  ${k}: ${fmt(a)} -> ${fmt(b)} µs (${fmt((b / a - 1) * 100, 1)}%)`);
  }
  await c.end();
} finally {
  await server.stop();
}
process.exit(0);
