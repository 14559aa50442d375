/**
 * A worker in its own process for the flow-control fault tests
 * (test/fault/queue-limits.test.ts). Serves 'flow-job' (one step that holds
 * its slot for input.ms, or forever with FLOW_MODE=block) on queue FLOW_QUEUE.
 * env: DATABASE_URL, FLOW_QUEUE, FLOW_MODE=block|normal, LEASE_MS (default
 * 2000), CONCURRENCY (this worker's own slots, default 10), LISTEN_URL (a
 * direct connection for LISTEN when DATABASE_URL is a PgBouncer).
 * Prints "ready" once claiming.
 */
import pg from 'pg';
import { z } from 'zod';
import { createWorker } from '../../src/worker/worker.ts';
import { defineWorkflow } from '../../src/workflow/define.ts';
import { silentLogger } from '../../src/protocol/logger.ts';

const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 4 });
const block = process.env.FLOW_MODE === 'block';

const flowJob = defineWorkflow({ name: 'flow-job', queue: process.env.FLOW_QUEUE ?? 'default', input: z.object({ ms: z.number() }) },
  async (ctx, { ms }) => {
    await ctx.step('hold', async () => {
      if (block) await new Promise(() => {});
      await new Promise((r) => setTimeout(r, ms));
      return process.pid;
    });
    return process.pid;
  });

const worker = createWorker({
  pool,
  workflows: [flowJob],
  pollInterval: 200,
  concurrency: Number(process.env.CONCURRENCY ?? 10),
  leaseDuration: Number(process.env.LEASE_MS ?? 2000),
  logger: silentLogger,
  ...(process.env.LISTEN_URL ? { listenUrl: process.env.LISTEN_URL } : {}),
});
await worker.start();
process.stdout.write('ready\n');
process.on('SIGTERM', () => {
  void worker.stop({ timeout: 1000 }).then(() => pool.end()).then(() => process.exit(0));
});
