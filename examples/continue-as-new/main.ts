/**
 * A long-lived poller that keeps its history small with `ctx.continueAsNew`.
 * Each execution fetches one batch of events after a cursor, processes it,
 * pauses briefly, and — while there is more — continues as new with the next
 * cursor and the running count. The run keeps its id and key; only its
 * execution number (trellis.runs.execution) grows, and by default the steps of
 * earlier executions are deleted, so a poller that runs for months replays a
 * handful of steps, not millions. A second run passes `keepHistory: true` to
 * keep every execution's steps (for audit or debugging).
 *
 *   npx tsx examples/continue-as-new/main.ts
 * Uses DATABASE_URL when set, else an embedded PostgreSQL.
 */
import pg from 'pg';
import { z } from 'zod';
import { createClient, createWorker, defineWorkflow } from '../../src/index.ts';
import { exampleDatabase } from '../support/database.ts';

// The event feed being polled: 23 events, ids 1..23.
const FEED = Array.from({ length: 23 }, (_, i) => ({ id: i + 1, amount: (i + 1) * 10 }));
const BATCH = 5;

const feedPoller = defineWorkflow(
  {
    name: 'feed-poller',
    input: z.object({ cursor: z.number().int().default(0), processed: z.number().int().default(0), sum: z.number().default(0), keepHistory: z.boolean().default(false) }),
  },
  async (ctx, state) => {
    const batch = await ctx.step('fetch-batch', () => FEED.filter((e) => e.id > state.cursor).slice(0, BATCH));
    const sum = await ctx.step('process-batch', () => batch.reduce((total, e) => total + e.amount, 0));
    const next = { ...state, cursor: batch.at(-1)?.id ?? state.cursor, processed: state.processed + batch.length, sum: state.sum + sum };
    if (batch.length < BATCH) return { cursor: next.cursor, processed: next.processed, sum: next.sum };
    await ctx.sleep('poll-interval', '50ms');
    // Ends this execution; the run starts over with `next` as its input and a fresh history.
    return ctx.continueAsNew(next, { keepHistory: state.keepHistory });
  },
);

const database = await exampleDatabase();
const pool = new pg.Pool({ connectionString: database.url });
pool.on('error', () => undefined); // idle connections closed by a stopping server
const worker = createWorker({ pool, workflows: [feedPoller] });
const client = createClient({ pool });
const suffix = crypto.randomUUID().slice(0, 8); // a fresh key each time the demo runs against the same database
try {
  await worker.start();
  const key = `feed-poller-${suffix}`;
  const run = await client.start(feedPoller, {}, { key });
  const output = await run.result({ timeout: '30s' });
  console.log(`result: ${JSON.stringify(output)}`);
  // Five executions, still one run: look it up by its key.
  const { rows } = await pool.query(
    `select id, status, execution, input from trellis.runs where workflow = 'feed-poller' and key = $1`, [key]);
  const row = rows[0];
  console.log(`runs with key ${key}: ${rows.length}; same id as started: ${row.id === run.id}; status: ${row.status}`);
  console.log(`execution: ${row.execution}, its input: ${JSON.stringify(row.input)}`);
  const kept = await pool.query('select execution, name from trellis.steps where run_id = $1 order by execution, seq', [run.id]);
  console.log(`steps kept: ${kept.rows.map((s) => `${s.execution}:${s.name}`).join(', ')}`);

  // The same poller keeping every execution's steps.
  const audited = await client.start(feedPoller, { keepHistory: true }, { key: `${key}-audited` });
  const auditedOutput = await audited.result({ timeout: '30s' });
  const perExecution = await pool.query(
    'select execution, count(*)::int as steps from trellis.steps where run_id = $1 group by execution order by execution', [audited.id]);
  console.log(`keepHistory result: ${JSON.stringify(auditedOutput)}`);
  console.log(`keepHistory steps per execution: ${perExecution.rows.map((r) => `${r.execution}=${r.steps}`).join(', ')}`);
} finally {
  await worker.stop();
  await client.close();
  await pool.end();
  await database.stop();
}
