/**
 * Sustained load: 1-step runs started at 70% of the measured peak (of runs
 * started while they are served, so the enqueuer's share of the two cores
 * is in it: the throughput family's enqueue-while-running row) by an
 * open-loop enqueuer for N minutes, processed by two worker processes that
 * also purge finished runs past the retention (60 s unless --retention says
 * otherwise; --retention=off keeps every run); table and index sizes, rows
 * and dead tuples every 30 s and at the end.
 */
import pg from 'pg';
import type { BenchConfig } from './config.ts';
import { spawnChild } from './procs.ts';
import type { BenchServer } from './server.ts';
import { bytes, fmt, sleep } from './stats.ts';
import { enqueue, registerBench, trellisRep } from './throughput.ts';

export interface SizeSnapshot {
  atSeconds: number;
  enqueued: number;
  pending: number;
  /** Rows in trellis.runs (the retained runs, finished or not). */
  runs: number;
  relations: Record<string, { bytes: number; live?: number | undefined; dead?: number | undefined }>;
  /** runs + steps with their indexes and TOAST. */
  totalBytes: number;
  /** The partial indexes of the claim path (pending and running rows only). */
  hotIndexBytes: number;
  /** How long taking this snapshot took (its queries wait for locks like any other). */
  tookMs: number;
}

export interface SustainedResult {
  minutes: number;
  peak: number;
  rate: number;
  achieved: number;
  /** Retention of finished runs in seconds; null: nothing was purged. */
  retentionSeconds: number | null;
  purged: number;
  snapshots: SizeSnapshot[];
}

const HOT = ['runs_claim_idx', 'runs_lease_idx'];

async function snapshot(c: pg.Client, atSeconds: number, enqueued: number): Promise<SizeSnapshot> {
  const t0 = performance.now();
  const rel: SizeSnapshot['relations'] = {};
  const tables = await c.query(`
    select relname as name, pg_total_relation_size(relid)::float8 as total, pg_relation_size(relid)::float8 as heap,
           n_live_tup::float8 as live, n_dead_tup::float8 as dead
      from pg_stat_user_tables where schemaname = 'trellis' and relname in ('runs', 'steps')`);
  for (const t of tables.rows) {
    rel[`${t.name} (total)`] = { bytes: t.total, live: t.live, dead: t.dead };
    rel[`${t.name} (heap)`] = { bytes: t.heap };
  }
  const indexes = await c.query(`
    select indexrelname as name, pg_relation_size(indexrelid)::float8 as bytes
      from pg_stat_user_indexes where schemaname = 'trellis' and relname in ('runs', 'steps') order by 1`);
  for (const i of indexes.rows) rel[i.name] = { bytes: i.bytes };
  const counts = (await c.query(`select count(*) filter (where status = 'pending') as pending, count(*) as runs from trellis.runs`)).rows[0];
  return {
    atSeconds,
    enqueued,
    pending: Number(counts.pending),
    runs: Number(counts.runs),
    relations: rel,
    totalBytes: (rel['runs (total)']?.bytes ?? 0) + (rel['steps (total)']?.bytes ?? 0),
    hotIndexBytes: HOT.reduce((s, n) => s + (rel[n]?.bytes ?? 0), 0),
    tookMs: Math.round(performance.now() - t0),
  };
}

export async function sustained(server: BenchServer, cfg: BenchConfig, knownPeak?: number): Promise<SustainedResult> {
  const url = await server.createDatabase('bench_sustained', { trellis: true });
  const pool = new pg.Pool({ connectionString: url, max: 4 });
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  const workers = [0, 1].map((i) => spawnChild('./worker-process.ts', { BENCH_URL: url, BENCH_INDEX: String(i) }));
  try {
    await registerBench(pool);
    const peak = knownPeak ?? (await trellisRep(pool, url, { kind: '1-step', procs: 2, runs: cfg.runs1, live: true })).wfs;
    await pool.query('truncate trellis.signals, trellis.steps, trellis.runs');
    await pool.query(`select trellis.retention_set($1::float8 * interval '1 second')`, [cfg.retentionSeconds]);
    const rate = Math.round(peak * 0.7);
    console.log(`  sustained: ${fmt(rate)} starts/s (70% of ${fmt(peak)}) for ${cfg.sustainMinutes} min, 2 worker processes, ` +
      `retention ${cfg.retentionSeconds === null ? 'none' : `${cfg.retentionSeconds} s`}`);
    await Promise.all(workers.map((w) => w.waitFor('ready')));
    for (const w of workers) w.send('go');
    await Promise.all(workers.map((w) => w.waitFor('started')));
    const t0 = performance.now();
    const durationMs = cfg.sustainMinutes * 60_000;
    let enqueued = 0;
    const snapshots: SizeSnapshot[] = [];
    let nextSnap = 30_000;
    for (;;) {
      const elapsed = performance.now() - t0;
      if (elapsed >= durationMs) break;
      // At most two chunks of 1,000 per turn, on two connections, so a
      // backlog of starts (the enqueuer shares the cores) never delays the
      // snapshots or the end of the test.
      const due = Math.min(2000, Math.floor((rate * elapsed) / 1000) - enqueued);
      if (due > 0) {
        const half = Math.ceil(due / 2);
        await Promise.all([enqueue(pool, 'bench-1', half, 1000), due - half > 0 ? enqueue(pool, 'bench-1', due - half, 1000) : undefined]);
        enqueued += due;
      }
      if (elapsed >= nextSnap) {
        const s = await snapshot(c, Math.round(elapsed / 1000), enqueued);
        snapshots.push(s);
        console.log(`    ${s.atSeconds}s: ${fmt(enqueued)} started, ${fmt(s.pending)} pending, ${fmt(s.runs)} runs kept, runs+steps ${bytes(s.totalBytes)}, ` +
          `claim-path indexes ${bytes(s.hotIndexBytes)}, dead tuples runs ${fmt(s.relations['runs (total)']?.dead)} (snapshot took ${fmt(s.tookMs)} ms)`);
        nextSnap += 30_000;
      }
      if (due < 2000) await sleep(100);
    }
    const seconds = (performance.now() - t0) / 1000;
    // Let the workers catch up (at most 60 s), then the final figures.
    const unfinished = async () => Number((await c.query(`select count(*) as n from trellis.runs where status <> 'completed'`)).rows[0].n);
    const deadline = Date.now() + 60_000;
    while (Date.now() < deadline && (await unfinished()) > 0) await sleep(200);
    const final = await snapshot(c, Math.round(seconds), enqueued);
    snapshots.push(final);
    // Every run that is not in the table any more was completed and then purged.
    const done = enqueued - (await unfinished());
    const purged = enqueued - final.runs;
    console.log(`    end: ${fmt(done)} completed of ${fmt(enqueued)} (${fmt(purged)} purged), runs+steps ${bytes(final.totalBytes)}, ` +
      `dead tuples runs ${fmt(final.relations['runs (total)']?.dead)}, steps ${fmt(final.relations['steps (total)']?.dead)}`);
    return { minutes: cfg.sustainMinutes, peak, rate, achieved: done / seconds, retentionSeconds: cfg.retentionSeconds, purged, snapshots };
  } finally {
    for (const w of workers) w.send('stop');
    await Promise.all(workers.map((w) => w.waitFor('stats', 20_000).catch(() => undefined)));
    for (const w of workers) w.kill();
    await c.end();
    await pool.end();
    await server.dropDatabase('bench_sustained');
  }
}
