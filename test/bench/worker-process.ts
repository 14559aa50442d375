/**
 * A Trellis worker in its own process (see procs.ts for the protocol).
 * env: BENCH_URL, BENCH_DUTIES (off), BENCH_CONCURRENCY, BENCH_CLAIM_BATCH, BENCH_MAX_BATCH, BENCH_POLL_MS,
 * BENCH_METRICS=1 (Prometheus metrics on, to measure what they cost).
 */
import pg from 'pg';
import { createWorker, silentLogger } from './runtime.ts';
import { onCommand } from './procs.ts';
import { bench1, bench10 } from './workflows.ts';

const env = (name: string) => (process.env[name] ? Number(process.env[name]) : undefined);
const concurrency = env('BENCH_CONCURRENCY');
const pool = new pg.Pool({ connectionString: process.env.BENCH_URL, max: 10 });
const worker = createWorker({
  pool,
  workflows: [bench1, bench10],
  concurrency,
  claimBatch: env('BENCH_CLAIM_BATCH'),
  maxBatch: env('BENCH_MAX_BATCH'),
  pollInterval: env('BENCH_POLL_MS') ?? 1000,
  // BENCH_DUTIES=off: no role-held duties (the roles family's A/B).
  ...(process.env.BENCH_DUTIES === 'off' ? { schedules: false as const, purge: false as const, deadlines: false as const, resumes: false as const } : {}),
  logger: silentLogger,
  metrics: process.env.BENCH_METRICS === '1',
});
// Warm the pool (connections are part of setup, not of the measurement).
await Promise.all(Array.from({ length: 4 }, () => pool.query('select 1')));
process.stdout.write('ready\n');
onCommand({
  async go() {
    await worker.start();
    process.stdout.write('started\n');
  },
  async stop() {
    await worker.stop({ timeout: 5000 });
    // The committer is private; its counters say how many ops each transaction carried.
    const committer = (worker as unknown as { committer?: { stats?: { flushes: number; ops: number } | undefined } | undefined }).committer;
    process.stdout.write(`stats ${JSON.stringify({ ...worker.stats, committer: committer?.stats })}\n`);
    await pool.end();
    process.exit(0);
  },
});
