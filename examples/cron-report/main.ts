/**
 * Cron schedules and role leases.
 * 1. A daily report: `client.schedules.set('daily-report', { cron: '0 7 * * *',
 *    timeZone: 'Europe/Berlin', ... })`. Its next fire time is a column of
 *    trellis.schedules, so plain SQL shows what fires next.
 * 2. The same report every 2 seconds (a 6-field cron, seconds first) to watch
 *    ticks become runs: each tick's run has the key schedule:<name>:<tick>,
 *    so a tick fires once even if the worker holding the ticker dies.
 * 2b. Manual ticks: `client.schedules.backfill(name, { from })` starts the
 *    runs of a range's ticks that have none (a tick that ran is found by its
 *    key: never run twice), and `client.schedules.trigger(name)` runs one now.
 * 3. A role of your own: `worker.role('report-mailer', fn)` runs on one
 *    replica at a time. Its writes are fenced with trellis.role_check(name,
 *    token): a write under an older token is refused.
 * 4. trellis.roles: who holds each role, its token, its last run.
 *
 *   npx tsx examples/cron-report/main.ts
 * Uses DATABASE_URL when set, else an embedded PostgreSQL.
 */
import pg from 'pg';
import { z } from 'zod';
import { createClient, createWorker, defineWorkflow } from '../../src/index.ts';
import { exampleDatabase } from '../support/database.ts';

const report = defineWorkflow({ name: 'team-report', input: z.object({ team: z.string() }) }, async (ctx, { team }) => {
  const orders = await ctx.step('count-orders', () => team.length * 7);
  return `${team}: ${orders} orders`;
});

const database = await exampleDatabase();
const pool = new pg.Pool({ connectionString: database.url });
const worker = createWorker({ pool, workflows: [report], schedules: { interval: '100ms' } });
const client = createClient({ pool });
try {
  await pool.query('create table if not exists public.report_mail (token bigint, body text)');
  let firstToken: string | undefined;
  worker.role('report-mailer', async ({ token }) => {
    firstToken ??= token;
    // Fenced: inserts only while this lease is the role's current one.
    await pool.query(`insert into public.report_mail (token, body) select $1, 'reports mailed' where trellis.role_check('report-mailer', $1)`, [token]);
  }, { every: '200ms' });
  await worker.start();

  // 1. Daily at 07:00 in Berlin (DST handled by croner), skipping a run while the last one is still going.
  const daily = await client.schedules.set('daily-report', {
    cron: '0 7 * * *', timeZone: 'Europe/Berlin', workflow: report, input: { team: 'ops' }, overlap: 'skip',
  });
  const berlin = new Intl.DateTimeFormat('en-GB', { timeZone: 'Europe/Berlin', hour: '2-digit', minute: '2-digit' });
  console.log(`daily-report next fires at ${berlin.format(daily.nextAt as Date)} Europe/Berlin`);
  const { rows: [shown] } = await pool.query(`select name, cron, time_zone, next_at = $1 as same from trellis.schedules where name = 'daily-report'`, [daily.nextAt]);
  console.log(`select * from trellis.schedules: ${shown.name} | ${shown.cron} | ${shown.time_zone} | next_at stored: ${shown.same}`);

  // 2. Every 2 seconds: wait for two ticks to become runs, then stop it. catchUp: a tick the
  //    ticker reaches late (a busy machine) still runs, so the first two runs are two consecutive ticks.
  await client.schedules.set('report-every-2s', { cron: '*/2 * * * * *', workflow: report, input: { team: 'sales' }, overlap: 'allow', catchUp: 5 });
  const deadline = Date.now() + 20_000;
  let runs: { id: string; key: string }[] = [];
  while (runs.length < 2) {
    if (Date.now() > deadline) throw new Error('the schedule did not fire twice within 20 s');
    await new Promise((r) => setTimeout(r, 100));
    runs = (await pool.query(`select id, key from trellis.runs where metadata->>'schedule' = 'report-every-2s' order by key`)).rows;
  }
  await client.schedules.pause('report-every-2s');
  for (const run of runs.slice(0, 2)) {
    console.log(`tick ${run.key.slice('schedule:report-every-2s:'.length)} -> ${await client.result(run.id, { timeout: '20s' })}`);
  }
  const paused = await client.schedules.get('report-every-2s');
  console.log(`paused: ${paused?.paused}, fired: ${paused?.fired}`);

  // 2b. Backfill the paused schedule's last 10 seconds: its ticks that ran are found by their
  //     keys, the others (before it was set, and while paused) start now. Then the daily report, now.
  const filled = await client.schedules.backfill('report-every-2s', { from: new Date(Date.now() - 10_000) });
  const count = (outcome: string) => filled.filter((t) => t.outcome === outcome).length;
  console.log(`backfill of the last 10 s: ${count('existing')} ticks had run, ${count('started')} started now`);
  const triggered = await client.schedules.trigger('daily-report');
  console.log(`daily-report triggered: ${triggered.outcome} -> ${await client.result(triggered.runId as string, { timeout: '20s' })}`);
  await client.schedules.delete('report-every-2s');

  // 3. The role: held by this worker; a write under a token older than the current one is refused.
  while (firstToken === undefined) await new Promise((r) => setTimeout(r, 50));
  const { rows: [mail] } = await pool.query('select count(*)::int as n from public.report_mail where token = $1', [firstToken]);
  console.log(`report-mailer held with token ${firstToken}, fenced writes: ${mail.n > 0 ? 'some' : 'none'}`);
  try {
    await pool.query(`select trellis.role_check('report-mailer', $1)`, [Number(firstToken) - 1]);
  } catch (error) {
    console.log(`stale token refused: ${(error as { code?: string | undefined }).code}`);
  }

  // 4. The roles, as `select * from trellis.roles` shows them.
  for (const role of await client.roles.list()) {
    console.log(`role ${role.name}: held ${role.held}, by this worker ${role.holder === worker.id}`);
  }
} finally {
  await worker.stop();
  await client.close();
  await pool.end();
  await database.stop();
}
