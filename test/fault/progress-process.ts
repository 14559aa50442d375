/**
 * A worker in its own process for the step-progress fault test. Runs
 * fault-progress: one step that imports items 0..n-1, logging each
 * (public.progress_log, its own transaction) and saving { next } after it.
 * env: DATABASE_URL, FAULT_MODE=block (after saving progress at item
 * BLOCK_AT, hang) | normal. Prints "ready" once claiming.
 */
import pg from 'pg';
import { z } from 'zod';
import { createWorker } from '../../src/worker/worker.ts';
import { defineWorkflow } from '../../src/workflow/define.ts';
import { silentLogger } from '../../src/protocol/logger.ts';

const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 4 });
const block = process.env.FAULT_MODE === 'block' ? Number(process.env.BLOCK_AT) : -1;

export const faultProgress = defineWorkflow({ name: 'fault-progress', input: z.object({ n: z.number() }) }, async (ctx, { n }) => {
  return ctx.step('import', async (step) => {
    const from = (step.progress as { next: number } | undefined)?.next ?? 0;
    for (let item = from; item < n; item++) {
      await pool.query('insert into public.progress_log (run_id, item, pid, attempt) values ($1, $2, $3, $4)', [step.runId, item, process.pid, step.attempt]);
      await step.saveProgress({ next: item + 1 });
      if (item + 1 === block) await new Promise(() => {});
    }
    return { from, by: process.pid };
  });
});

const worker = createWorker({ pool, workflows: [faultProgress], pollInterval: 200, leaseDuration: 2000, logger: silentLogger });
await worker.start();
process.stdout.write('ready\n');
process.on('SIGTERM', () => {
  void worker.stop({ timeout: 1000 }).then(() => pool.end()).then(() => process.exit(0));
});
