/**
 * Checking changed code against the runs under way before deploying it
 * (docs/testing.md#checking-new-code-against-recorded-runs):
 * 1. Version 1 of a subscription workflow charges, then sleeps until the
 *    renewal. Three runs are under way, asleep.
 * 2. Two candidate changes of version 1 are checked with checkReplay: one
 *    changes only a step's body (safe: every run replays), one inserts a
 *    step before the sleep (every run would stop with NonDeterminismError:
 *    it needs version 2). Nothing is written and no step body runs.
 *
 *   npx tsx examples/replay-check/main.ts
 * Uses DATABASE_URL when set, else an embedded PostgreSQL.
 */
import pg from 'pg';
import { z } from 'zod';
import { createClient, createWorker, defineWorkflow } from '../../src/index.ts';
import { checkReplay } from '../../src/testing/index.ts';
import { exampleDatabase } from '../support/database.ts';

const input = z.object({ customer: z.string() });
const deployed = defineWorkflow({ name: 'subscription', input }, async (ctx, { customer }) => {
  await ctx.step('charge', () => `charged ${customer}`);
  await ctx.sleep('until-renewal', '30 days');
  return ctx.step('renew', () => `renewed ${customer}`);
});

// A fix inside a step body: the calls are the same.
const bodyFix = defineWorkflow({ name: 'subscription', input }, async (ctx, { customer }) => {
  await ctx.step('charge', () => `charged ${customer} (with a receipt)`);
  await ctx.sleep('until-renewal', '30 days');
  return ctx.step('renew', () => `renewed ${customer}`);
});
// A new step before the sleep: runs already asleep recorded the sleep at call 1.
const newStep = defineWorkflow({ name: 'subscription', input }, async (ctx, { customer }) => {
  await ctx.step('charge', () => `charged ${customer}`);
  await ctx.step('send-welcome', () => `welcomed ${customer}`);
  await ctx.sleep('until-renewal', '30 days');
  return ctx.step('renew', () => `renewed ${customer}`);
});

const database = await exampleDatabase();
const pool = new pg.Pool({ connectionString: database.url });
pool.on('error', () => undefined); // idle connections closed by a stopping server
const worker = createWorker({ pool, workflows: [deployed] });
const client = createClient({ pool });
try {
  await pool.query(`delete from trellis.runs where workflow = 'subscription'`); // a rerun against DATABASE_URL starts afresh
  await worker.start();
  const runs = await Promise.all(['ada', 'lin', 'cy'].map((customer) => client.start(deployed, { customer })));
  const until = Date.now() + 20_000;
  for (const run of runs) {
    while ((await client.get(run.id))?.status !== 'waiting') {
      if (Date.now() > until) throw new Error(`run ${run.id} did not reach its sleep`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }
  console.log(`runs asleep: ${runs.length}`);

  for (const [label, code] of [['body fix', bodyFix], ['new step', newStep]] as const) {
    const report = await checkReplay(pool, code);
    const broken = report.filter((r) => !r.ok);
    console.log(`${label}: ${report.length} checked, ${broken.length} would break`);
    if (broken[0]) console.log(`${label}: ${broken[0].problem?.replace(/^run \S+ /, 'run … ')}`);
  }
  const { rows: [steps] } = await pool.query<{ n: number }>(`select count(*)::int as n from trellis.steps s join trellis.runs r on r.id = s.run_id where r.workflow = 'subscription'`);
  console.log(`recorded calls: ${steps!.n} (2 per run, nothing written by the checks)`);
} finally {
  await worker.stop();
  await client.close();
  await pool.end();
  await database.stop();
}
