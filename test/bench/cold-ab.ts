/**
 * `npx tsx test/bench/cold-ab.ts`: the first `client.start` of a fresh
 * client (its pool already connected) with a base commit's client against
 * this tree's, interleaved client by client on one server and one database
 * (the workflow already registered), both from TypeScript sources (tsx).
 * Prints p50/p95 of the first and the second start and the statements each
 * first start ran (issue 18, the family `cold` measures one tree).
 *   COLD_BASE_SRC=/tmp/cold-base/src (a copy of the base's sources:
 *     git archive <commit> src package.json | tar -x -C /tmp/cold-base && ln -s $PWD/node_modules /tmp/cold-base/)
 *   N=60 clients per side
 */
import { readFileSync } from 'node:fs';
import pg from 'pg';
import { z } from 'zod';
import * as tree from '../../src/index.ts';
import { startServer } from './server.ts';
import { fmt, percentiles } from './stats.ts';

const base: typeof tree = await import(`${process.env.COLD_BASE_SRC ?? '/tmp/cold-base/src'}/index.ts`);
const N = Number(process.env.N ?? 60);
const server = await startServer();
try {
  const url = await server.createDatabase('bench_cold_ab', { trellis: true });
  const sides = { base, tree } as const;
  const out: Record<string, { first: number[]; second: number[]; statements: number[] }> = {};
  const load0 = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
  for (let i = 0; i < N; i++) {
    for (const name of (i % 2 ? ['tree', 'base'] : ['base', 'tree']) as (keyof typeof sides)[]) {
      const lib = sides[name];
      const wf = lib.defineWorkflow({ name: 'bench-cold', input: z.object({ i: z.number() }) }, async (ctx, { i: n }) => ctx.step('noop', () => n));
      const pool = new pg.Pool({ connectionString: url, max: 4 });
      await pool.query('select 1');
      let statements = 0;
      const query = pool.query.bind(pool) as (...a: unknown[]) => Promise<unknown>;
      (pool as unknown as { query: unknown }).query = (...a: unknown[]) => (statements++, query(...a));
      const client = lib.createClient({ pool, logger: lib.silentLogger });
      const t = performance.now();
      await client.start(wf, { i });
      const first = performance.now() - t;
      const n = statements;
      const t2 = performance.now();
      await client.start(wf, { i });
      const second = performance.now() - t2;
      await client.close();
      await pool.end();
      if (i === 0) continue; // the first client of each side compiles its code paths
      const o = (out[name] ??= { first: [], second: [], statements: [] });
      o.first.push(first);
      o.second.push(second);
      o.statements.push(n);
    }
  }
  console.log(`${N - 1} fresh clients per side, interleaved; load ${load0} before, ${readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')} after`);
  for (const [name, o] of Object.entries(out)) {
    const f = percentiles(o.first);
    const s = percentiles(o.second);
    console.log(`  ${name.padEnd(5)} first start p50 ${fmt(f.p50, 2)} ms p95 ${fmt(f.p95, 2)}; second start p50 ${fmt(s.p50, 2)} ms p95 ${fmt(s.p95, 2)}; statements in the first start ${Math.max(...o.statements)}`);
  }
  await server.dropDatabase('bench_cold_ab');
} finally {
  await server.stop();
}
process.exit(0);
