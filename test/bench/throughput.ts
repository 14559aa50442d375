/**
 * Trellis throughput: N no-op runs per worker process enqueued in bulk
 * through SQL, then 1, 2 or 4 worker processes started together and timed until every run
 * completed; plus the variant where runs are enqueued while workers run.
 */
import pg from 'pg';
import type { BenchConfig } from './config.ts';
import { measureRun } from './procs.ts';
import { figures, type RepFigures, row, type ThroughputRow } from './results.ts';
import type { BenchServer } from './server.ts';
import { fmt } from './stats.ts';
import { type Kind, KINDS } from './workflows.ts';

export const TRELLIS_DB = 'bench_trellis';

export interface WorkerEnv {
  BENCH_CONCURRENCY?: string | undefined;
  BENCH_CLAIM_BATCH?: string | undefined;
  BENCH_MAX_BATCH?: string | undefined;
  BENCH_DUTIES?: 'on' | 'off' | undefined;
}

/** Register the bench workflows so SQL can start them by name before any worker ran. */
export async function registerBench(pool: pg.Pool | pg.Client): Promise<void> {
  const defs = Object.values(KINDS).map((k) => ({ name: k.name, version: '1', queue: 'default' }));
  await pool.query('select trellis.workflow_register($1::jsonb)', [JSON.stringify(defs)]);
}

/** Bulk start: one statement per chunk, `select trellis.run_start(...) from generate_series(...)`. */
export async function enqueue(pool: pg.Pool | pg.Client, workflow: string, n: number, chunk = 5000): Promise<void> {
  for (let done = 0; done < n; done += chunk) {
    await pool.query(`select count(trellis.run_start($1, jsonb_build_object('i', g))) from generate_series(1, $2::int) g`,
      [workflow, Math.min(chunk, n - done)]);
  }
}

/** Test-data reset between repetitions (the bench only), and a checkpoint so every repetition starts alike. */
export async function resetTrellis(pool: pg.Pool): Promise<void> {
  await pool.query('truncate trellis.signals, trellis.steps, trellis.runs, trellis.events, trellis.hook_deliveries');
  await pool.query('checkpoint');
}

// Unfinished runs, read at the start of a window and to confirm its end.
// Counting them costs what is left (a full count every 10 ms took ~15% of a
// core), and still ~10 ms per poll with 30,000 pending, which the planner
// counts with a sequential scan; so the harness polls BUSY instead.
export const REMAINING = `select (select count(*) from trellis.runs where status = 'pending')
                        + (select count(*) from trellis.runs where status = 'running')
                        + (select count(*) from trellis.runs where status = 'waiting') as remaining`;
/** REMAINING's zero, by existence probes of the status indexes (what the harness polls). */
export const BUSY = `select (exists (select 1 from trellis.runs where status = 'pending')
                          or exists (select 1 from trellis.runs where status = 'running')
                          or exists (select 1 from trellis.runs where status = 'waiting'))::int as remaining`;

export interface TrellisRunOptions {
  kind: Kind;
  procs: number;
  runs: number;
  env?: WorkerEnv | undefined;
  /** Enqueue while the workers run instead of before. */
  live?: boolean | undefined;
}

/** One repetition on an existing, registered database. */
export async function trellisRep(pool: pg.Pool, url: string, o: TrellisRunOptions): Promise<RepFigures> {
  await resetTrellis(pool);
  const { name, steps } = KINDS[o.kind];
  if (!o.live) await enqueue(pool, name, o.runs);
  const m = await measureRun({
    url,
    file: './worker-process.ts',
    env: { ...(o.env as Record<string, string>) },
    procs: o.procs,
    total: o.runs,
    remainingSql: o.live
      ? `select ${o.runs} - count(*) filter (where status = 'completed') as remaining from trellis.runs`
      : REMAINING,
    pollSql: BUSY,
    afterGo: o.live
      ? async () => {
          // Four concurrent enqueuers of 1,000-run chunks.
          const per = Math.ceil(o.runs / 4);
          await Promise.all([0, 1, 2, 3].map((i) => enqueue(pool, name, Math.min(per, o.runs - i * per), 1000)));
        }
      : undefined,
  });
  return figures(m, steps);
}

export async function trellisThroughput(server: BenchServer, cfg: BenchConfig): Promise<ThroughputRow[]> {
  const url = await server.createDatabase(TRELLIS_DB, { trellis: true });
  const pool = new pg.Pool({ connectionString: url, max: 6 });
  const rows: ThroughputRow[] = [];
  try {
    await registerBench(pool);
    for (const kind of Object.keys(KINDS) as Kind[]) {
      for (const procs of cfg.procs) {
        const reps: RepFigures[] = [];
        for (let r = 0; r < cfg.reps; r++) {
          // As many runs per process as the one-process row drains: each
          // process pays a start-up (JIT, its connections) that a window of
          // the same total would weigh 4x on the 4-process row (issue 18).
          reps.push(await trellisRep(pool, url, { kind, procs, runs: (kind === '1-step' ? cfg.runs1 : cfg.runs10) * procs }));
        }
        const result = row('trellis', 'default', kind, procs, reps);
        rows.push(result);
        log(result);
      }
    }
    // Enqueue while running: 1-step, 2 processes, once per repetition.
    const reps: RepFigures[] = [];
    for (let r = 0; r < cfg.reps; r++) reps.push(await trellisRep(pool, url, { kind: '1-step', procs: 2, runs: cfg.runs1, live: true }));
    const live = row('trellis', 'default', '1-step', 2, reps, 'enqueue-while-running');
    rows.push(live);
    log(live);
  } finally {
    await pool.end();
  }
  return rows;
}

export function log(r: ThroughputRow): void {
  const m = r.median;
  console.log(`  ${r.system} ${r.config} ${r.kind} x${r.procs}${r.variant === 'prefilled' ? '' : ` (${r.variant})`}: ` +
    `${fmt(m.wfs)} wf/s, ${fmt(m.stepsPerS)} steps/s, ${fmt(m.xactPerStep, 3)} xact/step, ` +
    `${fmt(m.walBytesPerStep)} WAL B/step, ${fmt(m.walSyncsPerS)} fsync/s` +
    (m.opsPerFlush ? `, ${fmt(m.opsPerFlush, 1)} ops/commit` : '') +
    (m.runsPerClaim ? `, ${fmt(m.runsPerClaim, 1)} runs/claim` : '') +
    (m.pgCpuUsPerWf !== undefined ? `, CPU/wf pg ${fmt(m.pgCpuUsPerWf)} + node ${fmt(m.nodeCpuUsPerWf)} core-µs, others ${fmt(m.otherCores, 2)} cores` : '') +
    `  [reps: ${r.reps.map((x) => fmt(x.wfs)).join(', ')}]`);
}
