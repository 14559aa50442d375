/**
 * Cancellation, two ways:
 * 1. A run busy in a long step (a paginated export) is cancelled. The step's
 *    AbortSignal fires on its worker and the fetch-like loop stops; the
 *    workflow sees CancelledError, runs its cleanup step inside
 *    `ctx.nonCancellable` (so the cancellation cannot interrupt it), and the
 *    run ends 'cancelled'; `client.result` throws CancelledError.
 * 2. A parent waiting on two sleeping children is cancelled: the
 *    cancellation reaches the children too, and all three end 'cancelled'.
 *
 *   npx tsx examples/cancellation/main.ts
 * Uses DATABASE_URL when set, else an embedded PostgreSQL.
 */
import pg from 'pg';
import { z } from 'zod';
import { CancelledError, createClient, createWorker, defineWorkflow } from '../../src/index.ts';
import { exampleDatabase } from '../support/database.ts';

/** A fetch-like call that honours an AbortSignal. */
function fetchPage(page: number, signal: AbortSignal): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => resolve([`row-${page}a`, `row-${page}b`]), 50);
    signal.addEventListener('abort', () => {
      clearTimeout(timer);
      reject(signal.reason);
    }, { once: true });
  });
}

const progress = { pages: 0, abortedWith: '' };

const exportJob = defineWorkflow(
  { name: 'export-job', input: z.object({ table: z.string() }) },
  async (ctx, { table }) => {
    const file = await ctx.step('open-export-file', () => `s3://exports/${table}-${ctx.runId}.csv`);
    try {
      const rows = await ctx.step('export-rows', async ({ signal }) => {
        signal.addEventListener('abort', () => {
          progress.abortedWith = `${(signal.reason as Error).name} after page ${progress.pages}`;
        }, { once: true });
        let count = 0;
        for (let page = 1; page <= 1000; page++) {
          signal.throwIfAborted(); // never start another request once aborted
          count += (await fetchPage(page, signal)).length; // rejects with signal.reason on abort
          progress.pages = page;
        }
        return count;
      }, { timeout: '5 minutes' });
      return { file, rows };
    } catch (error) {
      if (ctx.cancelled) {
        // Cleanup must finish even though the run is being cancelled.
        await ctx.nonCancellable(() => ctx.step('delete-partial-export', () => ({ deleted: file })));
      }
      throw error;
    }
  },
);

const batchShard = defineWorkflow(
  { name: 'batch-shard', input: z.object({ shard: z.number() }) },
  async (ctx, { shard }) => {
    await ctx.sleep('wait-for-window', '1 hour');
    return ctx.step('process', () => `shard ${shard} done`);
  },
);
const nightlyBatch = defineWorkflow({ name: 'nightly-batch', input: z.object({}) }, async (ctx) =>
  Promise.all([ctx.child(batchShard, { shard: 1 }), ctx.child(batchShard, { shard: 2 })]));

async function until<T>(probe: () => Promise<T | undefined>, what: string): Promise<T> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const database = await exampleDatabase();
const pool = new pg.Pool({ connectionString: database.url });
pool.on('error', () => undefined); // idle connections closed by a stopping server
const worker = createWorker({ pool, workflows: [exportJob, batchShard, nightlyBatch] });
const client = createClient({ pool });
const status = async (id: string) => (await client.get(id))?.status;
try {
  await worker.start();

  // 1. Cancel a run in the middle of a step.
  const run = await client.start(exportJob, { table: 'orders' });
  await until(async () => (progress.pages >= 3 ? true : undefined), 'the export to fetch 3 pages');
  console.log(`cancel requested; run status: ${await client.cancel(run.id, 'user pressed stop')}`);
  try {
    await run.result({ timeout: '10s' });
    console.log('result: (unexpectedly completed)');
  } catch (error) {
    console.log(`result threw ${error instanceof CancelledError ? 'CancelledError' : String(error)}: ${(error as Error).message}`);
  }
  console.log(`step signal fired: ${progress.abortedWith}`);
  console.log(`export-job status: ${await status(run.id)}`);
  for (const s of await client.history(run.id)) console.log(`  step ${s.seq} ${s.name}: ${s.status}`);

  // 2. Cancel a parent whose two children are asleep.
  const parent = await client.start(nightlyBatch, {});
  const children = await until(async () => {
    const { rows } = await pool.query<{ id: string }>(
      `select id from trellis.runs where parent_run_id = $1 and status = 'waiting' order by parent_seq`, [parent.id]);
    return rows.length === 2 ? rows.map((r) => r.id) : undefined;
  }, 'two sleeping children');
  await until(async () => ((await status(parent.id)) === 'waiting' ? true : undefined), 'the parent to wait');
  console.log(`nightly-batch cancel: ${await client.cancel(parent.id, 'maintenance window moved')}`);
  await parent.result({ timeout: '10s' }).catch((error: unknown) =>
    console.log(`nightly-batch result threw ${(error as Error).name}`));
  for (const id of children) await client.result(id, { timeout: '10s' }).catch(() => undefined);
  console.log(`nightly-batch: ${await status(parent.id)}`);
  for (const [i, id] of children.entries()) console.log(`batch-shard ${i + 1}: ${await status(id)}`);
} finally {
  await worker.stop();
  await client.close();
  await pool.end();
  await database.stop();
}
