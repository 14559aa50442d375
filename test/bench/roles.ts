/**
 * Role leases and the schedule ticker (decision 0018):
 * 1. Microseconds per call of what the duties do at rest: role_renew,
 *    role_acquire refused (a replica that does not hold the role),
 *    schedule_tick with nothing due among 10,000 schedules, run_purge_due
 *    with no retention, run_cancel_overdue with no run overdue; and from
 *    them, the share of the machine the duties take per worker at the
 *    default settings (TTL 15 s: a renew or an acquire try every 5 s per
 *    role; a tick every second; a purge every 5 s; a deadlines look every
 *    second).
 * 2. Throughput at saturation (1-step runs, 2 worker processes) with the
 *    duties on (the default) and off (`schedules: false, purge: false,
 *    deadlines: false`),
 *    interleaved repetitions.
 * 3. 10,000 schedules due at the same instant: how long after it the last
 *    of their runs was started, by a worker ticking every second.
 */
import pg from 'pg';
import { cpus } from 'node:os';
import { createWorker, defineWorkflow, silentLogger } from './runtime.ts';
import type { BenchConfig } from './config.ts';
import type { RepFigures } from './results.ts';
import type { BenchServer } from './server.ts';
import { fmt, median } from './stats.ts';
import { registerBench, TRELLIS_DB, trellisRep } from './throughput.ts';
import { z } from 'zod';

export interface RolesBench {
  usPerCall: Record<string, number>;
  dutyUsPerSecondPerWorker: number;
  dutyShareOfMachine: number;
  throughput: { dutiesOn: number[]; dutiesOff: number[] };
  fire10k: { schedules: number; lastStartedAfterMs: number; firstStartedAfterMs: number }[];
}

async function usPer(c: pg.Client, sql: string, values: unknown[], n: number): Promise<number> {
  const t = performance.now();
  for (let i = 0; i < n; i++) await c.query(sql, values);
  return ((performance.now() - t) * 1000) / n;
}

