/**
 * Forking a run (docs/workflows.md#forking-a-run):
 * 1. Version 1 of an invoice workflow fetches an order (call 0), prices it
 *    with a wrong tax rate (call 1) and sends the invoice (call 2). The run
 *    completes, with the wrong total.
 * 2. Version 2 fixes the tax. The run is forked from call 1 onto version 2:
 *    the order is not fetched again (its recorded result is kept), the tax
 *    and the sending run again, and the fork names the original.
 * 3. The same from SQL: trellis.run_fork with a key, so the fork is made
 *    once (a second call returns the same run).
 *
 *   npx tsx examples/fork/main.ts
 * Uses DATABASE_URL when set, else an embedded PostgreSQL.
 */
import pg from 'pg';
import { z } from 'zod';
import { createClient, createWorker, defineWorkflow } from '../../src/index.ts';
import { exampleDatabase } from '../support/database.ts';

const fetched: string[] = [];
const input = z.object({ order: z.string() });
const fetchOrder = (order: string) => {
  fetched.push(order);
  return { order, net: 100 };
};

const invoiceV1 = defineWorkflow({ name: 'invoice', version: '1', input }, async (ctx, { order }) => {
  const o = await ctx.step('fetch-order', () => fetchOrder(order));
  const total = await ctx.step('price', () => o.net * 1.9); // bug: 90% tax
  return ctx.step('send', () => `invoice ${order}: ${total.toFixed(2)}`);
});
const invoiceV2 = defineWorkflow({ name: 'invoice', version: '2', input }, async (ctx, { order }) => {
  const o = await ctx.step('fetch-order', () => fetchOrder(order));
  const total = await ctx.step('price', () => o.net * 1.19); // fixed: 19% tax
  return ctx.step('send', () => `invoice ${order}: ${total.toFixed(2)}`);
});

const database = await exampleDatabase();
const pool = new pg.Pool({ connectionString: database.url });
pool.on('error', () => undefined); // idle connections closed by a stopping server
const worker = createWorker({ pool, workflows: [invoiceV1, invoiceV2] });
const client = createClient({ pool });
try {
  await worker.start();

  // 1. The run with the bug.
  const first = await client.start(invoiceV1, { order: 'o-17' });
  console.log(`original: ${await first.result({ timeout: '20s' })}`);
  const calls = await client.history(first.id);
  console.log(`original calls: ${calls.map((c) => `${c.seq} ${c.name}`).join(', ')}`);

  // 2. Fork from the price call onto the fixed version.
  const priceCall = calls.find((c) => c.name === 'price')!.seq;
  const fork = await client.fork(first.id, { fromCall: priceCall, version: '2' });
  console.log(`fork: ${await fork.result({ timeout: '20s' })}`);
  const forked = await client.get(fork.id);
  console.log(`fork: version ${forked!.version}, forked from the original at call ${forked!.forkedFrom!.fromCall}: ${forked!.forkedFrom!.runId === first.id}`);
  console.log(`orders fetched: ${fetched.length} (the fork kept the recorded fetch)`);

  // 3. From SQL, made once by its key.
  const sqlFork = `select trellis.run_fork($1, $2, '{"version": "2", "key": "resend-o-17"}') as id`;
  const { rows: [a] } = await pool.query<{ id: string }>(sqlFork, [first.id, priceCall]);
  const { rows: [b] } = await pool.query<{ id: string }>(sqlFork, [first.id, priceCall]);
  console.log(`sql fork: ${await client.result(a!.id, { timeout: '20s' })}; made once: ${a!.id === b!.id}`);
} finally {
  await worker.stop();
  await client.close();
  await pool.end();
  await database.stop();
}
