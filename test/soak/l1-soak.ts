/**
 * L1 soak (`npm run test:soak`; not part of `npm test`): measure the peak
 * rate of three-step runs two workers complete, then start runs at 70% of
 * it for SOAK_MINUTES (default 30) with a retention of 1 minute (the
 * workers purge). Each minute: runs done, p50/p95 start-to-end latency (the
 * database's created_at to finished_at), the size of the trellis tables.
 * At the end: latency drift (p50 of the last minute against the first
 * full minute; goal <= 20%), size at the end against the size at a sixth
 * of the run (30 min against 5 min; goal <= 2x), deadlocks (goal 0).
 * env: DATABASE_URL (else an embedded server), SOAK_MINUTES, PEAK_SECONDS (20).
 */
import pg from 'pg';
import { z } from 'zod';
import { createClient } from '../../src/client/client.ts';
import { migrate } from '../../src/schema/install.ts';
import { startEmbeddedPostgres } from '../../src/testing/embedded-postgres.ts';
import { createWorker } from '../../src/worker/worker.ts';
import { defineWorkflow } from '../../src/workflow/define.ts';
import { silentLogger } from '../../src/protocol/logger.ts';

const minutes = Number(process.env.SOAK_MINUTES ?? 30);
const peakSeconds = Number(process.env.PEAK_SECONDS ?? 20);
const server = process.env.DATABASE_URL ? undefined : await startEmbeddedPostgres();
const url = process.env.DATABASE_URL ?? server!.connectionString;
const pool = new pg.Pool({ connectionString: url, max: 4 });
await migrate(pool);
await pool.query('truncate trellis.runs cascade');

const soak = defineWorkflow({ name: 'l1-soak', input: z.object({ n: z.number() }) }, async (ctx, { n }) => {
  let v = n;
  for (const s of ['one', 'two', 'three']) v = await ctx.step(s, () => v + 1);
  return v;
});
const client = createClient({ connectionString: url, logger: silentLogger, handoff: false });
const workers = [1, 2].map((i) => createWorker({ connectionString: url, workflows: [soak], id: `soak-${i}`, logger: silentLogger,
  purge: { interval: '5s' } }));
for (const w of workers) await w.start();
await client.setRetention('1 minute', { workflow: soak }); // after the workers registered it

const one = async (sql: string) => Number((await pool.query(sql)).rows[0].n);
const size = () => one(`select sum(pg_total_relation_size(c.oid))::bigint as n from pg_class c
  where c.relnamespace = 'trellis'::regnamespace and c.relkind = 'r'`);
const deadlocks = () => one('select deadlocks as n from pg_stat_database where datname = current_database()');

/** Start runs at `perSecond` until `until` (ms since epoch); returns runs started. */
async function drive(perSecond: number, until: number): Promise<number> {
  let n = 0;
  const t0 = Date.now();
  const pending = new Set<Promise<unknown>>();
  while (Date.now() < until) {
    const due = t0 + (n * 1000) / perSecond;
    if (due > Date.now()) await new Promise((r) => setTimeout(r, due - Date.now()));
    const p = client.start(soak, { n: n++ }).catch(() => undefined).finally(() => pending.delete(p));
    pending.add(p);
    if (pending.size > 500) await Promise.race(pending);
  }
  await Promise.all(pending);
  return n;
}

// Peak: as fast as they go (at most 2,000/s asked), completions per second over the window.
const peakStart = Date.now();
const started = await drive(2000, peakStart + peakSeconds * 1000);
const done = await one(`select count(*) as n from trellis.runs where status = 'completed'`);
const peak = done / ((Date.now() - peakStart) / 1000);
const rate = Math.max(1, Math.round(peak * 0.7));
console.log(`L1 peak: ${started} started, ${done} completed in ${peakSeconds} s: ${peak.toFixed(0)} runs/s; soak at 70%: ${rate}/s for ${minutes} min`);
await new Promise((r) => setTimeout(r, 5000));
const deadlocks0 = await deadlocks();

const samples: { minute: number; done: number; p50: number; p95: number; bytes: number }[] = [];
const soakStart = Date.now();
const driving = drive(rate, soakStart + minutes * 60_000);
for (let m = 1; m <= minutes; m++) {
  await new Promise((r) => setTimeout(r, soakStart + m * 60_000 - Date.now()));
  const { rows: [l] } = await pool.query(`select count(*)::int as done,
      percentile_cont(0.5) within group (order by extract(epoch from finished_at - created_at) * 1000) as p50,
      percentile_cont(0.95) within group (order by extract(epoch from finished_at - created_at) * 1000) as p95
    from trellis.runs where status = 'completed' and finished_at > now() - interval '1 minute'`);
  const s = { minute: m, done: l.done, p50: Math.round(l.p50 ?? 0), p95: Math.round(l.p95 ?? 0), bytes: await size() };
  samples.push(s);
  console.log(`L1 minute ${m}: ${s.done} runs done, p50 ${s.p50} ms, p95 ${s.p95} ms, trellis tables ${(s.bytes / 1e6).toFixed(1)} MB; load ${(await import('node:os')).loadavg()[0]!.toFixed(1)}`);
}
await driving;
const first = samples[Math.min(1, samples.length - 1)]!;
const last = samples[samples.length - 1]!;
const atSixth = samples[Math.max(0, Math.round(minutes / 6) - 1)]!;
const drift = first.p50 ? last.p50 / first.p50 - 1 : 0;
console.log(`L1 result (${minutes} min at ${rate} runs/s): latency drift ${(100 * drift).toFixed(0)}% (p50 minute ${first.minute} ${first.p50} ms -> minute ${last.minute} ${last.p50} ms; goal <= 20%), ` +
  `table size ${(last.bytes / atSixth.bytes).toFixed(2)}x of minute ${atSixth.minute} (goal <= 2x), deadlocks ${(await deadlocks()) - deadlocks0} (goal 0)`);
for (const w of workers) await w.stop({ timeout: '5s' });
await client.close();
await pool.end();
await server?.stop();
