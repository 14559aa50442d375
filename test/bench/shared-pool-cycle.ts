/**
 * `npx tsx test/bench/shared-pool-cycle.ts`: the backend CPU of one run's
 * life in SQL when one connection serves both the client and the worker, as
 * a pool shared by both in one process does: run_start, then run_claim of
 * that run, then checkpoint_apply of its step and completion, each in its
 * own transaction, run after run. Two sides in one database, rounds
 * interleaved: the entry points with the pinned search_path of
 * sql/950_grants.sql (decision 0026), and with it reset on every entry point
 * that is not SECURITY DEFINER (the schema before that decision). CPU from
 * /proc/<pid>/schedstat of the session's backend; N (2,000) runs per round
 * after 100 unmeasured, REPS (4) rounds per side. A profiling aid (issue
 * 18): no Node work is in these figures.
 */
import { readFileSync } from 'node:fs';
import { cycleSession, oneRunCycle } from './one-run-cycle.ts';
import { startServer } from './server.ts';

const N = Number(process.env.N ?? 2000);
const REPS = Number(process.env.REPS ?? 4);

const server = await startServer();
try {
  const url = await server.createDatabase('shared_pool_cycle', { trellis: true });
  const { c, pid } = await cycleSession(url);
  const entryPoints = (await c.query<{ f: string }>(`
    select p.oid::regprocedure::text as f from pg_proc p join pg_language l on l.oid = p.prolang
     where p.pronamespace = 'trellis'::regnamespace and l.lanname = 'plpgsql'
       and left(p.proname, 1) <> '_' and not p.prosecdef`)).rows.map((r) => r.f);
  const pin = async (pinned: boolean) => {
    for (const f of entryPoints) {
      await c.query(`alter function ${f} ${pinned ? 'set search_path = pg_catalog, trellis, pg_temp' : 'reset search_path'}`);
    }
  };
  const cycle = oneRunCycle(c, pid);
  const res: Record<string, string[]> = {};
  const load0 = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
  for (let r = 0; r < REPS; r++) {
    for (const pinned of r % 2 ? [true, false] : [false, true]) {
      await pin(pinned);
      await c.query('discard plans');
      for (let i = 0; i < 100; i++) await cycle.run(false);
      cycle.reset();
      for (let i = 0; i < N; i++) await cycle.run();
      const t = cycle.cpu;
      const us = (x: number) => ((x * 1e6) / N).toFixed(0);
      (res[pinned ? 'pinned' : 'session'] ??= []).push(`${us(t.start)}/${us(t.claim)}/${us(t.checkpoint)} = ${us(t.start + t.claim + t.checkpoint)}`);
    }
  }
  await pin(true);
  console.log(`backend µs per run, start/claim/checkpoint = total, ${REPS} rounds of ${N}; load ${load0} before, ${readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')} after`);
  for (const [side, rounds] of Object.entries(res)) console.log(`  ${side.padEnd(8)} ${rounds.join(' | ')}`);
  await c.end();
} finally {
  await server.stop();
}
process.exit(0);
