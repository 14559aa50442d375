/**
 * The cost of the outbox (decision 0019): the throughput family's 1-step and
 * 10-step runs with the outbox on and off (`trellis.setting_set('events', …)`),
 * repetitions interleaved on/off so a busy neighbour on a shared machine
 * hits both alike. Reported with the levers.
 */
import pg from 'pg';
import type { BenchConfig } from './config.ts';
import { type RepFigures, row, type ThroughputRow } from './results.ts';
import type { BenchServer } from './server.ts';
import { log, registerBench, TRELLIS_DB, trellisRep } from './throughput.ts';
import type { Kind } from './workflows.ts';

export async function outboxCost(server: BenchServer, cfg: BenchConfig): Promise<ThroughputRow[]> {
  const url = await server.createDatabase(TRELLIS_DB, { trellis: true });
  const pool = new pg.Pool({ connectionString: url, max: 6 });
  const rows: ThroughputRow[] = [];
  try {
    await registerBench(pool);
    for (const kind of ['1-step', '10-step'] as Kind[]) {
      const procs = 2;
      const reps: Record<'on' | 'off', RepFigures[]> = { on: [], off: [] };
      for (let r = 0; r < cfg.reps; r++) {
        for (const mode of r % 2 === 0 ? (['on', 'off'] as const) : (['off', 'on'] as const)) {
          await pool.query(`select trellis.setting_set('events', $1::jsonb)`, [mode === 'on' ? 'true' : 'false']);
          reps[mode].push(await trellisRep(pool, url, { kind, procs, runs: kind === '1-step' ? cfg.runs1 : cfg.runs10 }));
        }
      }
      for (const mode of ['on', 'off'] as const) {
        const result = row('trellis', `outbox ${mode}`, kind, procs, reps[mode]);
        rows.push(result);
        log(result);
      }
    }
  } finally {
    await pool.query(`select trellis.setting_set('events', 'true')`).catch(() => undefined);
    await pool.end();
  }
  return rows;
}
