/**
 * A worker in its own process, for fault tests that SIGKILL it.
 * env: DATABASE_URL, FAULT_MODE=block (step 2 logs, then hangs) | normal,
 *      LEASE_MS (default 2000), START_N (this process also starts a run of
 *      fault-three with that n through a client on the worker's pool, so it
 *      is handed to this worker; prints "started <id> <handedOff>").
 * Prints "ready" once claiming.
 */
import pg from 'pg';
import { z } from 'zod';
import { createClient } from '../../src/client/client.ts';
import { createWorker } from '../../src/worker/worker.ts';
import { defineWorkflow } from '../../src/workflow/define.ts';
import { silentLogger } from '../../src/protocol/logger.ts';

const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 4 });
const mode = process.env.FAULT_MODE ?? 'normal';

// Each step body logs (run, step, pid) in its own transaction before doing
// anything else, so the log counts executions of the body, committed or not.
const log = (runId: string, step: string, attempt = 1) =>
  pool.query('insert into public.fault_log (run_id, step, pid, attempt) values ($1, $2, $3, $4)', [runId, step, process.pid, attempt]);

export const faultThree = defineWorkflow({ name: 'fault-three', input: z.object({ n: z.number() }) }, async (ctx, { n }) => {
  const a = await ctx.step('step-1', async ({ runId }) => (await log(runId, 'step-1'), n + 1));
  const b = await ctx.step('step-2', async ({ runId, attempt }) => {
    await log(runId, 'step-2', attempt);
    if (mode === 'block') await new Promise(() => {});
    return a * 10;
  });
  const c = await ctx.step('step-3', async ({ runId }) => (await log(runId, 'step-3'), b + 1));
  return { a, b, c, finishedBy: process.pid };
});

// The client this process starts with: the worker joins it, so a start here is handed to it.
const client = createClient({ pool, logger: silentLogger });
const worker = createWorker({
  pool,
  client,
  workflows: [faultThree],
  pollInterval: 200,
  leaseDuration: Number(process.env.LEASE_MS ?? 2000),
  logger: silentLogger,
});
await worker.start();
process.stdout.write('ready\n');
if (process.env.START_N) {
  const run = await client.start(faultThree, { n: Number(process.env.START_N) });
  process.stdout.write(`started ${run.id} ${worker.stats.handedOff}\n`);
}
process.on('SIGTERM', () => {
  void worker.stop({ timeout: 1000 }).then(() => pool.end()).then(() => process.exit(0));
});
