/**
 * A template worker in its own process, for the fault test that SIGKILLs it
 * between steps. env: DATABASE_URL, FAULT_MODE=block (the entry 'second'
 * logs, then hangs) | normal, LEASE_MS (default 2000). Prints "ready".
 */
import pg from 'pg';
import { templateWorkflow } from '../../src/templates/compile.ts';
import { createStepRegistry } from '../../src/templates/registry.ts';
import { createWorker } from '../../src/worker/worker.ts';
import { silentLogger } from '../../src/protocol/logger.ts';

const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 4 });
const mode = process.env.FAULT_MODE ?? 'normal';
const log = (runId: string, step: string, attempt: number) =>
  pool.query('insert into public.fault_log (run_id, step, pid, attempt) values ($1, $2, $3, $4)', [runId, step, process.pid, attempt]);

export const steps = createStepRegistry()
  .registerStep('first', async (state, { runId, attempt }) => {
    await log(runId, 'first', attempt);
    state.trail = [...(state.trail as string[]), `first@${process.pid}`];
  })
  .registerStep('second', async (state, { runId, attempt }) => {
    await log(runId, 'second', attempt);
    if (mode === 'block') await new Promise(() => {});
    state.trail = [...(state.trail as string[]), `second@${process.pid}`];
  })
  .registerStep('third', async (state, { runId, attempt }) => {
    await log(runId, 'third', attempt);
    state.trail = [...(state.trail as string[]), `third@${process.pid}`];
  });

const worker = createWorker({
  pool,
  workflows: [templateWorkflow('relay', steps)],
  pollInterval: 200,
  leaseDuration: Number(process.env.LEASE_MS ?? 2000),
  logger: silentLogger,
});
await worker.start();
process.stdout.write('ready\n');
process.on('SIGTERM', () => {
  void worker.stop({ timeout: 1000 }).then(() => pool.end()).then(() => process.exit(0));
});
