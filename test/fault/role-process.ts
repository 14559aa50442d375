/**
 * A worker in its own process taking part in role `soak` (and in the
 * engine's duties, the schedule ticker among them), for the failover test
 * that SIGKILLs, SIGSTOPs it or terminates its connections.
 * env: DATABASE_URL, ROLE_TTL_MS (default 600).
 * While it holds `soak` it writes a row to public.role_log every 20 ms,
 * fenced by its token (trellis.role_check); a refused write goes to
 * public.role_refused. Its connections carry application_name
 * role-proc-<pid>. Prints "ready" once started.
 */
import pg from 'pg';
import { z } from 'zod';
import { createWorker } from '../../src/worker/worker.ts';
import { defineWorkflow } from '../../src/workflow/define.ts';
import { silentLogger } from '../../src/protocol/logger.ts';

const ttl = Number(process.env.ROLE_TTL_MS ?? 600);
const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 6, application_name: `role-proc-${process.pid}` });
pool.on('error', () => undefined);

export const tickJob = defineWorkflow({ name: 'tick-job', input: z.object({}) }, async () => process.pid);

const worker = createWorker({
  pool,
  id: `proc-${process.pid}`,
  workflows: [tickJob],
  pollInterval: 200,
  leaseDuration: 2000,
  roles: { ttl },
  schedules: { interval: 50 },
  logger: silentLogger,
});

worker.role('soak', async ({ token, signal }) => {
  while (!signal.aborted) {
    try {
      await pool.query(
        `insert into public.role_log (token, pid, at) select $1::bigint, $2, clock_timestamp() where trellis.role_check('soak', $1::bigint)`,
        [token, process.pid]);
    } catch (error) {
      if ((error as { code?: string | undefined }).code === 'TR003') {
        await pool.query('insert into public.role_refused (token, pid) values ($1, $2)', [token, process.pid]).catch(() => undefined);
      }
    }
    await new Promise((r) => setTimeout(r, 20));
  }
});

await worker.start();
process.stdout.write('ready\n');
process.on('SIGTERM', () => {
  void worker.stop({ timeout: 1000 }).then(() => pool.end()).then(() => process.exit(0));
});
