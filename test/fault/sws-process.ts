/**
 * A worker in its own process for the signal-with-start fault test. Runs
 * fault-entity: reads three messages (signals named msg), each in its turn,
 * then returns them (the rest stay unread and go to the key's next run,
 * decision 0043's amendment). env: DATABASE_URL. Prints "ready" once claiming.
 */
import pg from 'pg';
import { z } from 'zod';
import { createWorker } from '../../src/worker/worker.ts';
import { defineWorkflow } from '../../src/workflow/define.ts';
import { silentLogger } from '../../src/protocol/logger.ts';

const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 6 });

export const faultEntity = defineWorkflow({ name: 'fault-entity', input: z.object({ key: z.string() }) }, async (ctx) => {
  const read: unknown[] = [];
  while (read.length < 3) {
    const got = await ctx.waitForSignal('msg');
    if (!got.timedOut) read.push(got.payload);
  }
  return read;
});

const worker = createWorker({ pool, workflows: [faultEntity], pollInterval: 200, leaseDuration: 2000, concurrency: 50, logger: silentLogger });
await worker.start();
process.stdout.write('ready\n');
process.on('SIGTERM', () => {
  void worker.stop({ timeout: 1000 }).then(() => pool.end()).then(() => process.exit(0));
});
