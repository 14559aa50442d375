/**
 * Driving Trellis from plain SQL. A TypeScript worker serves the `greet`
 * workflow; everything else — starting runs, waiting for them, reading their
 * state and steps — is plain SQL over `pg` (no Trellis client), then the same
 * again through `psql` when it is on the PATH. See README.md for the psql
 * session.
 *
 *   npx tsx examples/plain-sql/main.ts           the demo, then exit
 *   npx tsx examples/plain-sql/main.ts --serve   only the worker, until Ctrl-C,
 *                                                for your own psql session
 * Uses DATABASE_URL when set, else an embedded PostgreSQL.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import pg from 'pg';
import { z } from 'zod';
import { createWorker, defineWorkflow } from '../../src/index.ts';
import { exampleDatabase } from '../support/database.ts';

const run = promisify(execFile);

// The only TypeScript the engine needs: the workflow code, run by a worker.
// Starting the worker registers `greet` in trellis.workflows, which is what
// lets trellis.run_start('greet', …) find it by name.
const greet = defineWorkflow(
  { name: 'greet', input: z.object({ name: z.string() }) },
  async (ctx, { name }) => {
    const greeting = await ctx.step('compose', () => `Hello, ${name}!`);
    const shouted = await ctx.step('shout', () => greeting.toUpperCase());
    return { greeting, shouted };
  },
);

const FINISHED = ['completed', 'failed', 'cancelled'];

/**
 * Resolve once run `id` has finished. Subscribes first, then checks the row:
 * a run that finished before we looked is seen by the query, one that
 * finishes later by the notification. NOTIFY is only a hint, so a slow poll
 * backs it up.
 */
function waitForRun(listener: pg.Client, db: pg.Pool, id: string, timeoutMs = 10_000): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    let done = false;
    const check = async () => {
      const { rows } = await db.query('select status from trellis.runs where id = $1', [id]);
      if (FINISHED.includes(rows[0]?.status)) finish();
    };
    const onNotification = (message: pg.Notification) => {
      // The payload is a comma-separated list of finished run ids.
      if (message.channel !== 'trellis:run_finished') return;
      if ((message.payload ?? '').split(',').includes(id)) {
        console.log(`NOTIFY trellis:run_finished: ${message.payload}`);
        finish();
      }
    };
    const poll = setInterval(() => void check().catch(fail), 1000);
    const timer = setTimeout(() => fail(new Error(`run ${id} did not finish within ${timeoutMs} ms`)), timeoutMs);
    function cleanUp() {
      done = true;
      clearInterval(poll);
      clearTimeout(timer);
      listener.off('notification', onNotification);
    }
    function finish() {
      if (!done) cleanUp(), resolve();
    }
    function fail(error: unknown) {
      if (!done) cleanUp(), reject(error);
    }
    listener.on('notification', onNotification);
    check().catch(fail);
  });
}

async function printRun(db: pg.Pool, id: string): Promise<void> {
  const { rows: runs } = await db.query('select status, output from trellis.runs where id = $1', [id]);
  console.log(`status: ${runs[0]?.status}`);
  console.log(`output: ${JSON.stringify(runs[0]?.output)}`);
  const { rows: steps } = await db.query(
    'select seq, name, status, output from trellis.steps where run_id = $1 order by seq',
    [id],
  );
  for (const s of steps) console.log(`step ${s.seq} ${s.name}: ${s.status} ${JSON.stringify(s.output)}`);
}

/** Run one statement through psql; null when psql is not installed. */
async function psql(url: string, sql: string, flags: string[] = []): Promise<string | null> {
  try {
    const { stdout } = await run('psql', [url, '-X', '-v', 'ON_ERROR_STOP=1', ...flags, '-c', sql]);
    return stdout;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw error;
  }
}

