/**
 * A run publishes values while it goes on (ctx.setValue, client.waitForValue):
 * 1. A checkout run creates a payment session and publishes its URL, then
 *    waits for the payment. The HTTP handler that started it (here: plain
 *    code) waits for the URL, not for the run, and answers at once.
 * 2. The payment provider's callback signals the run; the run publishes its
 *    state as it moves on, and anyone can read the values: the client, or
 *    plain SQL (trellis.run_values).
 * 3. A run that ends without a value settles the wait as NotFoundError.
 *
 *   npx tsx examples/payment-link/main.ts
 * Uses DATABASE_URL when set, else an embedded PostgreSQL.
 */
import pg from 'pg';
import { z } from 'zod';
import { createClient, createWorker, defineSignal, defineWorkflow, NotFoundError } from '../../src/index.ts';
import { exampleDatabase } from '../support/database.ts';

const paid = defineSignal('paid', z.object({ amount: z.number() }));

const checkout = defineWorkflow({ name: 'checkout', input: z.object({ order: z.string(), amount: z.number() }) },
  async (ctx, { order, amount }) => {
    const session = await ctx.step('create-session', () => ({ id: `cs_${order}`, url: `https://pay.example/session/cs_${order}` }));
    await ctx.setValue('payment-url', session.url);
    await ctx.setValue('state', 'awaiting payment');
    const payment = await ctx.waitForSignal(paid, { timeout: '1 day' });
    if (payment.timedOut || payment.payload.amount !== amount) {
      await ctx.setValue('state', 'expired');
      return 'expired';
    }
    await ctx.setValue('state', 'paid');
    await ctx.step('ship', () => `${order} shipped`);
    await ctx.setValue('state', 'shipped');
    return 'shipped';
  });

const database = await exampleDatabase();
const pool = new pg.Pool({ connectionString: database.url });
pool.on('error', () => undefined); // idle connections closed by a stopping server
const client = createClient({ pool });
const worker = createWorker({ pool, workflows: [checkout] });
try {
  await worker.start();

  // 1. The handler starts the run and answers with the URL as soon as the run publishes it.
  const run = await client.start(checkout, { order: 'o-1001', amount: 42 }, { key: 'checkout:o-1001' });
  const url = await client.waitForValue<string>(run.id, 'payment-url', { timeout: '30s' });
  console.log(`pay at: ${url}`);
  const status = (await client.get(run.id))?.status;
  console.log(`run finished before the payment: ${status === 'running' || status === 'waiting' ? 'no' : 'yes'}`);

  // 2. The provider's callback; the state moves on.
  await client.signal(run.id, paid, { amount: 42 });
  console.log(`result: ${await run.result({ timeout: '30s' })}`);
  console.log(`state: ${(await client.value(run.id, 'state'))?.value}`);
  const { rows } = await pool.query('select key, value from trellis.run_values($1) order by key', [run.id]);
  console.log(`from SQL: ${rows.map((r) => `${r.key}=${JSON.stringify(r.value)}`).join(' ')}`);

  // 3. A key the run never sets.
  try {
    await client.waitForValue(run.id, 'refund-id', { timeout: '30s' });
  } catch (error) {
    console.log(`refund-id: ${error instanceof NotFoundError ? 'NotFoundError' : String(error)}: ${(error as Error).message.replace(run.id, '<run>')}`);
  }
} finally {
  await worker.stop();
  await client.close();
  await pool.end();
  await database.stop();
}
