/**
 * The dead letter and its automatic resume (docs/workflows.md#cancellation-pause-dead-letter-retry):
 * 1. A sync calls a partner that is down. After 2 failed attempts
 *    (`pauseAfter: 2`) the run is parked, and `resumeAfter: '2s'` sets when
 *    it is tried again (`resumeAt`).
 * 2. The partner comes back; the workers' resumes duty resumes the run and
 *    it completes, with no operator involved.
 * 3. Another parked run is held by an operator's pause: it is not resumed
 *    until the operator resumes it.
 *
 *   npx tsx examples/dead-letter/main.ts
 * Uses DATABASE_URL when set, else an embedded PostgreSQL.
 */
import pg from 'pg';
import { z } from 'zod';
import { createClient, createWorker, defineWorkflow, silentLogger } from '../../src/index.ts';
import { exampleDatabase } from '../support/database.ts';

let partnerUp = false;
const sync = defineWorkflow({ name: 'partner-sync', input: z.object({ account: z.number() }), pauseAfter: 2, resumeAfter: '2s' },
  async (ctx, { account }) => ctx.step('push', () => {
    if (!partnerUp) throw new Error('partner unavailable (503)');
    return `account ${account} synced`;
  }, { retry: { initialDelay: '100ms' } }));

const database = await exampleDatabase();
const pool = new pg.Pool({ connectionString: database.url });
pool.on('error', () => undefined); // idle connections closed by a stopping server
// The resumes duty looks every 200 ms here (default: every second). Quiet: the failures would each log a warning.
const worker = createWorker({ pool, workflows: [sync], resumes: { interval: '200ms' }, logger: silentLogger });
const client = createClient({ pool });

/** Poll the run's status until it is `status` (bounded: 20 s). */
async function until(id: string, status: string): Promise<void> {
  const end = Date.now() + 20_000;
  while ((await client.get(id))?.status !== status) {
    if (Date.now() > end) throw new Error(`run ${id} never became ${status}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

try {
  await worker.start();

  // 1. Parked after two failed attempts, with a time to be tried again.
  const first = await client.start(sync, { account: 7 });
  await until(first.id, 'paused');
  const parked = await client.get(first.id);
  console.log(`parked: ${parked!.status}, error "${(parked!.error as { message: string }).message}", resumed about ${
    Math.round((parked!.resumeAt!.getTime() - parked!.updatedAt.getTime()) / 1000)} s later`);

  // 2. The partner is back: the duty resumes the run, which completes.
  partnerUp = true;
  console.log(`resumed by itself: ${await first.result({ timeout: '20s' })}`);

  // 3. An operator's pause holds a parked run.
  partnerUp = false;
  const second = await client.start(sync, { account: 8 });
  await until(second.id, 'paused');
  await client.pause(second.id, 'investigating the partner');
  partnerUp = true;
  await new Promise((r) => setTimeout(r, 3_000)); // longer than resumeAfter: it stays parked
  const held = await client.get(second.id);
  console.log(`held by the operator: ${held!.status}, resumeAt ${held!.resumeAt}`);
  await client.resume(second.id);
  console.log(`resumed by the operator: ${await second.result({ timeout: '20s' })}`);
} finally {
  await worker.stop();
  await client.close();
  await pool.end();
  await database.stop();
}
