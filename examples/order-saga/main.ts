/**
 * An order saga: reserve-inventory → charge-payment → ship. Each step that
 * succeeds pushes its compensation; when a later step fails for good (here
 * ship throws NonRetryableError for an invalid address) the compensations
 * run in reverse order — refund-payment, then release-inventory — inside
 * `ctx.nonCancellable`, so a cancellation arriving meanwhile cannot leave the
 * customer charged for goods that are still reserved.
 *
 * Outcome choice: a compensated order *completes* with status 'compensated'
 * instead of failing the run. The saga handled the failure fully, so there is
 * nothing for an operator to do, and failed runs are what operators list and
 * `client.retry`: retrying this one would run ship again with refund and
 * release already in its history. If a compensation itself fails for good,
 * its StepFailedError propagates and the run *does* fail: that needs a human.
 *
 *   npx tsx examples/order-saga/main.ts
 * Uses DATABASE_URL when set, else an embedded PostgreSQL.
 */
import pg from 'pg';
import { z } from 'zod';
import { createClient, createWorker, defineWorkflow, NonRetryableError } from '../../src/index.ts';
import { exampleDatabase } from '../support/database.ts';

// Stand-ins for the inventory and payment services.
const stock: Record<string, number> = { 'sku-kettle': 5 };
const charged = new Map<string, number>();

const orderSaga = defineWorkflow(
  {
    name: 'order-saga',
    input: z.object({ orderId: z.string(), sku: z.string(), qty: z.number().int().positive(), amount: z.number(), address: z.string() }),
  },
  async (ctx, order) => {
    const compensations: (() => Promise<unknown>)[] = [];
    try {
      const reservation = await ctx.step('reserve-inventory', () => {
        if ((stock[order.sku] ?? 0) < order.qty) throw new NonRetryableError(`${order.sku} is out of stock`);
        stock[order.sku] = (stock[order.sku] ?? 0) - order.qty;
        return { reservationId: `res-${order.orderId}` };
      });
      compensations.push(() => ctx.step('release-inventory', () => {
        stock[order.sku] = (stock[order.sku] ?? 0) + order.qty;
        return { released: reservation.reservationId };
      }));

      // The idempotency key is stable across retries: pass it to the payment
      // provider so a retried charge is not charged twice.
      const charge = await ctx.step('charge-payment', ({ idempotencyKey }) => {
        charged.set(order.orderId, order.amount);
        return { chargeId: `ch-${idempotencyKey}` };
      });
      compensations.push(() => ctx.step('refund-payment', () => {
        charged.delete(order.orderId);
        return { refunded: charge.chargeId };
      }));

      const shipment = await ctx.step('ship', () => {
        if (!/\d{5}/.test(order.address)) throw new NonRetryableError(`address invalid: ${JSON.stringify(order.address)} has no postcode`);
        return { tracking: `TRK-${order.orderId}` };
      });
      return { orderId: order.orderId, status: 'shipped' as const, tracking: shipment.tracking };
    } catch (error) {
      await ctx.nonCancellable(async () => {
        for (const compensate of compensations.reverse()) await compensate();
      });
      return { orderId: order.orderId, status: 'compensated' as const, reason: (error as Error).message };
    }
  },
);

const database = await exampleDatabase();
const pool = new pg.Pool({ connectionString: database.url });
pool.on('error', () => undefined); // idle connections closed by a stopping server
const worker = createWorker({ pool, workflows: [orderSaga] });
const client = createClient({ pool });
try {
  await worker.start();
  const good = await client.start(orderSaga, { orderId: 'ord-1', sku: 'sku-kettle', qty: 2, amount: 59.9, address: '1 Main St, 10115 Berlin' });
  const bad = await client.start(orderSaga, { orderId: 'ord-2', sku: 'sku-kettle', qty: 1, amount: 29.95, address: 'somewhere nice' });
  console.log(`ord-1: ${JSON.stringify(await good.result({ timeout: '30s' }))}`);
  console.log(`ord-2: ${JSON.stringify(await bad.result({ timeout: '30s' }))}`);
  console.log(`stock of sku-kettle: ${stock['sku-kettle']} (5 - 2 shipped; ord-2's unit released)`);
  console.log(`open charges: ${[...charged.values()].join(', ')} (ord-2 refunded)`);

  for (const [name, run] of [['ord-1', good], ['ord-2', bad]] as const) {
    console.log(`history of ${name} (${(await client.get(run.id))?.status}):`);
    for (const s of await client.history(run.id)) {
      const detail = s.status === 'failed' ? (s.error as { message?: string | undefined }).message : JSON.stringify(s.output);
      console.log(`  ${s.seq} ${s.name}: ${s.status} ${detail}`);
    }
  }
} finally {
  await worker.stop();
  await client.close();
  await pool.end();
  await database.stop();
}
