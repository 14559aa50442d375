/**
 * The models family: a 10-transition state machine and a 10-step template
 * against the 10-step code workflow they compile to the same core as, in
 * the same bench run (prefilled queues, 1 worker process). Goal: each at
 * least 80% of the code workflow's steps/s.
 */
import pg from 'pg';
import type { BenchConfig } from './config.ts';
import { BENCH_TEMPLATE } from './models-defs.ts';
import { measureRun } from './procs.ts';
import { figures, type RepFigures, row, type ThroughputRow } from './results.ts';
import type { BenchServer } from './server.ts';
import { fmt } from './stats.ts';
import { BUSY, log, REMAINING, resetTrellis } from './throughput.ts';

const KINDS = {
  code: `select count(trellis.run_start('bench-10', jsonb_build_object('i', $2::int + g))) from generate_series(1, $1::int) g`,
  machine: `select count(trellis.machine_trigger('bench-machine-10', 'f' || ($2::int + g), '{"status": "s0", "object": {"i": 0}}')) from generate_series(1, $1::int) g`,
  template: `select count(trellis.template_start('bench-10', jsonb_build_object('i', $2::int + g))) from generate_series(1, $1::int) g`,
} as const;

export async function modelsThroughput(server: BenchServer, cfg: BenchConfig): Promise<ThroughputRow[]> {
  const url = await server.createDatabase('bench_models', { trellis: true });
  const pool = new pg.Pool({ connectionString: url, max: 4 });
  const rows: ThroughputRow[] = [];
  try {
    await pool.query('select trellis.workflow_register($1::jsonb)', [JSON.stringify([
      { name: 'bench-10', version: '1', queue: 'default' },
      { name: 'bench-machine-10', version: '1', queue: 'default' },
      { name: 'template:bench-10', version: '1', queue: 'default' },
    ])]);
    await pool.query('select trellis.template_set($1, $2)', ['bench-10', JSON.stringify(BENCH_TEMPLATE)]);
    const reps: Record<keyof typeof KINDS, RepFigures[]> = { code: [], machine: [], template: [] };
    // Interleaved repetitions, so a change of the machine's load hits every kind alike.
    for (let r = 0; r < cfg.reps; r++) {
      for (const kind of Object.keys(KINDS) as (keyof typeof KINDS)[]) {
        await resetTrellis(pool);
        for (let done = 0; done < cfg.runs10; done += 1000) await pool.query(KINDS[kind], [Math.min(1000, cfg.runs10 - done), done]);
        const m = await measureRun({ url, file: './models-worker-process.ts', env: {}, procs: 1, total: cfg.runs10, remainingSql: REMAINING, pollSql: BUSY });
        reps[kind].push(figures(m, 10));
      }
    }
    for (const kind of Object.keys(KINDS) as (keyof typeof KINDS)[]) {
      const result = row('trellis', kind, '10-step', 1, reps[kind]);
      rows.push(result);
      log(result);
    }
    const code = rows[0]?.median.stepsPerS ?? 0;
    for (const r of rows.slice(1)) {
      const ratio = r.median.stepsPerS / code;
      console.log(`  ${r.config} / code steps/s: ${fmt(ratio * 100, 1)}% (goal >= 80%: ${ratio >= 0.8 ? 'PASS' : 'MISS'})`);
    }
  } finally {
    await pool.end();
  }
  return rows;
}
