/**
 * `npx tsx test/bench/start-cost.ts`: the backend CPU (/proc) of one
 * `_run_start` against a bare insert of the same run and event rows, and of
 * variants of the current function with one part left out (its NOTIFY gate,
 * its name checks, its SET clauses), 4,000 starts per statement
 * in a rolled-back transaction, interleaved over 3 rounds. BASE_SQL=<file>
 * adds an older sql/200_runs.sql's _run_start. A profiling aid (issue 18).
 */
import { readFileSync } from 'node:fs';
import pg from 'pg';
import { processCpuPrecise as processCpu } from './cpu.ts';
import { startServer } from './server.ts';
const server = await startServer();
const url = await server.createDatabase('x', { trellis: true });
const c = new pg.Client({ connectionString: url }); await c.connect();
const pid = (await c.query('select pg_backend_pid() as p')).rows[0].p;
await c.query(`select trellis.workflow_register('[{"name":"p","version":"1","queue":"default"}]')`);
// BASE_SQL=<file>: also time that file's _run_start (an older sql/200_runs.sql, e.g. from `git show`).
if (process.env.BASE_SQL) {
  const old = readFileSync(process.env.BASE_SQL, 'utf8');
  const body = old.slice(old.indexOf('create or replace function trellis._run_start('), old.indexOf('comment on function trellis._run_start('));
  await c.query(body.replace('trellis._run_start(', 'trellis._run_start_old('));
  await c.query(`alter function trellis._run_start_old set plan_cache_mode = force_generic_plan`);
  await c.query(`alter function trellis._run_start_old set enable_seqscan = off`);
}
const cur = readFileSync('sql/200_runs.sql', 'utf8');
const nb = cur.slice(cur.indexOf('create or replace function trellis._run_start('), cur.indexOf('comment on function trellis._run_start('));
const mk = async (name: string, f: (t: string) => string, set = true) => {
  await c.query(f(nb.replace('trellis._run_start(', `trellis.${name}(`)));
  if (set) { await c.query(`alter function trellis.${name} set plan_cache_mode = force_generic_plan`); await c.query(`alter function trellis.${name} set enable_seqscan = off`); }
};
// Every replace below must find its text: a variant that silently equals the function measures nothing.
const cut = (t: string, from: string | RegExp, to: string) => {
  const out = t.replace(from, to);
  if (out === t) throw new Error(`start-cost: ${String(from)} not found in _run_start`);
  return out;
};
await mk('_rs_nonotify', (t) => cut(t, /if \(v_options->'coalesce_notify'\) = 'true'::jsonb then[\s\S]*?perform pg_notify\('trellis:run_ready', v_queue\);/, 'null;'));
await mk('_rs_noset', (t) => t, false);
await mk('_rs_nochecks', (t) => cut(cut(cut(t, "p_workflow := trellis._check_name(p_workflow, 'workflow');", ''),
  "v_version := trellis._check_name(v_version, 'version');", ''),
  "v_queue := trellis._check_name(coalesce(v_options->>'queue', v_default), 'queue');", "v_queue := coalesce(v_options->>'queue', v_default);"));
const N = 4000;
const opts = `'{"input_checked": true, "coalesce_notify": true, "version": "1"}'`;
const variants: Record<string, string> = {
  new: `select count(trellis._run_start('p', jsonb_build_object('i', g), ${opts}, null, null, null, null, null, null, null)) from generate_series(1, ${N}) g`,
  old: `select count(trellis._run_start_old('p', jsonb_build_object('i', g), ${opts}, null, null, null, null, null, null, null)) from generate_series(1, ${N}) g`,
  nonotify: `select count(trellis._rs_nonotify('p', jsonb_build_object('i', g), ${opts}, null, null, null, null, null, null, null)) from generate_series(1, ${N}) g`,
  noset: `select count(trellis._rs_noset('p', jsonb_build_object('i', g), ${opts}, null, null, null, null, null, null, null)) from generate_series(1, ${N}) g`,
  nochecks: `select count(trellis._rs_nochecks('p', jsonb_build_object('i', g), ${opts}, null, null, null, null, null, null, null)) from generate_series(1, ${N}) g`,
  insert_only: `with r as (insert into trellis.runs (bucket, id, workflow, version, queue, priority, status, input, metadata, run_at, created_at, updated_at, parent_close, attempt)
     select g % 16, gen_random_uuid(), 'p', '1', 'default', 0, 'pending', jsonb_build_object('i', g), '{}', now(), now(), now(), 'cancel', 0 from generate_series(1, ${N}) g returning *)
     insert into trellis.events (bucket, run_id, workflow, version, key, kind, attempt, body, created_at) select bucket, id, workflow, version, key, 'started', attempt, jsonb_build_object('to', status, 'execution', execution), created_at from r`,
};
const res: Record<string, number[]> = {};
for (let round = 0; round < 3; round++) for (const [k, sql] of Object.entries(variants)) {
  if (!sql || (k === 'old' && !process.env.BASE_SQL)) continue;
  await c.query('begin');
  const b = processCpu(pid)!;
  await c.query(sql);
  (res[k] ??= []).push((processCpu(pid)! - b) * 1e6 / N);
  await c.query('rollback');
}
for (const [k, v] of Object.entries(res)) console.log(k, v.map((x) => x.toFixed(0)).join(' '), 'backend CPU µs/start');
await c.end(); await server.stop();
