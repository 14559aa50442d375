/**
 * Waiting for another run (docs/workflows.md#waiting-for-another-run):
 * 1. A checkout handler starts a payment run; a fulfilment run started
 *    separately gets the payment's run id and waits for it with
 *    ctx.waitForRun, holding no worker, and ships once it ends.
 * 2. Three report runs wait for one nightly import: its end wakes all three.
 * 3. A failed payment is thrown into the waiter as ChildFailedError, and an
 *    id no run has fails with code not_found.
 * 4. A time limit: ctx.race with a sleep (2 seconds here, a day by default),
 *    or the wait's own timeout option, which throws TimeoutError.
 *
 *   npx tsx examples/wait-for-run/main.ts
 * Uses DATABASE_URL when set, else an embedded PostgreSQL.
 */
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { z } from 'zod';
import { ChildFailedError, createClient, createWorker, defineSignal, defineWorkflow, type Duration, TimeoutError } from '../../src/index.ts';
import { exampleDatabase } from '../support/database.ts';

const settled = defineSignal('settled', z.object({ ok: z.boolean() }));

/** A payment that settles when the payment provider says so (a signal). */
const payment = defineWorkflow({ name: 'payment', input: z.object({ order: z.string() }), signals: [settled], retry: { maxAttempts: 1 } },
  async (ctx, { order }) => {
    const answer = await ctx.waitForSignal(settled);
    if (answer.timedOut || !answer.payload.ok) throw new Error(`card declined for ${order}`);
    return ctx.step('receipt', () => ({ receipt: `rcpt-${order}` }));
  });

/** Fulfilment waits for the payment run it was given, at most a day. */
const fulfil = defineWorkflow({ name: 'fulfil', input: z.object({ order: z.string(), paymentRunId: z.string(), limit: z.string().default('1 day') }) },
  async (ctx, { order, paymentRunId, limit }) => {
    try {
      const r = await ctx.race({
        paid: ctx.waitForRun<{ receipt: string }>(paymentRunId, { name: 'payment' }),
        late: ctx.sleep('pay-limit', limit as Duration),
      });
      if (r.key === 'late') return `${order}: payment timed out`;
      return ctx.step('ship', () => `${order}: shipped with ${(r.value as { receipt: string }).receipt}`);
    } catch (error) {
      if (!(error instanceof ChildFailedError)) throw error;
      const code = (error.details.error as { code?: string } | null)?.code;
      return `${order}: not shipped (${code === 'not_found' ? 'no such payment' : error.message})`;
    }
  });

/** An audit that gives a payment 2 seconds, with the wait's own timeout. */
const audit = defineWorkflow({ name: 'audit', input: z.object({ paymentRunId: z.string() }) }, async (ctx, { paymentRunId }) => {
  try {
    await ctx.waitForRun(paymentRunId, { name: 'payment', timeout: '2 seconds' });
    return 'settled in time';
  } catch (error) {
    if (error instanceof TimeoutError) return 'not settled within 2 seconds';
    throw error;
  }
});

const importRun = defineWorkflow({ name: 'nightly-import', input: z.object({ day: z.string() }) }, async (ctx, { day }) => {
  await ctx.sleep('load', '1 second');
  return ctx.step('count', () => ({ day, rows: 1200 }));
});
const report = defineWorkflow({ name: 'report', input: z.object({ kind: z.string(), importRunId: z.string() }) },
  async (ctx, { kind, importRunId }) => {
    const loaded = await ctx.waitForRun<{ rows: number }>(importRunId, { name: 'import' });
    return `${kind} report over ${loaded.rows} rows`;
  });

const database = await exampleDatabase();
const pool = new pg.Pool({ connectionString: database.url });
pool.on('error', () => undefined); // idle connections closed by a stopping server
const worker = createWorker({ pool, workflows: [payment, fulfil, importRun, report, audit] });
const client = createClient({ pool });
const parked = async (id: string) => {
  for (let i = 0; i < 400; i++) {
    if ((await client.get(id))?.status === 'waiting') return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`run ${id} did not park within 20 s`);
};
try {
  await worker.start();

  // 1. Payment, then fulfilment waiting for it.
  const pay = await client.start(payment, { order: 'A-1' });
  const ship = await client.start(fulfil, { order: 'A-1', paymentRunId: pay.id });
  await parked(ship.id);
  const { rows: [watch] } = await pool.query<{ n: number }>('select count(*)::int as n from trellis.run_watches where run_id = $1', [pay.id]);
  console.log(`fulfil: ${(await client.get(ship.id))!.status}, holding no worker; ${watch!.n} row in trellis.run_watches`);
  await client.signal(pay.id, settled, { ok: true });
  console.log(`fulfil: ${await ship.result({ timeout: '20s' })}`);

  // 2. Three reports wait for one import.
  const imp = await client.start(importRun, { day: '2026-12-06' });
  const reports = await Promise.all(['sales', 'stock', 'returns'].map((kind) => client.start(report, { kind, importRunId: imp.id })));
  for (const r of reports) console.log(`report: ${await r.result({ timeout: '20s' })}`);

  // 3. A declined payment, and a payment id no run has.
  const declined = await client.start(payment, { order: 'B-2' });
  const shipB = await client.start(fulfil, { order: 'B-2', paymentRunId: declined.id });
  await parked(shipB.id);
  await client.signal(declined.id, settled, { ok: false });
  console.log(`failure: ${await shipB.result({ timeout: '20s' })}`);
  const ghost = await client.start(fulfil, { order: 'C-3', paymentRunId: randomUUID() });
  console.log(`failure: ${await ghost.result({ timeout: '20s' })}`);

  // 4. A payment that never settles, with a limit of 2 seconds here.
  const stuck = await client.start(payment, { order: 'D-4' });
  const shipD = await client.start(fulfil, { order: 'D-4', paymentRunId: stuck.id, limit: '2 seconds' });
  const auditD = await client.start(audit, { paymentRunId: stuck.id });
  console.log(`limit: ${await shipD.result({ timeout: '20s' })}`);
  console.log(`limit: audit ${await auditD.result({ timeout: '20s' })}`);
  await client.cancel(stuck.id, 'order abandoned');
} finally {
  await worker.stop();
  await client.close();
  await pool.end();
  await database.stop();
}
