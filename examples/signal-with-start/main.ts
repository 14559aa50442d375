/**
 * Signal with start (docs/workflows.md#signal-with-start-one-run-per-entity-fed-by-messages):
 * 1. Messages about a customer's cart arrive from a queue, in any order and
 *    some twice. Each is handed to client.signalWithStart with the cart's
 *    key and the message's id: the first starts the cart run, the rest
 *    reach it, a repeat is dropped. Checkout ends the run.
 * 2. A message redelivered after checkout is dropped (its id was received);
 *    a new message starts the customer's next cart, and the old run keeps
 *    the key as formerKey.
 * 3. Ten senders at once for a new cart: one run is started, all ten
 *    messages reach it.
 * 4. The same from SQL: trellis.signal_with_start.
 *
 *   npx tsx examples/signal-with-start/main.ts
 * Uses DATABASE_URL when set, else an embedded PostgreSQL.
 */
import pg from 'pg';
import { z } from 'zod';
import { createClient, createWorker, defineSignal, defineWorkflow, type SignalPayload } from '../../src/index.ts';
import { exampleDatabase } from '../support/database.ts';

const cartMessage = defineSignal('cart-message', z.discriminatedUnion('type', [
  z.object({ type: z.literal('add'), sku: z.string(), qty: z.number().int().positive() }),
  z.object({ type: z.literal('checkout') }),
]));

/** One run per cart: adds items until checkout, then places the order. */
const cart = defineWorkflow({ name: 'cart', input: z.object({ customer: z.string() }), signals: [cartMessage] },
  async (ctx, { customer }) => {
    const items = new Map<string, number>();
    for (;;) {
      const message = await ctx.waitForSignal(cartMessage);
      if (message.timedOut) continue; // no timeout given: never
      if (message.payload.type === 'checkout') break;
      items.set(message.payload.sku, (items.get(message.payload.sku) ?? 0) + message.payload.qty);
    }
    const lines = [...items].map(([sku, qty]) => `${qty} x ${sku}`);
    return ctx.step('place-order', () => `order for ${customer}: ${lines.join(', ') || 'nothing'}`);
  });

const database = await exampleDatabase();
const pool = new pg.Pool({ connectionString: database.url });
pool.on('error', () => undefined); // idle connections closed by a stopping server
const worker = createWorker({ pool, workflows: [cart] });
const client = createClient({ pool });
type Message = { id: string; customer: string; body: SignalPayload<typeof cartMessage> };
/** What a queue consumer does with each message: no lookup, no race with the run's end. */
const deliver = (m: Message) =>
  client.signalWithStart(cart, { customer: m.customer }, cartMessage, m.body, { key: `cart-${m.customer}`, signalId: m.id });
try {
  await worker.start();

  // 1. The first message starts the cart; a repeat (m-2 twice) is dropped.
  const inbox: Message[] = [
    { id: 'm-1', customer: 'ada', body: { type: 'add', sku: 'tea', qty: 2 } },
    { id: 'm-2', customer: 'ada', body: { type: 'add', sku: 'mug', qty: 1 } },
    { id: 'm-2', customer: 'ada', body: { type: 'add', sku: 'mug', qty: 1 } },
    { id: 'm-3', customer: 'ada', body: { type: 'add', sku: 'tea', qty: 1 } },
    { id: 'm-4', customer: 'ada', body: { type: 'checkout' } },
  ];
  let run;
  for (const m of inbox) {
    run = await deliver(m);
    console.log(`cart: ${m.id} ${run.started ? 'started the cart run' : run.delivered ? 'reached the cart run' : 'dropped (a repeat)'}`);
  }
  console.log(`cart: ${await run!.result({ timeout: '20s' })}`);

  // 2. A late repeat after checkout, then the customer's next cart.
  const late = await deliver({ id: 'm-4', customer: 'ada', body: { type: 'checkout' } });
  console.log(`after: m-4 again ${late.started ? 'started a run' : 'started nothing'} (delivered: ${late.delivered})`);
  const next = await deliver({ id: 'm-5', customer: 'ada', body: { type: 'add', sku: 'pot', qty: 1 } });
  console.log(`after: m-5 ${next.started ? 'started the next cart run' : 'reached a run'}; the first run's formerKey is ${(await client.get(run!.id))!.formerKey}`);
  await deliver({ id: 'm-6', customer: 'ada', body: { type: 'checkout' } });
  console.log(`after: ${await next.result({ timeout: '20s' })}`);

  // 3. Ten senders at once for a new cart.
  const burst = await Promise.all(Array.from({ length: 10 }, (_, i) =>
    deliver({ id: `b-${i}`, customer: 'bo', body: { type: 'add', sku: 'pen', qty: 1 } })));
  console.log(`burst: ${burst.filter((b) => b.started).length} run started, ${new Set(burst.map((b) => b.id)).size} run signalled, ${burst.filter((b) => b.delivered).length} messages delivered`);
  await deliver({ id: 'b-checkout', customer: 'bo', body: { type: 'checkout' } });
  console.log(`burst: ${await burst[0]!.result({ timeout: '20s' })}`);

  // 4. From SQL (a trigger, another service, psql).
  const sql = `select run_id, started, delivered from trellis.signal_with_start('cart', $1, $2, 'cart-message', $3)`;
  const first = (await pool.query(sql, ['{"customer":"cy"}', '{"key":"cart-cy"}', '{"type":"add","sku":"ink","qty":3}'])).rows[0];
  const checkout = (await pool.query(sql, ['{"customer":"cy"}', '{"key":"cart-cy"}', '{"type":"checkout"}'])).rows[0];
  console.log(`sql: started ${first.started}, then started ${checkout.started} (same run: ${first.run_id === checkout.run_id})`);
  console.log(`sql: ${await client.result(first.run_id, { timeout: '20s' })}`);
} finally {
  await worker.stop();
  await client.close();
  await pool.end();
  await database.stop();
}
