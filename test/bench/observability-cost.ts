/**
 * What metrics and tracing cost a worker, in its own CPU time per step
 * (less disturbed by other work on a shared machine than throughput):
 * 10-step runs are queued with SQL, then one in-process worker executes
 * them with metrics and tracing off, with metrics on, and with tracing on
 * (a real SDK tracer provider without an exporter: span creation, not
 * export), rounds interleaved. Never part of `npm test`.
 *   npm run build && npx tsx test/bench/observability-cost.ts [runs per round, default 2000] [rounds, default 3]
 */
import { BasicTracerProvider } from '@opentelemetry/sdk-trace-base';
import pg from 'pg';
import { createWorker, silentLogger } from './runtime.ts';
import { startServer } from './server.ts';
import { bench10 } from './workflows.ts';

const runs = Number(process.argv[2] ?? 2000);
const rounds = Number(process.argv[3] ?? 3);
const server = await startServer();
const url = await server.createDatabase('trellis_observability_cost', { trellis: true });
const pool = new pg.Pool({ connectionString: url, max: 10 });
const modes = {
  off: {},
  metrics: { metrics: true },
  tracing: { tracing: { tracerProvider: new BasicTracerProvider() } },
} as const;
const results: Record<string, number[]> = { off: [], metrics: [], tracing: [] };
try {
  // Register the workflow once.
  const warm = createWorker({ pool, workflows: [bench10], logger: silentLogger });
  await warm.start();
  await warm.stop();
  for (let round = 0; round < rounds; round++) {
    for (const [mode, extra] of Object.entries(modes)) {
      await pool.query(`select trellis.run_start('bench-10', '{}', '{"input_checked": true}') from generate_series(1, $1)`, [runs]);
      const worker = createWorker({ pool, workflows: [bench10], logger: silentLogger, pollInterval: 50, ...extra });
      const cpu = process.cpuUsage();
      const t = performance.now();
      await worker.start();
      while (worker.stats.completed < runs) await new Promise((r) => setTimeout(r, 20));
      const used = process.cpuUsage(cpu);
      const wall = performance.now() - t;
      await worker.stop();
      const usPerStep = (used.user + used.system) / (runs * 10);
      results[mode]?.push(usPerStep);
      console.log(`round ${round + 1} ${mode.padEnd(7)} ${usPerStep.toFixed(1)} µs CPU/step, ${((runs * 10) / (wall / 1000)).toFixed(0)} steps/s wall`);
      await pool.query(`delete from trellis.steps; delete from trellis.runs`);
    }
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
  const off = median(results.off as number[]);
  for (const mode of Object.keys(modes)) {
    const m = median(results[mode] as number[]);
    console.log(`median ${mode.padEnd(7)} ${m.toFixed(1)} µs CPU/step (${(((m - off) / off) * 100).toFixed(0)}% vs off)`);
  }
} finally {
  await pool.end();
  await server.dropDatabase('trellis_observability_cost');
  await server.stop();
}
