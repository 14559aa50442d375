/**
 * A worker serving the models family's three 10-step kinds (see models.ts):
 * the 10-step code workflow, a 10-transition state machine and a 10-step
 * template. env: BENCH_URL, BENCH_CONCURRENCY.
 */
import pg from 'pg';
import { createWorker, silentLogger } from './runtime.ts';
import { onCommand } from './procs.ts';
import { benchMachine, benchTemplate } from './models-defs.ts';
import { bench10 } from './workflows.ts';

const pool = new pg.Pool({ connectionString: process.env.BENCH_URL, max: 10 });
const worker = createWorker({
  pool,
  workflows: [bench10, benchMachine.workflow, benchTemplate],
  concurrency: process.env.BENCH_CONCURRENCY ? Number(process.env.BENCH_CONCURRENCY) : undefined,
  pollInterval: 1000,
  logger: silentLogger,
});
await Promise.all(Array.from({ length: 4 }, () => pool.query('select 1')));
process.stdout.write('ready\n');
onCommand({
  async go() {
    await worker.start();
    process.stdout.write('started\n');
  },
  async stop() {
    await worker.stop({ timeout: 5000 });
    process.stdout.write(`stats ${JSON.stringify(worker.stats)}\n`);
    await pool.end();
    process.exit(0);
  },
});
