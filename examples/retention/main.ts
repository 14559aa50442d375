/**
 * Retention: finished runs are kept for a set time after they finish, then
 * the workers purge them with their steps and signals.
 * 1. `client.setRetention('2 seconds', { workflow })` for the receipts and
 *    invoices (in production: days). The worker's purge loop (here every
 *    200 ms; default 5 s) deletes the three finished receipts about 2 s
 *    after they finished; the invoice still waiting for a signal is kept
 *    however old it is, and the audit log (7 years) outlives them.
 *    `client.setRetention('30 days')` without a workflow sets the default for
 *    every workflow of the database — other applications' too, so this
 *    example, which may run on a shared DATABASE_URL, sets only its own.
 * 2. A purge on demand from TS (`client.purge`) for one workflow, and the same
 *    from plain SQL (`trellis.run_purge`), e.g. from pg_cron.
 * 3. A customer asks to be forgotten: `client.scrub` removes one finished
 *    run's payloads (input, output, step results) and keeps its skeleton.
 *
 *   npx tsx examples/retention/main.ts
 * Uses DATABASE_URL when set, else an embedded PostgreSQL.
 */
import pg from 'pg';
import { z } from 'zod';
import { createClient, createWorker, defineSignal, defineWorkflow } from '../../src/index.ts';
import { exampleDatabase } from '../support/database.ts';

const paid = defineSignal('paid', z.object({ amount: z.number() }));

const receipt = defineWorkflow({ name: 'send-receipt', input: z.object({ order: z.string() }) }, async (ctx, { order }) =>
  ctx.step('email', () => `receipt for ${order} sent`));

const invoice = defineWorkflow({ name: 'await-payment', input: z.object({ order: z.string() }) }, async (ctx, { order }) => {
  const payment = await ctx.waitForSignal(paid);
  if (payment.timedOut) throw new Error('no timeout was set, so this cannot happen');
  return `${order} paid ${payment.payload.amount}`;
});

const audit = defineWorkflow({ name: 'audit-log', input: z.object({ entry: z.string() }) }, async (ctx, { entry }) =>
  ctx.step('write', () => entry.length));

const database = await exampleDatabase();
const pool = new pg.Pool({ connectionString: database.url });
const worker = createWorker({ pool, workflows: [receipt, invoice, audit], purge: { interval: '200ms' } });
const client = createClient({ pool });
try {
  await worker.start();
  await client.setRetention('2 seconds', { workflow: receipt });
  await client.setRetention('2 seconds', { workflow: invoice });
  await client.setRetention('7 years', { workflow: audit }); // a year is 365.25 days, as in PostgreSQL
  console.log(`retention: send-receipt ${await client.retention({ workflow: receipt })} ms, audit-log: ${await client.retention({ workflow: audit })} ms`);
  const boot = await client.start(audit, { entry: 'boot' });
  await boot.result();

  const waiting = await client.start(invoice, { order: 'A-7' });
  const receipts = await Promise.all(['A-1', 'A-2', 'A-3'].map((order) => client.start(receipt, { order })));
  for (const r of receipts) console.log(await r.result());
  // The purge compares the database's clock with finished_at, so measure with
  // the same clock (the client's would also count the awaits above).
  const ids = receipts.map((r) => r.id);
  const { rows: [last] } = await pool.query<{ at: Date }>('select max(finished_at) as at from trellis.runs where id = any($1)', [ids]);
  const finishedAt = Date.now();

  // Watch the runs disappear: a finished run is kept for the retention, then purged.
  const present = async (ids: string[]) => (await Promise.all(ids.map((id) => client.get(id)))).filter(Boolean).length;
  console.log(`receipts kept right after finishing: ${await present(ids)}`);
  while ((await present(ids)) > 0) {
    if (Date.now() - finishedAt > 30_000) throw new Error('receipts were not purged within 30 s');
    await new Promise((r) => setTimeout(r, 100));
  }
  const { rows: [gone] } = await pool.query<{ waited: number }>(
    'select extract(epoch from clock_timestamp() - $1::timestamptz) * 1000 as waited', [last!.at]);
  console.log(`receipts purged after ${gone!.waited >= 2000 ? 'at least' : 'less than'} 2 s`);
  console.log(`waiting invoice kept: ${(await client.get(waiting.id))?.status}`);
  console.log(`audit log kept: ${(await client.get(boot.id))?.status}`);

  // Retention off again (the default applies: none, unless one was set), then purges on demand.
  for (const workflow of [receipt, invoice, audit]) await client.setRetention(null, { workflow });
  const logs = await Promise.all(['login', 'logout'].map((entry) => client.start(audit, { entry })));
  for (const l of logs) await l.result();
  console.log(`purged from TS: ${await client.purge({ olderThan: 0, workflow: audit })}`);
  await client.signal(waiting.id, paid, { amount: 42 });
  console.log(await waiting.result());
  const { rows } = await pool.query(`select trellis.run_purge(interval '0', 1000, 'await-payment') as purged`);
  console.log(`purged from SQL: ${rows[0].purged}`);
  const mine = [receipt.name, invoice.name, audit.name];
  console.log(`runs left: ${(await pool.query('select count(*)::int as n from trellis.runs where workflow = any($1)', [mine])).rows[0].n}`);

  // Scrub instead of delete: the run stays countable, its personal data goes.
  const personal = await client.start(receipt, { order: 'ada@example.com' });
  await personal.result();
  await client.scrub(personal.id);
  const scrubbed = await client.get(personal.id);
  const steps = await client.history(personal.id);
  console.log(`scrubbed run: status ${scrubbed?.status}, input ${JSON.stringify(scrubbed?.input)}, output ${JSON.stringify(scrubbed?.output)}, ` +
    `steps ${steps.map((st) => `${st.name}:${st.status}:${JSON.stringify(st.output)}`).join(',')}`);
} finally {
  await worker.stop();
  await client.close();
  await pool.end();
  await database.stop();
}
