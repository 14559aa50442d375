/**
 * The levers, measured by turning each off in one worker process:
 * grouped commits (maxBatch 1 = one checkpoint op per transaction),
 * batched claims (claimBatch 1), and concurrency (1 run at a time, and
 * 50 at a time with claims of 50, the default before it became 200/100).
 */
import pg from 'pg';
import type { BenchConfig } from './config.ts';
import { type RepFigures, row, type ThroughputRow } from './results.ts';
import type { BenchServer } from './server.ts';
import { log, registerBench, trellisRep, type WorkerEnv } from './throughput.ts';
import type { Kind } from './workflows.ts';

const LEVERS: { config: string; env: WorkerEnv; share: number }[] = [
  { config: 'default (concurrency 200, claimBatch 100, maxBatch 500)', env: {}, share: 1 },
  { config: 'maxBatch=1 (no grouped commits)', env: { BENCH_MAX_BATCH: '1' }, share: 0.25 },
  { config: 'claimBatch=1 (one run per claim)', env: { BENCH_CLAIM_BATCH: '1' }, share: 0.5 },
  { config: 'concurrency=1', env: { BENCH_CONCURRENCY: '1' }, share: 0.05 },
  { config: 'concurrency=50, claimBatch=50', env: { BENCH_CONCURRENCY: '50', BENCH_CLAIM_BATCH: '50' }, share: 1 },
];

export async function levers(server: BenchServer, cfg: BenchConfig): Promise<ThroughputRow[]> {
  const url = await server.createDatabase('bench_levers', { trellis: true });
  const pool = new pg.Pool({ connectionString: url, max: 6 });
  const rows: ThroughputRow[] = [];
  try {
    await registerBench(pool);
    for (const kind of ['1-step', '10-step'] as Kind[]) {
      for (const lever of LEVERS) {
        const runs = Math.max(200, Math.round((kind === '1-step' ? cfg.runs1 : cfg.runs10) * lever.share / 2));
        const reps: RepFigures[] = [];
        for (let r = 0; r < cfg.reps; r++) reps.push(await trellisRep(pool, url, { kind, procs: 1, runs, env: lever.env }));
        const result = row('trellis', lever.config, kind, 1, reps);
        rows.push(result);
        log(result);
      }
    }
  } finally {
    await pool.end();
    await server.dropDatabase('bench_levers');
  }
  return rows;
}
