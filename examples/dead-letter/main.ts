/**
 * The dead letter and its automatic resume (docs/workflows.md#cancellation-pause-dead-letter-retry):
 * 1. A sync calls a partner that is down. After 2 failed attempts
 *    (`pauseAfter: 2`) the run is parked, and `resumeAfter: '2s'` sets when
 *    it is tried again (`resumeAt`).
 * 2. The partner comes back; the workers' resumes duty resumes the run and
 *    it completes, with no operator involved.
 * 3. Another parked run is held by an operator's pause: it is not resumed
 *    until the operator resumes it.
 * 4. `maxResumes: 2`: a run whose partner never comes back is resumed
 *    automatically twice, then left parked for an operator.
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

const hopeless = defineWorkflow({ name: 'legacy-sync', input: z.object({}), pauseAfter: 1, resumeAfter: '300ms', maxResumes: 2 },
  async (ctx) => ctx.step('push', () => {
    throw new Error('legacy partner retired (410)');
  }, { retry: { maxAttempts: 1 } }));

const database = await exampleDatabase();
const pool = new pg.Pool({ connectionString: database.url });
pool.on('error', () => undefined); // idle connections closed by a stopping server
// The resumes duty looks every 200 ms here (default: every second). Quiet: the failures would each log a warning.
const worker = createWorker({ pool, workflows: [sync, hopeless], resumes: { interval: '200ms' }, logger: silentLogger });
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

  // 4. At most two automatic resumes: then parked for an operator.
  const third = await client.start(hopeless, {});
  const end = Date.now() + 20_000;
  for (let r = await client.get(third.id); !(r?.status === 'paused' && r.autoResumes === 2); r = await client.get(third.id)) {
    if (Date.now() > end) throw new Error('the capped run was not resumed twice within 20 s');
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  await new Promise((r) => setTimeout(r, 1_000)); // longer than resumeAfter: no third resume
  const gaveUp = await client.get(third.id);
  console.log(`capped: ${gaveUp!.status} after ${gaveUp!.autoResumes} automatic resumes, resumeAt ${gaveUp!.resumeAt}`);
  await client.cancel(third.id);
  await third.result({ timeout: '20s' }).catch(() => undefined); // it ends cancelled once its code has seen the cancel
} finally {
  await worker.stop();
  await client.close();
  await pool.end();
  await database.stop();
}
