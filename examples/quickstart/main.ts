/**
 * Quickstart (`npm run demo`): a 3-step workflow started by a client,
 * executed by a worker, and its rows read back with plain SQL.
 * Uses DATABASE_URL when set, else an embedded PostgreSQL.
 */
import pg from 'pg';
import { z } from 'zod';
import { createClient, createWorker, defineWorkflow } from '../../src/index.ts';
import { exampleDatabase } from '../support/database.ts';

// A workflow is an async function of durable steps. Each step runs once; its
// result is checkpointed in Postgres and replayed if the run resumes elsewhere.
const onboard = defineWorkflow(
  { name: 'onboard', input: z.object({ email: z.string().email() }) },
  async (ctx, { email }) => {
    const user = await ctx.step('create-account', () => ({ id: `user-${email.split('@')[0]}`, email }));
    const mail = await ctx.step('send-welcome-email', ({ idempotencyKey }) => ({ sent: true, idempotencyKey }),
      { retry: { maxAttempts: 5, backoff: 'exponential' }, timeout: '10s' });
    const plan = await ctx.step('assign-plan', () => 'free-trial');
    return { userId: user.id, welcomed: mail.sent, plan };
  },
);

const database = await exampleDatabase();
const pool = new pg.Pool({ connectionString: database.url });
// Idle connections may be closed under us (server shutdown, failover): log, don't crash.
pool.on('error', (error) => console.error('idle connection error:', error.message));
const worker = createWorker({ pool, workflows: [onboard] });
const client = createClient({ pool });
try {
  await worker.start();
  const run = await client.start(onboard, { email: 'ada@example.com' }, { key: 'onboard-ada' });
  console.log(`started run ${run.id}`);
  const output = await run.result({ timeout: '30s' });
  console.log('result:', output);

  // Everything is plain rows in the trellis schema.
  const { rows: runs } = await pool.query(
    'select workflow, version, status, attempt, output, finished_at - created_at as took from trellis.runs where id = $1',
    [run.id],
  );
  console.log('trellis.runs:');
  console.table(runs.map((r) => ({ ...r, output: JSON.stringify(r.output), took: `${r.took.milliseconds ?? 0} ms` })));
  const { rows: steps } = await pool.query(
    'select seq, name, status, attempts, output from trellis.steps where run_id = $1 order by seq',
    [run.id],
  );
  console.log('trellis.steps:');
  console.table(steps.map((s) => ({ ...s, output: JSON.stringify(s.output) })));
} finally {
  await worker.stop();
  await client.close();
  await pool.end();
  await database.stop();
}
