/**
 * Starting many runs at once (client.startMany, trellis.run_start_many):
 * 1. An import of 500 orders starts one run per order in one statement,
 *    inside the application's own transaction that records the import, so
 *    the import row and its runs commit together. Each run has its own key
 *    (a repeated import starts nothing twice) and priority.
 * 2. A worker runs them all.
 * 3. A batch with one bad item is refused as a whole, naming the item, and
 *    starts nothing.
 *
 *   npx tsx examples/bulk-start/main.ts
 * Uses DATABASE_URL when set, else an embedded PostgreSQL.
 */
import pg from 'pg';
import { z } from 'zod';
import { createClient, createWorker, defineWorkflow, ValidationError } from '../../src/index.ts';
import { exampleDatabase } from '../support/database.ts';

const fulfil = defineWorkflow({ name: 'fulfil', input: z.object({ order: z.string(), items: z.number().int().positive() }) },
  async (ctx, { order, items }) => ctx.step('pack', () => `${order}: ${items} packed`));

const database = await exampleDatabase();
const pool = new pg.Pool({ connectionString: database.url });
pool.on('error', () => undefined); // idle connections closed by a stopping server
const client = createClient({ pool });
const worker = createWorker({ pool, workflows: [fulfil], concurrency: 50 });
try {
  await pool.query('create table if not exists imports (id text primary key, orders integer not null)');
  const orders = Array.from({ length: 500 }, (_, i) => ({ order: `ord-${i + 1}`, items: 1 + (i % 3) }));
  const batch = orders.map((o) => ({ input: o, key: o.order, priority: o.items === 3 ? 10 : 0 }));

  // 1. The import row and its 500 runs in one transaction.
  const tx = await pool.connect();
  let handles;
  try {
    await tx.query('begin');
    await tx.query('insert into imports (id, orders) values ($1, $2) on conflict (id) do nothing', ['import-1', orders.length]);
    handles = await client.startMany(fulfil, batch, { tx });
    await tx.query('commit');
  } catch (error) {
    await tx.query('rollback');
    throw error;
  } finally {
    tx.release();
  }
  console.log(`started ${handles.length} runs with the import`);
  const again = await client.startMany(fulfil, batch.slice(0, 10));
  console.log(`the same keys again: ${again.every((h, i) => h.id === handles[i]!.id) ? 'the same runs' : 'new runs'}`);

  // 2. The worker runs them.
  await worker.start();
  const outputs = await Promise.all(handles.map((h) => h.result({ timeout: '60s' })));
  console.log(`completed ${outputs.length}; first: ${outputs[0]}; last: ${outputs.at(-1)}`);

  // 3. One bad item: nothing of the batch starts.
  const before = (await pool.query<{ n: number }>('select count(*)::int as n from trellis.runs')).rows[0]!.n;
  try {
    await client.startMany(fulfil, [{ input: { order: 'ord-x', items: 1 } }, { input: { order: 'ord-y', items: 0 } }]);
  } catch (error) {
    console.log(`refused: ${error instanceof ValidationError ? 'ValidationError' : String(error)}: ${(error as Error).message.split('\n')[0]!.slice(0, 40)}`);
  }
  const after = (await pool.query<{ n: number }>('select count(*)::int as n from trellis.runs')).rows[0]!.n;
  console.log(`runs started by the refused batch: ${after - before}`);
} finally {
  await worker.stop();
  await client.close();
  await pool.end();
  await database.stop();
}
