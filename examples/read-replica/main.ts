/**
 * Reads from a streaming standby, writes and results from the primary.
 * - `readPool` (a pool or a connection string) serves list, get, history,
 *   queue stats, events, schedules and roles.
 * - Starts, signals and every other write go to the primary, and so does
 *   `result()`: a run that has finished is never reported unfinished because
 *   the standby is behind.
 * - Read your writes: right after this client's starts, its list reads the
 *   primary until the standby has replayed them; `{ consistency: 'primary' }`
 *   asks for the primary outright.
 *
 *   DATABASE_URL=postgres://app@primary/app TRELLIS_READ_URL=postgres://app@standby/app \
 *     npx tsx examples/read-replica/main.ts
 * Without TRELLIS_READ_URL every read goes to DATABASE_URL (or an embedded PostgreSQL).
 */
import { z } from 'zod';
import { createClient, createWorker, defineWorkflow } from '../../src/index.ts';
import { exampleDatabase } from '../support/database.ts';

const invoice = defineWorkflow({ name: 'send-invoice', input: z.object({ order: z.string() }) }, async (ctx, { order }) => {
  const pdf = await ctx.step('render', () => `invoice-${order}.pdf`);
  return ctx.step('mail', () => `${pdf} mailed`);
});

const database = await exampleDatabase();
const readUrl = process.env.TRELLIS_READ_URL;
const worker = createWorker({ connectionString: database.url, workflows: [invoice] });
const client = createClient({ connectionString: database.url, ...(readUrl ? { readPool: readUrl } : {}) });
try {
  await worker.start();
  const runs = await Promise.all(['A-1', 'A-2', 'A-3'].map((order) => client.start(invoice, { order })));
  for (const run of runs) console.log(await run.result({ timeout: '30s' })); // the primary: never stale
  // This client just wrote: until the standby has replayed the starts, its reads go to the primary.
  const { runs: listed } = await client.list({ workflow: 'send-invoice', status: 'completed', limit: 1000 });
  console.log(`listed ${runs.filter((r) => listed.some((l) => l.id === r.id)).length} of ${runs.length} new runs as completed`);
  const steps = await client.history(runs[0]!.id);
  console.log(`steps of ${runs[0]!.id.slice(0, 8)}: ${steps.map((s) => s.name).join(', ')}`);
  const [queue] = await client.queueStats('default', { consistency: 'primary' });
  console.log(`queue default: ${queue?.pending ?? 0} pending`);
  console.log(readUrl ? 'reads served by the standby (TRELLIS_READ_URL)' : 'no TRELLIS_READ_URL: reads served by the primary');
} finally {
  await worker.stop();
  await client.close();
  await database.stop();
}
