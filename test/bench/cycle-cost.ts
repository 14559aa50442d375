/**
 * `npx tsx test/bench/cycle-cost.ts`: the backend CPU of one run's life in
 * SQL (run_start, run_claim, checkpoint_apply of a step and the completion)
 * on two databases of one server, rounds interleaved: this tree's schema
 * with the statements of CYCLE_REVERT applied (default: the index change of
 * migration 000020 undone) against this tree as it is. One session per
 * database does N (4,000) runs per round: starts in one statement, claims
 * of 100 with about 200 runs running while the checkpoints of 100 apply (a
 * worker's steady state). CPU from /proc/<pid>/schedstat (nanoseconds) of
 * the session's backend, per run and phase; WARM (3) rounds first, then
 * ANALYZE and a new session, then REPS (6) timed rounds. A profiling aid
 * (issue 18): no Node work is in these figures.
 */
import { readFileSync } from 'node:fs';
import pg from 'pg';
import { BEFORE_MIGRATION_20 } from './reverts.ts';
import { startServer } from './server.ts';

const REVERT = process.env.CYCLE_REVERT ?? BEFORE_MIGRATION_20;
const REPS = Number(process.env.REPS ?? 6);
const WARM = Number(process.env.WARM ?? 3);
const N = Number(process.env.N ?? 4000);
type Row = { id: string; lease_token: string };
const ops = (rows: Row[]) => JSON.stringify(rows.flatMap((x) => [
  { op: 'step', run: x.id, token: x.lease_token, execution: 1, seq: 1, name: 'a', kind: 'step', status: 'completed', output: 1, attempts: 1, ms: 0, delivered: 1 },
  { op: 'complete', run: x.id, token: x.lease_token, output: 1 }]));

const server = await startServer();
try {
  const sides = ['reverted', 'tree'] as const;
  const urls: Record<string, string> = {};
  const sessions: Record<string, { c: pg.Client; pid: number }> = {};
  const connect = async (side: string) => {
    const c = new pg.Client({ connectionString: urls[side] });
    await c.connect();
    sessions[side] = { c, pid: (await c.query('select pg_backend_pid() as p')).rows[0].p };
  };
  const cpu = (side: string) => Number(readFileSync(`/proc/${sessions[side]!.pid}/schedstat`, 'utf8').split(' ')[0]) / 1e9;
  for (const side of sides) {
    urls[side] = await server.createDatabase(`cycle_${side}`, { trellis: true });
    await connect(side);
    if (side === 'reverted') await sessions[side]!.c.query(REVERT);
    await sessions[side]!.c.query(`select trellis.workflow_register('[{"name":"p","version":"1","queue":"default"}]')`);
  }
  async function cycle(side: string) {
    const c = sessions[side]!.c;
    const t = { start: 0, claim: 0, complete: 0 };
    let a = cpu(side);
    await c.query(`select count(trellis.run_start('p', jsonb_build_object('i', g), '{"input_checked": true, "coalesce_notify": true}')) from generate_series(1, $1::int) g`, [N]);
    t.start += cpu(side) - a;
    const claim = async () => {
      const b = cpu(side);
      const { rows } = await c.query<Row>(`select id, lease_token from trellis.run_claim('w1', '{default}', '{p}', '{1}', 100, '5 minutes', true)`);
      t.claim += cpu(side) - b;
      return rows;
    };
    let prev = await claim();
    let done = 0;
    while (prev.length) {
      const next = await claim();
      a = cpu(side);
      const { rows } = await c.query('select * from trellis.checkpoint_apply($1::jsonb)', [ops(prev)]);
      t.complete += cpu(side) - a;
      if (rows.length) throw new Error('a checkpoint was refused');
      done += prev.length;
      prev = next;
    }
    if (done !== N) throw new Error(`${done} of ${N} runs done`);
    return t;
  }
  for (let r = 0; r < WARM; r++) for (const side of sides) await cycle(side);
  for (const side of sides) {
    await sessions[side]!.c.query('vacuum analyze trellis.runs');
    await sessions[side]!.c.end();
    await connect(side);
    await cycle(side);
  }
  const res: Record<string, Record<string, number[]>> = {};
  const load0 = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
  for (let r = 0; r < REPS; r++) {
    for (const side of r % 2 ? [...sides].reverse() : sides) {
      const t = await cycle(side);
      const us = (x: number) => (x * 1e6) / N;
      const o = (res[side] ??= { start: [], claim: [], complete: [], total: [] });
      o.start!.push(us(t.start)); o.claim!.push(us(t.claim)); o.complete!.push(us(t.complete));
      o.total!.push(us(t.start + t.claim + t.complete));
    }
  }
  const med = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)]!;
  console.log(`backend µs per run (median of ${REPS} rounds of ${N} runs) [each round]; load ${load0} before, ${readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')} after`);
  for (const side of sides) {
    console.log(`  ${side.padEnd(9)} ${Object.entries(res[side]!).map(([k, v]) => `${k} ${med(v).toFixed(0)} [${v.map((x) => x.toFixed(0)).join(' ')}]`).join(' | ')}`);
  }
  for (const side of sides) await sessions[side]!.c.end();
} finally {
  await server.stop();
}
process.exit(0);
