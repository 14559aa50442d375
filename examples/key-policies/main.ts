/**
 * Key policies (docs/workflows.md#keys-idempotent-singleton-debounced-superseding-starts):
 * 1. Idempotent (the default): starting `invoice-7` twice gives one run.
 * 2. A singleton ('reuse'): one sync per account at a time; a start while
 *    it is under way returns it, a start after it finished runs a new sync.
 *    The finished run keeps its key as `formerKey`.
 * 3. A debounce ('replace'): five edits of a document within moments each
 *    start a re-index 2 s ahead with the newest revision; the run not yet
 *    begun takes each new input and time, so one re-index runs, of the last
 *    revision.
 * 4. Cancel in progress ('supersede'): a profile rebuild waits for its
 *    data; a newer request cancels it (it cleans up) and takes the key.
 * 5. The same from SQL: run_start's key_policy.
 *
 *   npx tsx examples/key-policies/main.ts
 * Uses DATABASE_URL when set, else an embedded PostgreSQL.
 */
import pg from 'pg';
import { z } from 'zod';
import { CancelledError, createClient, createWorker, defineWorkflow } from '../../src/index.ts';
import { exampleDatabase } from '../support/database.ts';

const invoice = defineWorkflow({ name: 'invoice', input: z.object({ order: z.number() }) }, async (ctx, { order }) =>
  ctx.step('issue', () => `invoice for order ${order}`));

const syncAccount = defineWorkflow({ name: 'sync-account', input: z.object({ account: z.number(), reason: z.string() }) },
  async (ctx, { account, reason }) => ctx.step('sync', () => `synced account ${account} (${reason})`));

const indexed: number[] = [];
const reindex = defineWorkflow({ name: 'reindex', input: z.object({ doc: z.string(), rev: z.number() }) }, async (ctx, { doc, rev }) =>
  ctx.step('index', () => {
    indexed.push(rev);
    return `indexed ${doc} at revision ${rev}`;
  }));

const rebuild = defineWorkflow({ name: 'rebuild-profile', input: z.object({ request: z.number() }) }, async (ctx, { request }) => {
  try {
    await ctx.waitForSignal('data-ready');
    return ctx.step('rebuild', () => `profile rebuilt for request ${request}`);
  } catch (error) {
    if (error instanceof CancelledError) await ctx.nonCancellable(() => ctx.step('clean-up', () => console.log(`supersede: request ${request} cleans up`)));
    throw error;
  }
});

const database = await exampleDatabase();
const pool = new pg.Pool({ connectionString: database.url });
pool.on('error', () => undefined); // idle connections closed by a stopping server
const worker = createWorker({ pool, workflows: [invoice, syncAccount, reindex, rebuild] });
const client = createClient({ pool });
try {
  await worker.start();

  // 1. Idempotent.
  const a = await client.start(invoice, { order: 7 }, { key: 'invoice-7' });
  const b = await client.start(invoice, { order: 7 }, { key: 'invoice-7' });
  console.log(`idempotent: same run ${a.id === b.id}; ${await a.result({ timeout: '20s' })}`);

  // 2. A singleton.
  const first = await client.start(syncAccount, { account: 42, reason: 'signup' }, { key: 'account-42', keyPolicy: 'reuse' });
  console.log(`singleton: ${await first.result({ timeout: '20s' })}`);
  const second = await client.start(syncAccount, { account: 42, reason: 'plan change' }, { key: 'account-42', keyPolicy: 'reuse' });
  console.log(`singleton: a new run after the first finished ${second.id !== first.id}; ${await second.result({ timeout: '20s' })}`);
  const old = await client.get(first.id);
  console.log(`singleton: the first run's key ${JSON.stringify(old!.key)}, formerKey ${JSON.stringify(old!.formerKey)}`);

  // 3. A debounce: the last revision of a burst is indexed, once.
  const handles = [];
  for (let rev = 1; rev <= 5; rev++) {
    handles.push(await client.start(reindex, { doc: 'handbook', rev }, {
      key: 'reindex-handbook', keyPolicy: 'replace', runAt: new Date(Date.now() + 2_000),
    }));
  }
  console.log(`debounce: ${new Set(handles.map((h) => h.id)).size} run for 5 starts; ${await handles[4]!.result({ timeout: '20s' })}`);
  console.log(`debounce: revisions indexed ${JSON.stringify(indexed)}`);
  const { rows: events } = await pool.query<{ kind: string; n: number }>(
    `select kind, count(*)::int as n from trellis.events where run_id = $1 and kind in ('started', 'replaced') group by kind order by kind`,
    [handles[0]!.id]);
  console.log(`debounce: events ${events.map((e) => `${e.kind} x${e.n}`).join(', ')}`);

  // 4. Cancel in progress: the newest request wins.
  const older = await client.start(rebuild, { request: 1 }, { key: 'profile-ada', keyPolicy: 'supersede' });
  for (let i = 0; (await client.get(older.id))?.status !== 'waiting'; i++) {
    if (i === 400) throw new Error('the first rebuild did not start waiting within 20 s');
    await new Promise((r) => setTimeout(r, 50));
  }
  const newer = await client.start(rebuild, { request: 2 }, { key: 'profile-ada', keyPolicy: 'supersede' });
  const outcome = await older.result({ timeout: '20s' }).then(() => 'completed', (e: unknown) => (e instanceof CancelledError ? 'cancelled' : String(e)));
  console.log(`supersede: the older run ${outcome}; the key's run is the newer ${(await client.get({ workflow: rebuild, key: 'profile-ada' }))?.id === newer.id}`);
  await client.signal({ workflow: rebuild, key: 'profile-ada' }, 'data-ready', null);
  console.log(`supersede: ${await newer.result({ timeout: '20s' })}`);

  // 5. From SQL: reuse the key of the finished invoice run.
  const { rows: [again] } = await pool.query<{ id: string }>(
    `select trellis.run_start('invoice', '{"order": 7}', '{"key": "invoice-7", "key_policy": "reuse"}') as id`);
  console.log(`sql: a new run ${again!.id !== a.id}; ${await client.result(again!.id, { timeout: '20s' })}`);
  const { rows: holders } = await pool.query<{ key: string | null; former_key: string | null }>(
    `select key, former_key from trellis.runs where workflow = 'invoice' order by created_at`);
  console.log(`sql: invoice runs ${JSON.stringify(holders.map((r) => [r.key, r.former_key]))}`);
} finally {
  await worker.stop();
  await client.close();
  await pool.end();
  await database.stop();
}