export async function rolesBench(server: BenchServer, cfg: BenchConfig): Promise<RolesBench> {
  const url = await server.createDatabase('bench_roles', { trellis: true });
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  const out: RolesBench = { usPerCall: {}, dutyUsPerSecondPerWorker: 0, dutyShareOfMachine: 0, throughput: { dutiesOn: [], dutiesOff: [] }, fire10k: [] };
  try {
    // 1. Calls at rest.
    await c.query(`select trellis.workflow_register('[{"name":"bench-cron","version":"1","queue":"bench-cron"}]')`);
    const far = new Date(Date.now() + 86_400_000).toISOString();
    await c.query(`select count(trellis.schedule_set('idle-' || g, jsonb_build_object('cron', '0 0 1 1 *', 'workflow', 'bench-cron', 'input', '{}'::jsonb, 'next_at', $1::text)))
                     from generate_series(1, 10000) g`, [far]);
    // Statistics as autovacuum would gather them after 10,000 inserts (without them the planner scans).
    await c.query('analyze trellis.schedules');
    const token = (await c.query(`select trellis.role_acquire('trellis.schedules', 'bench', '1 hour')::text as t`)).rows[0].t;
    await c.query(`select trellis.role_acquire('bench-role', 'holder', '1 hour')`);
    // Server-side loops (one statement of n calls): the database's own cost per call, without the
    // round trip, whose wait on a busy machine is scheduling, not work.
    const n = cfg.quick ? 1000 : 3000;
    const samples: Record<string, number[]> = {};
    for (let rep = 0; rep < cfg.reps; rep++) {
      const add = (k: string, v: number) => (samples[k] ??= []).push(v);
      const loop = async (call: string, values: unknown[] = []) =>
        (await usPer(c, `select count(*) from generate_series(1, ${n}) g, lateral (select ${call}) x`, values, 1)) / n;
      add('role_renew', await loop(`trellis.role_renew('bench-role', 'holder', 1 + 0 * g, '1 hour')`));
      add('role_acquire (refused)', await loop(`trellis.role_acquire('bench-role', 'other' || left(g::text, 0), '1 hour')`));
      add('schedule_tick (none due of 10,000)', await loop('(select count(*) from trellis.schedule_tick($1::bigint, 500 + 0 * g))', [token]));
      add('run_purge_due (no retention)', await loop('trellis.run_purge_due(1000 + 0 * g)'));
      add('run_cancel_overdue (none overdue)', await loop('trellis.run_cancel_overdue()'));
      add('round trip (select 1)', await usPer(c, 'select 1', [], n));
    }
    for (const [k, v] of Object.entries(samples)) out.usPerCall[k] = median(v);
    const u = out.usPerCall;
    // Per worker: 3 engine roles, each a renew or an acquire try every 5 s; the holder's tick and deadlines look every 1 s, purge every 5 s.
    const trip = u['round trip (select 1)'] ?? 0;
    // Each call is one round trip: its database cost plus a round trip's (client, protocol, scheduling).
    out.dutyUsPerSecondPerWorker = (3 * (Math.max(u.role_renew ?? 0, u['role_acquire (refused)'] ?? 0) + trip)) / 5
      + (u['schedule_tick (none due of 10,000)'] ?? 0) + trip + ((u['run_purge_due (no retention)'] ?? 0) + trip) / 5
      + (u['run_cancel_overdue (none overdue)'] ?? 0) + trip;
    out.dutyShareOfMachine = out.dutyUsPerSecondPerWorker / (cpus().length * 1e6);
    for (const [k, v] of Object.entries(out.usPerCall)) console.log(`  ${k}: ${fmt(v, 1)} us/call`);
    console.log(`  duties at the defaults: ${fmt(out.dutyUsPerSecondPerWorker, 0)} us per second per worker (database + round trips) = ${fmt(out.dutyShareOfMachine * 100, 3)}% of this machine`);
    await c.query(`delete from trellis.schedules`);
    await c.query(`select trellis.role_release('trellis.schedules', 'bench', $1::bigint)`, [token]);

    // 2. Throughput at saturation, duties on and off, interleaved.
    const turl = await server.createDatabase(TRELLIS_DB, { trellis: true });
    const pool = new pg.Pool({ connectionString: turl, max: 6 });
    try {
      await registerBench(pool);
      for (let rep = 0; rep < cfg.reps; rep++) {
        for (const duties of ['on', 'off'] as const) {
          const f: RepFigures = await trellisRep(pool, turl, { kind: '1-step', procs: 2, runs: cfg.runs1, env: { BENCH_DUTIES: duties } });
          out.throughput[duties === 'on' ? 'dutiesOn' : 'dutiesOff'].push(f.wfs);
        }
      }
    } finally {
      await pool.end();
    }
    const on = median(out.throughput.dutiesOn);
    const off = median(out.throughput.dutiesOff);
    console.log(`  1-step x2 at saturation: duties on ${fmt(on)} wf/s, off ${fmt(off)} wf/s (${fmt(((off - on) / off) * 100, 1)}% difference; reps on ${out.throughput.dutiesOn.map((x) => fmt(x)).join(', ')}, off ${out.throughput.dutiesOff.map((x) => fmt(x)).join(', ')})`);

    // 3. 10,000 schedules due at one instant.
    const pool3 = new pg.Pool({ connectionString: url, max: 6 });
    const idle = defineWorkflow({ name: 'bench-idle', input: z.object({}) }, async () => null);
    const worker = createWorker({ pool: pool3, workflows: [idle], schedules: { interval: '1s' }, purge: false, deadlines: false, resumes: false, logger: silentLogger });
    await worker.start();
    try {
      for (let rep = 0; rep < cfg.reps; rep++) {
        await c.query(`delete from trellis.schedules; truncate trellis.signals, trellis.steps, trellis.runs`);
        // All due at one instant (next_at set directly; the yearly cron only gives the tick after it).
        const at = Math.ceil((Date.now() + 4000) / 1000) * 1000;
        await c.query(`select count(trellis.schedule_set('cron-' || g, jsonb_build_object('cron', '0 0 1 1 *', 'workflow', 'bench-cron', 'input', '{}'::jsonb, 'next_at', $1::text)))
                         from generate_series(1, 10000) g`, [new Date(at).toISOString()]);
        await c.query('analyze trellis.schedules');
        let first = 0;
        for (;;) {
          const k = Number((await c.query(`select count(*) from trellis.runs where key like 'schedule:cron-%:' || $1`, [new Date(at).toISOString()])).rows[0].count);
          if (k > 0 && !first) first = Date.now() - at;
          if (k >= 10_000) break;
          if (Date.now() - at > 60_000) throw new Error(`only ${k} of 10,000 fired within 60 s`);
          await new Promise((r) => setTimeout(r, 20));
        }
        const last = Date.now() - at;
        out.fire10k.push({ schedules: 10_000, firstStartedAfterMs: first, lastStartedAfterMs: last });
        console.log(`  10,000 schedules due at one instant: first run started after ${fmt(first)} ms, all 10,000 after ${fmt(last)} ms`);
      }
    } finally {
      await worker.stop({ timeout: 2000 });
      await pool3.end();
    }
  } finally {
    await c.end();
  }
  return out;
}
