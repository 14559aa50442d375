/**
 * Patching a workflow version under runs in flight
 * (docs/workflows.md#patching-code-under-runs-in-flight):
 * 1. Version 1 of `order` sends an email receipt, then waits for delivery.
 *    Two orders are placed: one is past the receipt, one waits for payment.
 * 2. The patched code (same version) sends an SMS instead, behind
 *    ctx.patched('sms-receipt'). checkReplay finds it compatible with both
 *    runs; deployed, the order past the receipt finishes on the old path,
 *    the one that had not reached it and a new order take the new one.
 * 3. The histories: the runs that took the patch hold a call of kind patch.
 *
 *   npx tsx examples/patching/main.ts
 * Uses DATABASE_URL when set, else an embedded PostgreSQL.
 */
import pg from 'pg';
import { z } from 'zod';
import { createClient, createWorker, defineWorkflow, type Worker, type WorkflowDefinition } from '../../src/index.ts';
import { checkReplay } from '../../src/testing/index.ts';
import { exampleDatabase } from '../support/database.ts';

const input = z.object({ order: z.string() });
const receipts: string[] = [];

const orderV1 = defineWorkflow({ name: 'order', input }, async (ctx, { order }) => {
  await ctx.waitForSignal('paid');
  await ctx.step('email-receipt', () => receipts.push(`email for ${order}`));
  await ctx.waitForSignal('delivered');
  return `${order}: done (email)`;
});

const orderPatched = defineWorkflow({ name: 'order', input }, async (ctx, { order }) => {
  await ctx.waitForSignal('paid');
  const sms = ctx.patched('sms-receipt');
  if (sms) await ctx.step('sms-receipt', () => receipts.push(`sms for ${order}`));
  else await ctx.step('email-receipt', () => receipts.push(`email for ${order}`));
  await ctx.waitForSignal('delivered');
  return `${order}: done (${sms ? 'sms' : 'email'})`;
});

const database = await exampleDatabase();
const pool = new pg.Pool({ connectionString: database.url });
pool.on('error', () => undefined); // idle connections closed by a stopping server
const client = createClient({ pool });
let worker: Worker | undefined;
const deploy = async (code: WorkflowDefinition) => {
  await worker?.stop();
  worker = createWorker({ pool, workflows: [code] });
  await worker.start();
};
/** Wait until the run is parked with `n` calls in its history. */
const parked = async (id: string, n: number) => {
  for (let i = 0; i < 400; i++) {
    const { rows: [r] } = await pool.query<{ status: string; n: number }>(
      'select status, (select count(*)::int from trellis.steps s where s.run_id = r.id) as n from trellis.runs r where id = $1', [id]);
    if (r?.status === 'waiting' && r.n === n) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`run ${id} did not park within 20 s`);
};
try {
  // 1. Version 1.
  await deploy(orderV1);
  const shipped = await client.start(orderV1, { order: 'A-1' });
  const unpaid = await client.start(orderV1, { order: 'B-2' });
  await parked(shipped.id, 1);
  await client.signal(shipped.id, 'paid', {});
  await parked(shipped.id, 3);
  await parked(unpaid.id, 1);
  console.log(`v1: receipts ${JSON.stringify(receipts)}`);

  // 2. The patch, checked against the runs in flight, then deployed.
  const report = await checkReplay(pool, orderPatched);
  console.log(`check: ${report.filter((r) => r.ok).length} of ${report.length} runs replay through the patched code`);
  await deploy(orderPatched);
  const fresh = await client.start(orderPatched, { order: 'C-3' });
  for (const run of [unpaid, fresh]) {
    await parked(run.id, 1);
    await client.signal(run.id, 'paid', {});
  }
  for (const run of [shipped, unpaid, fresh]) {
    if (run !== shipped) await parked(run.id, 4);
    await client.signal(run.id, 'delivered', {});
    console.log(`patched: ${await run.result({ timeout: '20s' })}`);
  }
  console.log(`patched: receipts ${JSON.stringify(receipts)}`);

  // 3. The histories.
  for (const run of [shipped, unpaid]) {
    const { rows } = await pool.query<{ call: string }>(`select kind || ' ' || name as call from trellis.steps where run_id = $1 order by seq`, [run.id]);
    console.log(`history: ${rows.map((r) => r.call).join(', ')}`);
  }
} finally {
  await worker?.stop();
  await client.close();
  await pool.end();
  await database.stop();
}
