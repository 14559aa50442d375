/**
 * A Trellis worker in its own process for the Citus workload (test/citus/run.ts):
 * serves `citus-three`, a workflow of three steps, each of which counts its
 * own executions in citus_calls (so a step that ran twice shows n = 2), and
 * `citus-waits` / `citus-kid` (a timer, a signal, a child) for the waits workload.
 * env: WORKLOAD_URL. Prints "started"; stops on SIGTERM.
 */
import pg from 'pg';
import { z } from 'zod';
import { consoleLogger, createWorker, defineSignal, defineWorkflow } from '../../src/index.ts';

const pool = new pg.Pool({ connectionString: process.env.WORKLOAD_URL, max: 8 });
pool.on('error', () => undefined);

const calls = async (runId: string, step: number) => {
  await pool.query(`insert into citus_calls (run_id, step, n) values ($1, $2, 1)
                    on conflict (run_id, step) do update set n = citus_calls.n + 1`, [runId, step]);
};

export const citusThree = defineWorkflow({ name: 'citus-three', input: z.object({ i: z.number() }) }, async (ctx, { i }) => {
  let total = i;
  for (let step = 0; step < 3; step++) {
    total = await ctx.step(`step-${step}`, async () => {
      await calls(ctx.runId, step);
      return total + 1;
    });
  }
  return total;
});

// The waits workload (test/citus/waits-workload.ts): a timer, a signal the
// test sends, and a child (keyed for even i, so in another bucket; else in
// the parent's), each step counted as above.
const go = defineSignal('go');
export const citusKid = defineWorkflow({ name: 'citus-kid', input: z.object({ i: z.number() }) }, async (ctx, { i }) =>
  ctx.step('kid', async () => {
    await calls(ctx.runId, 20);
    return i * 2;
  }));
export const citusWaits = defineWorkflow({ name: 'citus-waits', input: z.object({ i: z.number() }), signals: [go] },
  async (ctx, { i }) => {
    const a = await ctx.step('before', async () => {
      await calls(ctx.runId, 10);
      return i;
    });
    await ctx.sleep('nap', '200 ms');
    const got = await ctx.waitForSignal(go);
    if (got.timedOut) throw new Error('the signal wait has no timeout');
    const kid = await ctx.child(citusKid, { i }, i % 2 === 0 ? { key: `kid-${i}` } : {});
    return ctx.step('after', async () => {
      await calls(ctx.runId, 11);
      return a + kid;
    });
  });

const worker = createWorker({
  pool,
  workflows: [citusThree, citusWaits, citusKid],
  pollInterval: 500,
  // The role-held duties (cron ticker, purge, deadlines) are not part of this workload.
  schedules: false,
  purge: false,
  deadlines: false,
  resumes: false,
  // Warnings and errors (a statement a distributed planner refused, say) go to the test's stderr.
  logger: consoleLogger('warn', { process: process.pid }),
});
await worker.start();
process.stdout.write('started\n');
process.on('SIGTERM', () => {
  void worker.stop({ timeout: 5000 }).then(() => pool.end()).then(() => process.exit(0));
});
