/**
 * Saving progress in a long step (docs/workflows.md#saving-progress-in-a-long-step):
 * a step imports 10 pages and saves how far it got after each. Its first
 * attempt fails at page 6 (the partner's API times out); the retry reads
 * `step.progress` and imports pages 6 to 9 only. The step's record shows
 * the progress while it runs.
 *
 *   npx tsx examples/step-progress/main.ts
 * Uses DATABASE_URL when set, else an embedded PostgreSQL.
 */
import pg from 'pg';
import { z } from 'zod';
import { createClient, createWorker, defineWorkflow } from '../../src/index.ts';
import { exampleDatabase } from '../support/database.ts';

const imported: string[] = [];

const importPages = defineWorkflow({ name: 'import-pages', input: z.object({ pages: z.number() }) }, async (ctx, { pages }) => {
  return ctx.step('import', async (step) => {
    const from = (step.progress as { next: number } | undefined)?.next ?? 0;
    console.log(`attempt ${step.attempt}: starting at page ${from}`);
    for (let page = from; page < pages; page++) {
      if (step.attempt === 1 && page === 6) throw new Error('partner API timed out');
      imported.push(`${page}`); // an idempotent write of the page would go here
      await step.saveProgress({ next: page + 1 });
    }
    return `${pages} pages`;
  }, { retry: { maxAttempts: 3, initialDelay: '100ms' } });
});

const database = await exampleDatabase();
const pool = new pg.Pool({ connectionString: database.url });
pool.on('error', () => undefined); // idle connections closed by a stopping server
const worker = createWorker({ pool, workflows: [importPages] });
const client = createClient({ pool });
try {
  await worker.start();
  const run = await client.start(importPages, { pages: 10 });
  console.log(`result: ${await run.result({ timeout: '20s' })}`);
  console.log(`imported: ${imported.join(' ')}`);
  const { rows } = await pool.query<{ status: string; attempts: number }>(
    `select status, attempts from trellis.steps where run_id = $1 and name = 'import'`, [run.id]);
  console.log(`step: ${rows[0]!.status} after ${rows[0]!.attempts} attempts`);
} finally {
  await worker.stop();
  await client.close();
  await pool.end();
  await database.stop();
}
