/**
 * A worker in its own process for the cancel-during-clean-up fault test.
 * Runs fault-cleanup: a step, a 1.5 s sleep, a step; cancelled, it cleans
 * up in a step under ctx.nonCancellable that logs (public.cleanup_log) and,
 * with FAULT_MODE=block, then hangs (the test kills the process there).
 * Prints "ready" once claiming.
 */
import pg from 'pg';
import { z } from 'zod';
import { CancelledError } from '../../src/errors.ts';
import { createWorker } from '../../src/worker/worker.ts';
import { defineWorkflow } from '../../src/workflow/define.ts';
import { silentLogger } from '../../src/protocol/logger.ts';

const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 4 });
const block = process.env.FAULT_MODE === 'block';

export const faultCleanup = defineWorkflow({ name: 'fault-cleanup', input: z.object({}) }, async (ctx) => {
  try {
    await ctx.step('s0', () => 0);
    await ctx.sleep('z', '1500ms');
    return await ctx.step('s1', () => 1);
  } catch (error) {
    if (error instanceof CancelledError) {
      await ctx.nonCancellable(() => ctx.step('cleanup', async ({ runId }) => {
        await pool.query('insert into public.cleanup_log (run_id, pid) values ($1, $2)', [runId, process.pid]);
        if (block) await new Promise(() => {});
        return 'cleaned';
      }));
    }
    throw error;
  }
});

const worker = createWorker({ pool, workflows: [faultCleanup], pollInterval: 200, leaseDuration: 2000, logger: silentLogger });
await worker.start();
process.stdout.write('ready\n');
process.on('SIGTERM', () => {
  void worker.stop({ timeout: 1000 }).then(() => pool.end()).then(() => process.exit(0));
});
