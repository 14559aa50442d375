/**
 * Trellis behind PgBouncer in transaction mode, with bounded waits.
 * - Every statement goes through PgBouncer (PGBOUNCER_URL) except LISTEN,
 *   which PgBouncer cannot keep in transaction mode: `listenUrl` sends it
 *   straight to PostgreSQL (DATABASE_URL), so NOTIFY still wakes the worker
 *   and `result()` at once.
 * - Prepared statements are 'auto' (the default): prepared, and switched off
 *   by themselves if PgBouncer (before 1.21, or without
 *   max_prepared_statements) refuses one.
 * - connectTimeout, queryTimeout and keepAlive bound every wait on the
 *   connections Trellis opens, so a server that stops answering is noticed.
 *
 *   PGBOUNCER_URL=postgres://app@127.0.0.1:6432/app DATABASE_URL=postgres://app@127.0.0.1:5432/app \
 *     npx tsx examples/pgbouncer/main.ts
 * Without PGBOUNCER_URL everything goes to DATABASE_URL (or an embedded PostgreSQL).
 */
import { z } from 'zod';
import { createClient, createWorker, defineWorkflow } from '../../src/index.ts';
import { exampleDatabase } from '../support/database.ts';

const ship = defineWorkflow({ name: 'ship-parcel', input: z.object({ parcel: z.string() }) }, async (ctx, { parcel }) => {
  const label = await ctx.step('label', () => `label for ${parcel}`);
  return ctx.step('hand-over', () => `${label} handed over`);
});

const database = await exampleDatabase();
const pooled = process.env.PGBOUNCER_URL ?? database.url;
const waits = { connectTimeout: '5s', queryTimeout: '30s', keepAlive: '10s' } as const;
const worker = createWorker({ connectionString: pooled, listenUrl: database.url, workflows: [ship], ...waits });
const client = createClient({ connectionString: pooled, listenUrl: database.url, ...waits });
try {
  await worker.start();
  const runs = await Promise.all(['P-1', 'P-2', 'P-3'].map((parcel) => client.start(ship, { parcel })));
  for (const run of runs) console.log(await run.result({ timeout: '30s' }));
  console.log(`through ${process.env.PGBOUNCER_URL ? 'PgBouncer' : 'PostgreSQL directly'}: ${runs.length} runs completed`);
} finally {
  await worker.stop();
  await client.close();
  await database.stop();
}
