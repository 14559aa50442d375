/**
 * Acting on many runs at once (docs/operations.md#acting-on-many-runs-at-once):
 * 1. A parser bug fails 20 imports. The fix is deployed (here: a flag), and
 *    `client.retryMany` runs every failed import again from its failed step
 *    (after a dry run that lists them and changes nothing).
 * 2. A partner is down: `pauseMany` parks the 5 runs waiting to call it,
 *    `resumeMany` lets them go on once it is back.
 * 3. A batch was wrong: `cancelMany` cancels its runs with a reason.
 * 4. The same from SQL: `trellis.run_retry_many` (nothing left to retry).
 *
 *   npx tsx examples/bulk-control/main.ts
 * Uses DATABASE_URL when set, else an embedded PostgreSQL.
 */
import pg from 'pg';
import { z } from 'zod';
import { CancelledError, createClient, createWorker, defineSignal, defineWorkflow, silentLogger } from '../../src/index.ts';
import { exampleDatabase } from '../support/database.ts';

let parserFixed = false;
const importRow = defineWorkflow({ name: 'import-row', input: z.object({ row: z.number() }) }, async (ctx, { row }) => {
  const parsed = await ctx.step('parse', () => {
    if (!parserFixed && row % 2 === 0) throw new Error(`row ${row}: unexpected quote`);
    return { row, ok: true };
  }, { retry: { maxAttempts: 1 } });
  return ctx.step('store', () => parsed.row);
});

const go = defineSignal('go', z.object({}));
const partnerCall = defineWorkflow({ name: 'partner-call', input: z.object({ n: z.number() }), signals: [go] },
  async (ctx, { n }) => {
    await ctx.waitForSignal(go);
    return ctx.step('call-partner', () => `called partner for ${n}`);
  });

const database = await exampleDatabase();
const pool = new pg.Pool({ connectionString: database.url });
pool.on('error', () => undefined); // idle connections closed by a stopping server
// Quiet: the 20 failures of part 1 would each log a warning.
const worker = createWorker({ pool, workflows: [importRow, partnerCall], queues: ['default', 'partner'], logger: silentLogger });
const client = createClient({ pool });
const settle = async (ids: string[]) => Promise.allSettled(ids.map((id) => client.result(id, { timeout: '20s' })));
try {
  await worker.start();

  // 1. A bug fails half the imports; retry them after the fix.
  const imports = await client.startMany(importRow, Array.from({ length: 40 }, (_, i) => ({ input: { row: i + 1 } })));
  const first = await settle(imports.map((h) => h.id));
  console.log(`imports: ${first.filter((r) => r.status === 'rejected').length} of 40 failed`);
  parserFixed = true;
  // A dry run first: what would be retried (nothing changes).
  const preview = await client.retryMany({ workflow: importRow, status: 'failed' }, { dryRun: true });
  console.log(`imports: a dry run would retry ${preview.changed.length}`);
  const retried = await client.retryMany({ workflow: importRow, status: 'failed' }, { batchSize: 8 });
  const second = await settle(retried.changed);
  console.log(`imports: ${retried.changed.length} retried, ${second.filter((r) => r.status === 'fulfilled').length} completed`);

  // 2. Pause the runs that call a partner, then resume them.
  const calls = [];
  for (let n = 1; n <= 5; n++) calls.push(await client.start(partnerCall, { n }, { queue: 'partner' }));
  // Each waits for its signal (bounded: 20 s).
  const until = Date.now() + 20_000;
  for (const c of calls) {
    while ((await client.get(c.id))?.status !== 'waiting') {
      if (Date.now() > until) throw new Error(`run ${c.id} never began to wait`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }
  const paused = await client.pauseMany({ queue: 'partner' }, { reason: 'partner outage' });
  console.log(`partner: ${paused.changed.length} paused`);
  const resumed = await client.resumeMany({ queue: 'partner', status: 'paused' });
  console.log(`partner: ${resumed.changed.length} resumed`);
  for (const c of calls.slice(0, 2)) await client.signal(c.id, go, {});
  const done = await settle(calls.slice(0, 2).map((c) => c.id));
  console.log(`partner: ${done.filter((r) => r.status === 'fulfilled').length} called after the resume`);

  // 3. Cancel the rest with a reason.
  const cancelled = await client.cancelMany({ workflow: partnerCall, status: ['waiting', 'pending'] }, { reason: 'wrong batch' });
  const ends = await settle(calls.slice(2).map((c) => c.id));
  console.log(`cancelled: ${cancelled.changed.length}; results ${ends.every((r) => r.status === 'rejected' && r.reason instanceof CancelledError) ? 'all CancelledError' : 'not all cancelled'}`);

  // 4. From SQL.
  const { rows: [sqlRetry] } = await pool.query<{ n: number }>(
    `select count(*)::int as n from trellis.run_retry_many('{"workflow": "import-row", "status": "failed"}')`);
  console.log(`sql: ${sqlRetry!.n} failed imports left to retry`);
} finally {
  await worker.stop();
  await client.close();
  await pool.end();
  await database.stop();
}
