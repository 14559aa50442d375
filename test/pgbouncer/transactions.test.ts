/**
 * ctx.transaction through PgBouncer in transaction mode (`npm run
 * test:pgbouncer`): the body and the step's record commit together on the
 * one server connection PgBouncer lends the transaction, and a timed-out
 * body's query is cancelled on the backend that runs it (PgBouncer's own
 * cancel key names no backend, so the worker asks the transaction itself).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { z } from 'zod';
import { createClient } from '../../src/client/client.ts';
import { StepFailedError } from '../../src/errors.ts';
import { silentLogger } from '../../src/protocol/logger.ts';
import { migrate } from '../../src/schema/install.ts';
import { createWorker } from '../../src/worker/worker.ts';
import { defineWorkflow } from '../../src/workflow/define.ts';
import { createDatabase } from '../helpers/db.ts';
import { type Bouncer, startPgBouncer } from '../helpers/pgbouncer.ts';
import { waitFor } from '../helpers/wait.ts';

let database: Awaited<ReturnType<typeof createDatabase>>;
let bouncer: Bouncer;
before(async () => {
  database = await createDatabase();
  await migrate(database.url);
  const admin = new pg.Client({ connectionString: database.url });
  await admin.connect();
  await admin.query('create table bounced_ledger (id bigserial primary key, note text not null)');
  await admin.end();
  bouncer = await startPgBouncer(database.url, { max_prepared_statements: 200, default_pool_size: 4 });
});
after(async () => {
  await bouncer?.stop();
  await database?.drop();
});

const book = defineWorkflow({ name: 'bounced-tx', input: z.object({ note: z.string(), sleep: z.number() }) }, async (ctx, { note, sleep }) => {
  try {
    return await ctx.transaction('book', async ({ tx }) => {
      await tx.query('insert into bounced_ledger (note) values ($1)', [note]);
      if (sleep) await tx.query(`select pg_sleep(${sleep}) /* bounced ${note} */`);
      return note;
    }, { timeout: '500ms', retry: { maxAttempts: 1 } });
  } catch (error) {
    return error instanceof StepFailedError ? 'timed out' : String(error);
  }
});

describe('ctx.transaction through PgBouncer in transaction mode', () => {
  it('commits the body with its record once; a timed-out body is cancelled on its own backend', async () => {
    const worker = createWorker({ connectionString: bouncer.url, listenUrl: database.url, workflows: [book], logger: silentLogger, purge: false });
    const client = createClient({ connectionString: bouncer.url, listenUrl: database.url, logger: silentLogger, handoff: false });
    const direct = new pg.Client({ connectionString: database.url });
    await direct.connect();
    try {
      await worker.start();
      const quick = await client.start(book, { note: 'quick', sleep: 0 });
      assert.equal(await quick.result({ timeout: '30s' }), 'quick');
      const slow = await client.start(book, { note: 'slow', sleep: 60 });
      assert.equal(await slow.result({ timeout: '30s' }), 'timed out');
      await waitFor(async () => (await direct.query(`select count(*)::int as n from pg_stat_activity where query like '%pg_sleep(60) /* bounced slow%' and pid <> pg_backend_pid()`)).rows[0].n === 0,
        { what: 'the body\'s query cancelled', timeout: 10_000 });
      assert.deepEqual((await direct.query('select note from bounced_ledger order by id')).rows, [{ note: 'quick' }]);
    } finally {
      await direct.end();
      await worker.stop();
      await client.close();
    }
  });
});
