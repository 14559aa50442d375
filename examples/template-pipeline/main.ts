/**
 * A data-defined pipeline (the ewf model on the Trellis core). TypeScript
 * registers the step functions and serves the template's workflow; the
 * pipeline itself — which steps, in which order, with which retries and
 * timeouts — is data, stored and started from psql:
 *
 *   select trellis.template_set('nightly-report', '{"steps": [...]}');
 *   select trellis.template_start('nightly-report', '{"day": "2026-12-03"}');
 *
 * The steps share one JSON state, saved after each step (a worker killed
 * between steps resumes from there). 'notify' fails and is marked
 * onFailure continue, so the run still completes.
 *
 *   npx tsx examples/template-pipeline/main.ts
 * Uses DATABASE_URL when set, else an embedded PostgreSQL. Needs psql on
 * the PATH for the psql part (it falls back to pg without it).
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import pg from 'pg';
import { createWorker } from '../../src/index.ts';
import { createStepRegistry, parseTemplate, templateDiagram, templateWorkflow } from '../../src/models.ts';
import { exampleDatabase } from '../support/database.ts';

const exec = promisify(execFile);

const steps = createStepRegistry()
  .registerStep('extract', (state) => {
    state.sales = [120, 80, 45].map((amount, i) => ({ id: `${state.day}-${i}`, amount }));
  }, { retry: { maxAttempts: 5 }, timeout: '30s' })
  .registerStep('transform', (state) => {
    const sales = state.sales as { amount: number }[];
    state.total = sales.reduce((sum, s) => sum + s.amount, 0);
    state.count = sales.length;
  })
  .registerStep('load', (state) => {
    state.report = `report ${state.day}: ${state.count} sales, ${state.total} total`;
  })
  .registerStep('notify', () => {
    throw new Error('chat webhook is down');
  })
  .registerHook('log-step', ({ entry, error }) => console.log(`hook: ${entry}${error ? ' failed' : ' done'}`));

const TEMPLATE = {
  steps: [
    { name: 'extract' },
    { name: 'transform' },
    { name: 'load', retry: { maxAttempts: 3, backoff: 'constant', initialDelay: '1s' } },
    { name: 'notify', onFailure: 'continue', retry: { maxAttempts: 1 } },
  ],
  hooks: { afterStep: ['log-step'] },
};

/** One statement through psql (-At), or through pg when psql is missing. */
async function sql(url: string, db: pg.Pool, statement: string): Promise<string> {
  try {
    const { stdout } = await exec('psql', [url, '-X', '-At', '-v', 'ON_ERROR_STOP=1', '-c', statement]);
    return stdout.trim();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    const { rows } = await db.query({ text: statement, rowMode: 'array' });
    return rows.map((r) => r.join('|')).join('\n');
  }
}

console.log(templateDiagram(parseTemplate('nightly-report', TEMPLATE, steps)));
const database = await exampleDatabase();
const db = new pg.Pool({ connectionString: database.url });
db.on('error', (error) => console.error(`idle connection closed: ${error.message}`));
const worker = createWorker({ pool: db, workflows: [templateWorkflow('nightly-report', steps)] });
try {
  await worker.start(); // registers the workflow template:nightly-report

  const setSql = `select trellis.template_set('nightly-report', '${JSON.stringify(TEMPLATE)}')`;
  console.log(`$ psql -c "select trellis.template_set('nightly-report', '{...}')"`);
  console.log(`version ${await sql(database.url, db, setSql)}`);

  const startSql = `select trellis.template_start('nightly-report', '{"day": "2026-12-03"}')`;
  console.log(`$ psql -c "${startSql}"`);
  const runId = await sql(database.url, db, startSql);
  console.log(`started run ${runId}`);

  // Wait for the end (a poll of the row; see examples/plain-sql for NOTIFY).
  for (let i = 0; ; i++) {
    const { rows } = await db.query('select status from trellis.runs where id = $1', [runId]);
    if (['completed', 'failed', 'cancelled'].includes(rows[0]?.status)) break;
    if (i > 300) throw new Error('the run did not finish in 30 s');
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  const statusSql = `select status, output->'state'->>'report', output->'failed' from trellis.runs where id = '${runId}'`;
  console.log(`$ psql -c "${statusSql}"`);
  console.log(await sql(database.url, db, statusSql));
  const stepsSql = `select seq, name, status from trellis.steps where run_id = '${runId}' order by seq`;
  console.log(`$ psql -c "${stepsSql}"`);
  console.log(await sql(database.url, db, stepsSql));

  // A template naming a step nobody registered is refused by TypeScript; from SQL a cycle is.
  try {
    await db.query(`select trellis.template_set('loop', '{"steps": [{"name": "a", "next": "b"}, {"name": "b", "next": "a"}]}')`);
  } catch (error) {
    console.log(`cycle: ${(error as { code: string }).code} ${(error as Error).message}`);
  }
} finally {
  await worker.stop({ timeout: '10s' });
  await db.end();
  await database.stop();
}
