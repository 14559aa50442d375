/**
 * Streams (docs/workflows.md#streams):
 * 1. A run "summarises" documents one step at a time and writes each
 *    summary to its stream `summaries`; a reader started at the same time
 *    prints each as it commits, and stops at the close while the run goes
 *    on to publish.
 * 2. A second reader resumes after the second entry's cursor (as an SSE
 *    client reconnecting with Last-Event-ID would).
 * 3. The same entries from SQL: trellis.run_stream.
 *
 *   npx tsx examples/streams/main.ts
 * Uses DATABASE_URL when set, else an embedded PostgreSQL.
 */
import pg from 'pg';
import { z } from 'zod';
import { createClient, createWorker, defineWorkflow } from '../../src/index.ts';
import { exampleDatabase } from '../support/database.ts';

const summarise = defineWorkflow({ name: 'summarise', input: z.object({ docs: z.array(z.string()) }) }, async (ctx, { docs }) => {
  for (const [i, doc] of docs.entries()) {
    const summary = await ctx.step(`summary-${i}`, async () => {
      await new Promise((resolve) => setTimeout(resolve, 100)); // the model thinking
      return `${doc.split(' ').slice(0, 3).join(' ')}...`;
    });
    await ctx.writeStream('summaries', { doc: i, summary });
  }
  await ctx.closeStream('summaries');
  return ctx.step('publish', () => `published ${docs.length} summaries`);
});

const database = await exampleDatabase();
const pool = new pg.Pool({ connectionString: database.url });
pool.on('error', () => undefined); // idle connections closed by a stopping server
const worker = createWorker({ pool, workflows: [summarise] });
const client = createClient({ pool });
try {
  await worker.start();
  const run = await client.start(summarise, {
    docs: ['the quick brown fox jumps', 'a stitch in time saves nine', 'all that glitters is not gold', 'fortune favours the bold'],
  });

  // 1. Follow the run as it writes.
  const cursors: string[] = [];
  for await (const { value, cursor } of client.readStream<{ doc: number; summary: string }>(run.id, 'summaries', { timeout: '20s' })) {
    cursors.push(cursor);
    console.log(`live: #${value.doc} ${value.summary}`);
  }
  console.log(`live: closed; the run ${await run.result({ timeout: '20s' })}`);

  // 2. Resume after the second entry.
  const resumed: number[] = [];
  for await (const { value } of client.readStream<{ doc: number }>(run.id, 'summaries', { after: cursors[1] })) resumed.push(value.doc);
  console.log(`resumed: docs ${JSON.stringify(resumed)}`);

  // 3. From SQL.
  const { rows } = await pool.query<{ value: { doc: number } | null; closed: boolean }>(
    `select value, closed from trellis.run_stream($1, 'summaries')`, [run.id]);
  console.log(`sql: ${rows.map((r) => (r.closed ? 'closed' : `#${r.value!.doc}`)).join(' ')}`);
} finally {
  await worker.stop();
  await client.close();
  await pool.end();
  await database.stop();
}
