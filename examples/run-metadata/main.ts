/**
 * Metadata a run sets as it goes (docs/workflows.md#metadata-a-run-sets-as-it-goes):
 * 1. Three orders, started with their tenant in `metadata`, record their
 *    stage there as they go (ctx.setMetadata): "paid", then, once shipped,
 *    "shipped" and the carrier.
 * 2. Searches on what the runs set: `client.list({ metadata })` and SQL
 *    (`metadata @> ...`, which the index recipe of docs/operations.md
 *    serves).
 * 3. An operator marks one order (client.setMetadata) and a bulk control
 *    cancels the orders still waiting for shipping, found by their stage.
 *
 *   npx tsx examples/run-metadata/main.ts
 * Uses DATABASE_URL when set, else an embedded PostgreSQL.
 */
import pg from 'pg';
import { z } from 'zod';
import { createClient, createWorker, defineSignal, defineWorkflow } from '../../src/index.ts';
import { exampleDatabase } from '../support/database.ts';

const shipped = defineSignal('shipped', z.object({ carrier: z.string() }));

const order = defineWorkflow({ name: 'order', input: z.object({ orderId: z.string(), total: z.number() }) }, async (ctx, { orderId, total }) => {
  await ctx.step('charge', () => `charged ${total} for ${orderId}`);
  await ctx.setMetadata({ stage: 'paid' });
  const got = await ctx.waitForSignal(shipped, { timeout: '7 days' });
  if (got.timedOut) {
    await ctx.setMetadata({ stage: 'lost' });
    return 'lost';
  }
  await ctx.setMetadata({ stage: 'shipped', carrier: got.payload.carrier });
  return `shipped with ${got.payload.carrier}`;
});

/** Poll until `check` holds (bounded: 20 s). */
async function until(what: string, check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

const database = await exampleDatabase();
const pool = new pg.Pool({ connectionString: database.url });
pool.on('error', () => undefined); // idle connections closed by a stopping server
const worker = createWorker({ pool, workflows: [order] });
const client = createClient({ pool });
try {
  await worker.start();
  // 1. Three orders of two tenants.
  const runs = await Promise.all([['o-1', 'acme'], ['o-2', 'acme'], ['o-3', 'globex']].map(([orderId, tenant]) =>
    client.start(order, { orderId: orderId!, total: 10 }, { key: orderId!, metadata: { tenant } })));
  await until('every order to be paid', async () => (await client.list({ workflow: order, metadata: { stage: 'paid' } })).runs.length === 3);
  await client.signal({ workflow: order, key: 'o-1' }, shipped, { carrier: 'dhl' });
  console.log(`o-1: ${await runs[0]!.result({ timeout: '20s' })}`);
  console.log(`o-1 metadata: ${JSON.stringify((await client.get(runs[0]!.id))?.metadata)}`);

  // 2. Search on what the runs set.
  const waiting = await client.list({ workflow: order, metadata: { tenant: 'acme', stage: 'paid' } });
  console.log(`acme, paid, not shipped: ${waiting.runs.map((r) => r.key).join(' ')}`);
  const { rows } = await pool.query<{ key: string; carrier: string }>(
    `select key, metadata->>'carrier' as carrier from trellis.runs where workflow = 'order' and metadata @> '{"stage":"shipped"}'`);
  console.log(`sql, shipped: ${rows.map((r) => `${r.key} by ${r.carrier}`).join(' ')}`);

  // 3. An operator's mark, then a bulk cancel of the orders still waiting.
  console.log(`marked: ${JSON.stringify(await client.setMetadata({ workflow: order, key: 'o-3' }, { escalated: 'OPS-17' }))}`);
  const { changed } = await client.cancelMany({ workflow: order, metadata: { stage: 'paid' } }, { reason: 'warehouse closed' });
  console.log(`cancelled: ${changed.length} orders`);
} finally {
  await worker.stop();
  await client.close();
  await pool.end();
  await database.stop();
}
