import pg from 'pg';
import { startEmbeddedPostgres } from './src/testing/embedded-postgres.ts';
import { migrate } from './src/schema/install.ts';
const server = await startEmbeddedPostgres();
const admin = new pg.Client(server.connectionString); await admin.connect(); await admin.query('create database ab'); await admin.end();
const pool = new pg.Pool({ connectionString: server.urlFor('ab'), max: 2 });
await migrate(pool);
await pool.query(`select trellis.workflow_register('[{"name":"bench-1","version":"1","queue":"default"}]')`);
for (const [q, keys, fair] of [['plain', 0, false], ['glob', 0, true], ['one', 1, true], ['many', 10000, true]] as const) {
  if (fair) await pool.query(`select trellis.queue_set($1, $2)`, [q, q === 'glob' ? '{"concurrency": 1000}' : '{"fair": true}']);
  await pool.query(`select count(trellis.run_start('bench-1', '{}', jsonb_build_object('queue', $1::text) || case when $2::int > 0 then jsonb_build_object('concurrency_key', 'k' || (g % $2::int)) else '{}' end)) from generate_series(1, 10000) g`, [q, keys]);
}
await pool.query('analyze');
const c = new pg.Client(server.urlFor('ab')); await c.connect();
for (let round = 0; round < 2; round++) for (const q of ['plain', 'glob', 'one', 'many']) {
  const t: number[] = [];
  for (let i = 0; i < 25; i++) {
    await c.query('begin'); const s = performance.now();
    const { rowCount } = await c.query(`select id from trellis.run_claim('w', $1, '{bench-1}', '{1}', 50, '30 seconds')`, [[q]]);
    t.push(performance.now() - s); await c.query('rollback');
    if (rowCount !== 50) throw new Error(`${q}: ${rowCount}`);
  }
  t.sort((a, b) => a - b); console.log(q, t[12]!.toFixed(2));
}
await c.end(); await pool.end(); await server.stop();
