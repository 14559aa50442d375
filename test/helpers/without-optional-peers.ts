/**
 * Run by test/integration/optional-peers.test.ts in a process where
 * prom-client and @opentelemetry/api cannot be found: a worker and a client
 * without metrics and tracing work; asking for either is a ValidationError.
 * Prints one JSON line with what happened.
 */
import pg from 'pg';
import { z } from 'zod';
import { createClient, createMetrics, createWorker, defineWorkflow, isTrellisError, silentLogger } from '../../src/index.ts';

const report: Record<string, unknown> = {};
const describe = (error: unknown) => (isTrellisError(error) ? { code: error.code, message: error.message, details: error.details } : { error: String(error) });
const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 4 });
const wf = defineWorkflow({ name: 'no-peers', input: z.object({ n: z.number() }) }, async (ctx, { n }) => ctx.step('double', () => n * 2));
const worker = createWorker({ pool, workflows: [wf], logger: silentLogger, pollInterval: 100 });
const client = createClient({ pool, logger: silentLogger });
await worker.start();
try {
  report.output = await (await client.start(wf, { n: 21 })).result({ timeout: '10s' });
  report.createMetrics = await createMetrics({ pool }).then(() => 'created', describe);
  const metricsWorker = createWorker({ pool, workflows: [wf], logger: silentLogger, metrics: true });
  report.workerMetrics = await metricsWorker.start().then(() => 'started', describe);
  const tracingWorker = createWorker({ pool, workflows: [wf], logger: silentLogger, tracing: true });
  report.workerTracing = await tracingWorker.start().then(() => 'started', describe);
  const tracingClient = createClient({ pool, logger: silentLogger, tracing: true });
  report.clientTracing = await tracingClient.start(wf, { n: 1 }, { key: 'never' }).then(() => 'started', describe);
  const { rows } = await pool.query(`select count(*)::int as n from trellis.runs where key = 'never'`);
  report.runsWrittenByRefusedStart = rows[0].n;
  await tracingClient.close();
} finally {
  await worker.stop();
  await client.close();
  await pool.end();
}
console.log(JSON.stringify(report));
