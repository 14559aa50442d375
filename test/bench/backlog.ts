/**
 * Claim latency against a backlog: the time of one
 * `select * from trellis.run_claim(..., 100, ...)` (its runs released again
 * after each claim) with 0, 100,000 and 1,000,000 finished runs in the
 * tables, then with 100,000 pending runs on top. Finished runs are test data
 * written straight into trellis.runs / trellis.steps (the bench only).
 */
import pg from 'pg';
import type { BenchConfig } from './config.ts';
import type { BenchServer } from './server.ts';
import { bytes, fmt, median, percentile } from './stats.ts';
import { enqueue, registerBench } from './throughput.ts';

export interface BacklogPoint {
  finished: number;
  pending: number;
  /** Pending runs of a version the claiming worker does not serve (same queue). */
  unserved?: number | undefined;
  claimMs: { p50: number; p95: number; min: number };
  nextDueMs: number;
  runsBytes: number;
  stepsBytes: number;
  /** EXPLAIN (ANALYZE, BUFFERS) of the claim's candidate query at this point. */
  plan: string[];
}

const CLAIM = `select * from trellis.run_claim('bench', '{default}', '{bench-1}', '{1}', 100, interval '30 seconds')`;

/** The candidate query inside run_claim (same predicate and order), for EXPLAIN. */
const CANDIDATES = `
  select c.id from unnest('{bench-1}'::text[], '{1}'::text[]) as s(w, v)
   cross join lateral (
     select r.id, r.priority, r.run_at from trellis.runs r
      where r.status = 'pending' and r.queue = 'default' and r.workflow = s.w and r.version = s.v and r.run_at <= now()
      order by r.priority desc, r.run_at limit 100 for update skip locked) c
   order by c.priority desc, c.run_at limit 100`;

/** Insert `n` completed runs with one completed step each, in chunks. */
async function fillFinished(c: pg.Client, n: number): Promise<void> {
  for (let done = 0; done < n; done += 100_000) {
    const k = Math.min(100_000, n - done);
    await c.query(`
      with r as (
        insert into trellis.runs (bucket, id, workflow, version, queue, status, input, output, attempt, run_at,
                                  created_at, started_at, finished_at, updated_at)
        select trellis._bucket(null, null, u, trellis._bucket_count()), u, 'bench-1', '1', 'default', 'completed', jsonb_build_object('i', g), 'null', 1, t, t, t, t, t
          from (select g, gen_random_uuid() as u, now() - interval '1 day' + g * interval '1 ms' as t
                  from generate_series(1, $1::int) g) s
        returning bucket, id, finished_at)
      insert into trellis.steps (bucket, run_id, seq, name, kind, status, output, attempts, started_at, finished_at)
      select bucket, id, 0, 'noop', 'step', 'completed', 'null', 1, finished_at, finished_at from r`, [k]);
  }
  await c.query('vacuum analyze trellis.runs');
  await c.query('vacuum analyze trellis.steps');
}

async function point(c: pg.Client, reps: number, finished: number, pending: number, unserved = 0): Promise<BacklogPoint> {
  // Steady state: the bulk fill's dirty pages written out, not flushed by a timed checkpoint mid-measurement.
  await c.query('checkpoint');
  const times: number[] = [];
  for (let i = 0; i < reps + 3; i++) {
    const t = performance.now();
    const { rows } = await c.query<{ id: string; lease_token: string }>(CLAIM);
    const ms = performance.now() - t;
    if (rows.length !== 100) throw new Error(`claim returned ${rows.length} runs, expected 100`);
    if (i >= 3) times.push(ms); // the first claims warm the cache
    await c.query('select trellis.run_release(id, token) from unnest($1::uuid[], $2::uuid[]) as t(id, token)',
      [rows.map((r) => r.id), rows.map((r) => r.lease_token)]);
  }
  const t = performance.now();
  await c.query(`select trellis.run_next_due('{default}', '{bench-1}', '{1}')`);
  const nextDueMs = performance.now() - t;
  await c.query('begin');
  const plan = (await c.query<{ 'QUERY PLAN': string }>(`explain (analyze, buffers, costs off) ${CANDIDATES}`)).rows.map((r) => r['QUERY PLAN']);
  await c.query('rollback');
  const size = async (rel: string) => Number((await c.query(`select pg_total_relation_size('${rel}') as b`)).rows[0].b);
  const p: BacklogPoint = {
    finished,
    pending,
    unserved,
    claimMs: { p50: median(times), p95: percentile(times, 95), min: Math.min(...times) },
    nextDueMs,
    runsBytes: await size('trellis.runs'),
    stepsBytes: await size('trellis.steps'),
    plan,
  };
  console.log(`  claim 100 with ${fmt(finished)} finished + ${fmt(pending)} pending${unserved ? ` + ${fmt(unserved)} pending of an unserved version` : ''}: p50 ${fmt(p.claimMs.p50, 2)} ms, ` +
    `p95 ${fmt(p.claimMs.p95, 2)} ms; run_next_due ${fmt(nextDueMs, 2)} ms; runs ${bytes(p.runsBytes)}, steps ${bytes(p.stepsBytes)}`);
  return p;
}

export async function backlog(server: BenchServer, cfg: BenchConfig): Promise<BacklogPoint[]> {
  const url = await server.createDatabase('bench_backlog', { trellis: true });
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  const points: BacklogPoint[] = [];
  try {
    await registerBench(c);
    await enqueue(c, 'bench-1', 100); // the runs each claim takes and gives back
    let finished = 0;
    for (const target of cfg.backlogs) {
      if (target > finished) {
        const t = performance.now();
        await fillFinished(c, target - finished);
        console.log(`  (filled ${fmt(target - finished)} finished runs in ${fmt((performance.now() - t) / 1000, 1)} s)`);
        finished = target;
      }
      points.push(await point(c, cfg.claimReps, finished, 100));
    }
    await enqueue(c, 'bench-1', 100_000 - 100, 10_000);
    await c.query('analyze trellis.runs');
    points.push(await point(c, cfg.claimReps, finished, 100_000));
    // A deploy in progress: 100,000 pending runs of a version this worker does not serve, due first.
    await c.query(`select trellis.workflow_register('[{"name":"bench-1","version":"0-old","queue":"default"}]')`);
    await c.query(`select count(trellis.run_start('bench-1', '{}', jsonb_build_object('version', '0-old', 'run_at', now() - interval '1 hour')))
                     from generate_series(1, 100000)`);
    await c.query('analyze trellis.runs');
    points.push(await point(c, cfg.claimReps, finished, 100_000, 100_000));
  } finally {
    await c.end();
    await server.dropDatabase('bench_backlog');
  }
  return points;
}
