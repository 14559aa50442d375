/**
 * Fan-out / fan-in: a parent run starts one child run per region in parallel
 * (`ctx.child` inside `Promise.all`), holds no worker while they run, and
 * joins their results. Some children sleep durably (waiting for a ledger to
 * settle); one fails for good, and the parent catches its ChildFailedError
 * and reports that region as missing instead of failing the whole report.
 * The joined totals then go to an activity on the 'reports' queue, executed
 * by a second worker that serves only that queue (think: another service, a
 * bigger machine); the parent wakes on its own queue when it is done.
 *
 *   npx tsx examples/fan-out/main.ts
 * Uses DATABASE_URL when set, else an embedded PostgreSQL.
 */
import pg from 'pg';
import { z } from 'zod';
import { ChildFailedError, createClient, createWorker, defineActivity, defineWorkflow, NonRetryableError } from '../../src/index.ts';
import { exampleDatabase } from '../support/database.ts';

const LEDGERS: Record<string, { settleMs: number; amounts: number[] }> = {
  emea: { settleMs: 400, amounts: [120, 80, 45] },
  apac: { settleMs: 0, amounts: [300, 12] },
  amer: { settleMs: 250, amounts: [999, 1] },
};

// One child per region. Regions with unsettled ledgers wait durably first.
const regionTotal = defineWorkflow(
  { name: 'region-total', input: z.object({ region: z.string() }) },
  async (ctx, { region }) => {
    const ledger = await ctx.step('fetch-ledger', () => {
      const found = LEDGERS[region];
      if (!found) throw new NonRetryableError(`no ledger for region ${region}`);
      return found;
    });
    if (ledger.settleMs > 0) await ctx.sleep('wait-for-settlement', ledger.settleMs);
    return ctx.step('sum', () => ledger.amounts.reduce((a, b) => a + b, 0));
  },
);

// An activity: a single step run by whichever worker serves queue 'reports'.
const buildReport = defineActivity(
  { name: 'build-report', queue: 'reports', input: z.object({ totals: z.record(z.string(), z.number()) }) },
  ({ totals }) => {
    const lines = Object.entries(totals).map(([region, total]) => `${region}=${total}`);
    return { report: lines.join(', '), grandTotal: Object.values(totals).reduce((a, b) => a + b, 0) };
  },
);

const quarterlyReport = defineWorkflow(
  { name: 'quarterly-report', input: z.object({ regions: z.array(z.string()).min(1) }) },
  async (ctx, { regions }) => {
    // Each ctx.child takes its call number synchronously, so the order in the
    // history is the order of `regions`, whatever order the children finish in.
    const results = await Promise.all(regions.map((region) =>
      ctx.child(regionTotal, { region }, { name: `total-${region}` }).then(
        (total) => ({ region, total }),
        (error: unknown) => {
          if (error instanceof ChildFailedError) return { region, error: error.message };
          throw error;
        },
      )));
    const totals: Record<string, number> = {};
    const missing: string[] = [];
    for (const r of results) {
      if ('total' in r) totals[r.region] = r.total;
      else missing.push(r.region);
    }
    const report = await ctx.child(buildReport, { totals });
    return { ...report, missing };
  },
);

const database = await exampleDatabase();
const pool = new pg.Pool({ connectionString: database.url });
pool.on('error', () => undefined); // idle connections closed by a stopping server
const worker = createWorker({ pool, workflows: [quarterlyReport, regionTotal], id: 'main-worker' });
const reportsWorker = createWorker({ pool, workflows: [buildReport], id: 'reports-worker' });
const client = createClient({ pool });
try {
  await worker.start();
  await reportsWorker.start();
  const started = performance.now();
  const run = await client.start(quarterlyReport, { regions: ['emea', 'apac', 'mars', 'amer'] });
  console.log(`started run ${run.id}`);
  const output = await run.result({ timeout: '30s' });
  console.log(`result: ${JSON.stringify(output)}`);
  console.log(`took ${Math.round(performance.now() - started)} ms (the children ran in parallel)`);

  const { rows } = await pool.query(
    `select workflow, queue, status, input->>'region' as region, error->>'message' as error
       from trellis.runs where parent_run_id = $1 order by parent_seq`, [run.id]);
  for (const r of rows) {
    console.log(`child ${r.workflow}${r.region ? ` ${r.region}` : ''} on queue ${r.queue}: ${r.status}${r.error ? ` (${r.error})` : ''}`);
  }
  for (const step of await client.history(run.id)) console.log(`  parent step ${step.seq} ${step.kind} ${step.name}: ${step.status}`);
  // Stop first: a worker counts a run once its completion is committed, which
  // can be a moment after the client already saw the result.
  await Promise.all([worker.stop(), reportsWorker.stop()]);
  console.log(`main-worker completed ${worker.stats.completed} runs; reports-worker completed ${reportsWorker.stats.completed}`);
} finally {
  await worker.stop();
  await reportsWorker.stop();
  await client.close();
  await pool.end();
  await database.stop();
}