/** The demo: start, wait and read with SQL strings only, then the same through psql. */
async function demo(db: pg.Pool, listener: pg.Client, url: string): Promise<void> {
  // 1. Start a run with plain SQL. The key makes the start idempotent: running
  //    this again returns the same run id instead of starting a second run.
  const { rows } = await db.query(
    `select trellis.run_start('greet', '{"name":"Ada"}', '{"key":"greet-ada"}') as id`,
  );
  const id = rows[0].id as string;
  console.log(`started run ${id}`);

  // 2. Wait for it, then read its row and its steps.
  await waitForRun(listener, db, id);
  await printRun(db, id);

  // 3. Errors are SQLSTATEs TRnnn: TR002 is "not found".
  try {
    await db.query(`select trellis.run_start('no-such-workflow', '{}')`);
  } catch (error) {
    const e = error as { code?: string | undefined; message?: string | undefined };
    console.log(`unknown workflow: ${e.code} ${e.message}`);
  }

  // 3b. The input is checked against the shape of greet's zod schema, which
  //     the worker registered: TR001, and no run is written. The same reason
  //     is available without starting, for a form or a trigger.
  try {
    await db.query(`select trellis.run_start('greet', '{"name": 42}')`);
  } catch (error) {
    const e = error as { code?: string | undefined; message?: string | undefined };
    console.log(`bad input: ${e.code} ${e.message}`);
  }
  const { rows: why } = await db.query(`select trellis.workflow_input_error('greet', '{}') as reason`);
  console.log(`workflow_input_error: ${why[0].reason}`);

  // 4. The same from psql, if it is installed.
  const started = await psql(
    url,
    `select trellis.run_start('greet', '{"name":"Grace"}', '{"key":"greet-grace"}')`,
    ['-At'],
  );
  if (started === null) {
    console.log('psql is not on the PATH; skipping the psql part');
  } else {
    const psqlId = started.trim();
    console.log(`psql started run ${psqlId}`);
    await waitForRun(listener, db, psqlId);
    const statusSql = `select status, output from trellis.runs where id = '${psqlId}'`;
    console.log(`$ psql "$DATABASE_URL" -c "${statusSql}"`);
    process.stdout.write((await psql(url, statusSql)) ?? '');
    const stepsSql = `select seq, name, status, output from trellis.steps where run_id = '${psqlId}' order by seq`;
    console.log(`$ psql "$DATABASE_URL" -c "${stepsSql}"`);
    process.stdout.write((await psql(url, stepsSql)) ?? '');
  }
}

const database = await exampleDatabase();
const db = new pg.Pool({ connectionString: database.url });
// An idle pooled connection that the server closes (a restart, an admin's
// pg_terminate_backend: SQLSTATE 57P01) emits 'error' on the pool; without a
// listener that would crash the process. The pool replaces it on next use.
db.on('error', (error) => console.error(`idle connection closed: ${error.message}`));
const listener = new pg.Client({ connectionString: database.url });
listener.on('error', (error) => console.error(`listener connection lost: ${error.message}`));
const worker = createWorker({ pool: db, workflows: [greet] });
try {
  await worker.start();
  if (process.argv.includes('--serve')) {
    console.log(`a worker serves "greet"; in another terminal: psql "${database.url}" (Ctrl-C stops)`);
    // Handling the signals ourselves keeps the embedded server up until the
    // worker has drained (see src/testing/embedded-postgres.ts); a second
    // Ctrl-C exits at once, still removing the embedded server.
    const signal = await new Promise<string>((resolve) => {
      process.once('SIGINT', resolve);
      process.once('SIGTERM', resolve);
      process.once('SIGHUP', resolve);
    });
    console.log(`${signal}: stopping the worker`);
  } else {
    await listener.connect();
    // run_finished is sent only while some session watches for it (decision 0029).
    await listener.query('listen "trellis:run_finished"; select trellis.run_finished_watch()');
    await demo(db, listener, database.url);
  }
} finally {
  await listener.end().catch(() => undefined);
  await worker.stop({ timeout: '10s' });
  await db.end();
  await database.stop();
}
