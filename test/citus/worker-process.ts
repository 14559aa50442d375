/**
 * A Trellis worker in its own process for the Citus workload (test/citus/run.ts):
 * serves `citus-three`, a workflow of three steps, each of which counts its
 * own executions in citus_calls (so a step that ran twice shows n = 2).
 * env: WORKLOAD_URL. Prints "started"; stops on SIGTERM.
 */
import pg from 'pg';
import { z } from 'zod';
import { consoleLogger, createWorker, defineWorkflow } from '../../src/index.ts';

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

const worker = createWorker({
  pool,
  workflows: [citusThree],
  pollInterval: 500,
  // The role-held duties (cron ticker, purge) are not part of this workload.
  schedules: false,
  purge: false,
  // Warnings and errors (a statement a distributed planner refused, say) go to the test's stderr.
  logger: consoleLogger('warn', { process: process.pid }),
});
await worker.start();
process.stdout.write('started\n');
process.on('SIGTERM', () => {
  void worker.stop({ timeout: 5000 }).then(() => pool.end()).then(() => process.exit(0));
});
