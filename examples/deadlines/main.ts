/**
 * Run deadlines (docs/workflows.md#deadlines):
 * 1. A checkout waits for its payment with a time limit of one second. The
 *    payment never comes: the run is cancelled when its deadline passes, its
 *    cleanup (releasing the reserved stock) runs inside `ctx.nonCancellable`,
 *    and `result()` throws CancelledError with the deadline in the reason.
 * 2. A checkout paid in time completes; its deadline does nothing but tell
 *    the code (`ctx.deadline`) how long it had left.
 * 3. A quote asks a slow supplier as a child with a time limit and falls back
 *    to a list price when the child is cancelled for its deadline.
 * 4. The same option from SQL: run_start's time_limit, read back from
 *    trellis.runs.deadline_at.
 *
 *   npx tsx examples/deadlines/main.ts
 * Uses DATABASE_URL when set, else an embedded PostgreSQL.
 */
import pg from 'pg';
import { z } from 'zod';
import { CancelledError, ChildFailedError, createClient, createWorker, defineSignal, defineWorkflow } from '../../src/index.ts';
import { exampleDatabase } from '../support/database.ts';

const paid = defineSignal('paid', z.object({ amount: z.number() }));
const released: string[] = [];

const checkout = defineWorkflow(
  { name: 'checkout', input: z.object({ cart: z.string() }), signals: [paid] },
  async (ctx, { cart }) => {
    await ctx.step('reserve-stock', () => `reserved ${cart}`);
    try {
      const payment = await ctx.waitForSignal(paid); // no timeout of its own: the run's deadline bounds it
      if (payment.timedOut) throw new Error('unreachable: the wait has no timeout');
      // ctx.deadline: what is left of the run's time limit (engine time, as ctx.now() is).
      const left = ctx.deadline ? Math.round((ctx.deadline.getTime() - ctx.now().getTime()) / 60_000) : null;
      return ctx.step('ship', () => `shipped ${cart} for ${payment.payload.amount} with ${left ?? 'no'} minutes left`);
    } catch (error) {
      if (ctx.cancelled) {
        await ctx.nonCancellable(() => ctx.step('release-stock', () => {
          released.push(cart);
          return `released ${cart}`;
        }));
      }
      throw error;
    }
  },
);

const supplierQuote = defineWorkflow({ name: 'supplier-quote', input: z.object({ sku: z.string() }) }, async (ctx, { sku }) => {
  await ctx.sleep('supplier-is-slow', '1 hour');
  return ctx.step('ask-supplier', () => ({ sku, price: 9.5 }));
});
const quote = defineWorkflow({ name: 'quote', input: z.object({ sku: z.string() }) }, async (ctx, { sku }) => {
  try {
    return await ctx.child(supplierQuote, { sku }, { timeLimit: '500ms' });
  } catch (error) {
    if (!(error instanceof ChildFailedError)) throw error;
    return ctx.step('list-price', () => ({ sku, price: 12, fallback: error.message }));
  }
});

const database = await exampleDatabase();
const pool = new pg.Pool({ connectionString: database.url });
pool.on('error', () => undefined); // idle connections closed by a stopping server
// Deadlines are looked at every 100 ms here (default: every second).
const worker = createWorker({ pool, workflows: [checkout, supplierQuote, quote], deadlines: { interval: '100ms' } });
const client = createClient({ pool });
try {
  await worker.start();

  // 1. Never paid: cancelled at its deadline.
  const abandoned = await client.start(checkout, { cart: 'cart-1' }, { timeLimit: '1s' });
  const run = await client.get(abandoned.id);
  console.log(`cart-1 deadline: ${run!.deadline!.getTime() - run!.createdAt.getTime()} ms after its start`);
  try {
    await abandoned.result({ timeout: '20s' });
    console.log('cart-1: (unexpectedly completed)');
  } catch (error) {
    const ended = await client.get(abandoned.id);
    console.log(`cart-1 result threw ${error instanceof CancelledError ? 'CancelledError' : String(error)}`);
    console.log(`cart-1: ${ended!.status}, reason: ${(ended!.error as { message: string }).message.replace(/\d{4}-.*Z/, '<time>')}`);
  }
  console.log(`stock released for: ${released.join(', ')}`);

  // 2. Paid in time: completes.
  const paidInTime = await client.start(checkout, { cart: 'cart-2' }, { timeLimit: '1 hour' });
  await client.signal(paidInTime.id, paid, { amount: 42 });
  console.log(`cart-2: ${await paidInTime.result({ timeout: '20s' })}`);

  // 3. A child with a time limit, and a fallback.
  const q = await client.start(quote, { sku: 'kettle' });
  const price = await q.result({ timeout: '20s' });
  console.log(`quote: ${JSON.stringify({ sku: price.sku, price: price.price, fallback: 'fallback' in price })}`);

  // 4. From SQL.
  const { rows: [started] } = await pool.query<{ id: string }>(
    `select trellis.run_start('checkout', '{"cart":"cart-3"}', '{"time_limit":"30 minutes"}') as id`);
  const { rows: [row] } = await pool.query<{ minutes: number }>(
    `select extract(epoch from deadline_at - run_at) / 60 as minutes from trellis.runs where id = $1`, [started!.id]);
  console.log(`sql start: deadline ${Number(row!.minutes)} minutes after its run_at`);
  await client.cancel(started!.id, 'example done');
  await client.result(started!.id, { timeout: '20s' }).catch(() => undefined); // ends cancelled once its worker sees it
} finally {
  await worker.stop();
  await client.close();
  await pool.end();
  await database.stop();
}
