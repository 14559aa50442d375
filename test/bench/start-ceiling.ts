/**
 * `npx tsx test/bench/start-ceiling.ts`: what each part of `_run_start`
 * costs, by its ceiling (issue 18). Each variant is a database whose
 * `_run_start` has one part cut out of its text (or an index or the row
 * CHECK dropped); one connection per database calls `run_start` N (3,000)
 * times in a transaction that is rolled back, rounds interleaved (REPS, 5),
 * and the backend's CPU per start (/proc schedstat) is printed per round and
 * as the median. VARIANTS=base,noEvent,... picks some. A variant whose
 * marker text is no longer in sql/200_runs.sql fails at once: update it with
 * the function. COLD=k: instead, k new sessions per round and variant, each
 * timing its first start (the cold start's cost by part).
 */
import { readFileSync } from 'node:fs';
import pg from 'pg';
import { z } from 'zod';
import { createClient } from '../../src/client/client.ts';
import { silentLogger } from '../../src/protocol/logger.ts';
import { defineWorkflow } from '../../src/workflow/define.ts';
import { processCpuPrecise } from './cpu.ts';
import { startServer } from './server.ts';
import { median } from './stats.ts';
const wf = defineWorkflow({ name: 'bench-start', input: z.object({ i: z.number() }) }, async (ctx, { i }) => ctx.step('noop', () => i));
const src = readFileSync(new URL('../../sql/200_runs.sql', import.meta.url), 'utf8');
const fnStart = src.indexOf('create or replace function trellis._run_start(');
const fnEnd = src.indexOf("comment on function trellis._run_start", fnStart);
const base = src.slice(fnStart, fnEnd);
function cut(text: string, from: string, to: string): string {
  const a = text.indexOf(from); const b = text.indexOf(to, a);
  if (a < 0 || b < 0) throw new Error(`marker not found: ${from} / ${to}`);
  return text.slice(0, a) + text.slice(b);
}
// Each variant: the function's text with a part cut out (the checks, the
// settings read, the queue row, the transition check, the started event, the
// wake-up gate, all of them), or the function as it is in a database with
// an index or the row CHECK dropped (EXTRA), or called without run_start
// around it (inner).
const V: Record<string, (t: string) => string> = {
  base: (t) => t,
  noChecks: (t) => cut(t, "  if jsonb_typeof(v_options) <> 'object' then", "  if v_version is not null then"),
  noChecks2: (t) => cut(t, "  if v_options ? 'key' and jsonb_typeof", "  -- The settings a start reads"),
  noGate: (t) => cut(t, "  if v_run_at <= v_now and not v_claim then", "  -- A leased start whose insert waited"),
  noEvent: (t) => cut(t, "  if v_outbox then\n    insert into trellis.events", "  -- The wake-up gate"),
  noTransition: (t) => cut(t, "  if not exists (select 1 from trellis.run_transitions t", "  if v_outbox then\n    insert into trellis.events"),
  noQueue: (t) => cut(t, "  select * into v_qrow from trellis.queues q", "  -- The bucket ").replace('  if v_new_q then', '  if false then'),
  noSettings: (t) => cut(t, "  select array[max(s.value", "  v_max := case").replace("v_max := case", "v_set := '{}'; v_max := case"),
  allCut: (t) => ['noChecks', 'noChecks2', 'noSettings', 'noQueue', 'noTransition', 'noEvent', 'noGate'].reduce((x, k) => V[k]!(x), t),
  inner: (t) => t,
  noWfIdx: (t) => t,
  noStatusIdx: (t) => t,
  noCheck: (t) => t,
  noClaimIdx: (t) => t,
  chkTrivial: (t) => t,
  chkExpr: (t) => t,
};
const EXTRA: Record<string, string> = {
  noWfIdx: 'drop index trellis.runs_workflow_created_idx',
  noStatusIdx: 'drop index trellis.runs_status_created_idx',
  noCheck: 'alter table trellis.runs drop constraint runs_row_check',
  noClaimIdx: 'drop index trellis.runs_claim_idx',
  chkTrivial: `create function trellis._t(text) returns boolean language plpgsql immutable as 'begin return true; end';
    alter table trellis.runs drop constraint runs_row_check, add constraint runs_row_check check (trellis._t(status))`,
  chkExpr: `alter table trellis.runs drop constraint runs_row_check, add constraint runs_row_check check (
    status in ('pending', 'running', 'waiting', 'paused', 'completed', 'failed', 'cancelled')
    and (status in ('completed', 'failed', 'cancelled')) = (finished_at is not null)
    and (status = 'running') = (lease_token is not null) and parent_close in ('cancel', 'abandon'))`,
};
const names = (process.env.VARIANTS ?? Object.keys(V).join(',')).split(',');
for (const n of names) if (!V[n]) throw new Error(`unknown variant ${n}: one of ${Object.keys(V).join(', ')}`);
const server = await startServer();
try {
  const dbs: Record<string, { one: pg.Client; pid: number; url: string }> = {};
  for (const n of names) {
    const url = await server.createDatabase(`ceil_${n.toLowerCase()}`, { trellis: true });
    const pool = new pg.Pool({ connectionString: url, max: 2 });
    const client = createClient({ pool, handoff: false, logger: silentLogger });
    await client.register(wf);
    await pool.query(V[n]!(base));
    for (const f of ['900_plans', '950_grants']) await pool.query(readFileSync(new URL(`../../sql/${f}.sql`, import.meta.url), 'utf8'));
    if (EXTRA[n]) await pool.query(EXTRA[n]!);
    await client.close(); await pool.end();
    const one = new pg.Client({ connectionString: url }); one.on('error', () => {}); await one.connect();
    dbs[n] = { one, url, pid: (await one.query('select pg_backend_pid() p')).rows[0].p };
  }
  const opts = JSON.stringify({ input_checked: true, coalesce_notify: true });
  const out: Record<string, number[]> = {};
  const N = Number(process.env.N ?? 3000);
  const COLD = Number(process.env.COLD ?? 0);
  for (let r = 0; r < Number(process.env.REPS ?? 5); r++) {
    const order = r % 2 ? [...names].reverse() : names;
    for (const n of order) {
      if (COLD) {
        // A new session's first start: its backend's CPU for that one call
        // (COLD sessions per round), rolled back.
        for (let k = 0; k < COLD; k++) {
          const c = new pg.Client({ connectionString: dbs[n]!.url });
          c.on('error', () => {});
          await c.connect();
          const pid = (await c.query('select pg_backend_pid() p')).rows[0].p as number;
          await c.query('begin');
          const c0 = processCpuPrecise(pid)!;
          await c.query(`select ${n === 'inner' ? 'trellis._run_start($1, $2::jsonb, $3::jsonb, null, null, null, null, null, null, null)' : 'trellis.run_start($1, $2::jsonb, $3::jsonb)'}`,
            ['bench-start', '{"i":1}', opts]);
          (out[n] ??= []).push((processCpuPrecise(pid)! - c0) * 1e6);
          await c.query('rollback');
          await c.end();
        }
        continue;
      }
      const { one, pid } = dbs[n]!;
      const call = (i: number) => one.query({ name: 'rs', text: n === 'inner' ? 'select trellis._run_start($1, $2::jsonb, $3::jsonb, null, null, null, null, null, null, null)' : 'select trellis.run_start($1, $2::jsonb, $3::jsonb)', values: ['bench-start', `{"i":${i}}`, opts] });
      await one.query('begin');
      for (let i = 0; i < 200; i++) await call(i);
      const c0 = processCpuPrecise(pid)!;
      for (let i = 0; i < N; i++) await call(i);
      (out[n] ??= []).push((processCpuPrecise(pid)! - c0) * 1e6 / N);
      await one.query('rollback');
    }
  }
  for (const n of names) console.log(n.padEnd(14), median(out[n]!).toFixed(1), out[n]!.map((x) => x.toFixed(0)).join(' '));
  for (const n of names) await dbs[n]!.one.end();
} finally {
  await server.stop();
}
process.exit(0);
