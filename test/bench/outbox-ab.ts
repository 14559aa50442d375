/**
 * A/B of the SQL cost of the outbox, outside the throughput family: the same
 * grouped checkpoint (N runs, a step and a completion each) and N starts in
 * one statement, on three databases of one server, interleaved round by
 * round: a baseline commit (BASELINE_SRC), this tree with the outbox on,
 * and with it off.
 *   npx tsx test/bench/outbox-ab.ts        (N=100, ROUNDS=60)
 */
import pg from 'pg';
import { startEmbeddedPostgres } from '../../src/testing/embedded-postgres.ts';
import { migrate as migrateB } from '../../src/schema/install.ts';
// The baseline: another commit's sources, exported with
//   git archive <commit> src package.json | tar -x -C /tmp/baseline && ln -s $PWD/node_modules /tmp/baseline/
const { migrate: migrateA } = await import(`${process.env.BASELINE_SRC ?? '/tmp/baseline/src'}/schema/install.ts`);

const starts = new Map<pg.Pool, number[]>();
const server = await startEmbeddedPostgres();
const admin = new pg.Client(server.connectionString);
await admin.connect();
await admin.query('create database ab_main');
await admin.query('create database ab_outbox');
await admin.query('create database ab_off');
await admin.end();
const a = new pg.Pool({ connectionString: server.urlFor('ab_main'), max: 1 });
const b = new pg.Pool({ connectionString: server.urlFor('ab_outbox'), max: 1 });
await migrateA(a);
await migrateB(b);
const c = new pg.Pool({ connectionString: server.urlFor('ab_off'), max: 1 });
await migrateB(c);
await c.query(`select trellis.setting_set('events', 'false')`);
starts.set(a, []); starts.set(b, []); starts.set(c, []);
const N = Number(process.env.N ?? 100);
async function round(pool: pg.Pool, r: number): Promise<number> {
  await pool.query(`select trellis.workflow_register('[{"name":"w","version":"1","queue":"q"}]')`);
  const t0 = performance.now();
  await pool.query(`select count(trellis.run_start('w', '{}', '{"queue":"q"}')) from generate_series(1, $1::int)`, [N]);
  starts.get(pool)!.push(performance.now() - t0);
  const { rows } = await pool.query(`select id, lease_token from trellis.run_claim('x', '{q}', '{w}', '{1}', $1, '1 minute')`, [N]);
  const ops = rows.flatMap((x) => [
    { op: 'step', run: x.id, token: x.lease_token, execution: 1, seq: 0, name: 's', kind: 'step', status: 'completed', output: r, attempts: 1, delivered: 1 },
    { op: 'complete', run: x.id, token: x.lease_token, output: r },
  ]);
  const t = performance.now();
  await pool.query('select * from trellis.checkpoint_apply($1)', [JSON.stringify(ops)]);
  return performance.now() - t;
}
const ta: number[] = [], tb: number[] = [], tc: number[] = [];
for (let r = 0; r < Number(process.env.ROUNDS ?? 60); r++) {
  const order = [[a, ta], [b, tb], [c, tc]] as const;
  for (let k = 0; k < 3; k++) {
    const [pool, out] = order[(r + k) % 3]!;
    out.push(await round(pool, r));
  }
}
const med = (x: number[]) => [...x].sort((p, q) => p - q)[Math.floor(x.length / 2)]!;
const skip = 10;
console.log(`checkpoint_apply of ${N} runs (step + complete), ${ta.length - skip} rounds each: main ${med(ta.slice(skip)).toFixed(2)} ms, outbox on ${med(tb.slice(skip)).toFixed(2)} ms, outbox off ${med(tc.slice(skip)).toFixed(2)} ms`);
console.log(`${N} run_start in one statement: main ${med(starts.get(a)!.slice(skip)).toFixed(2)} ms, outbox on ${med(starts.get(b)!.slice(skip)).toFixed(2)} ms, outbox off ${med(starts.get(c)!.slice(skip)).toFixed(2)} ms`);
await a.end(); await b.end(); await c.end();
await server.stop();
