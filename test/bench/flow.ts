/**
 * Flow control (decision 0022), three measurements in one family:
 * 1. The unlimited claim path: 1-step runs, 2 worker processes, this
 *    commit's run_claim without its flow-control gate (the queue-row probe in
 *    the lock-free pick; the running-keyed-runs index dropped) against it as
 *    it is, repetitions interleaved so a busy neighbour hits both alike.
 *    (BENCH_FLOW_BASE_FILE=1 re-applies BENCH_FLOW_BASE's whole
 *    sql/200_runs.sql instead, which loads only over a schema of its time.)
 * 2. A global limit of 50 with four worker processes (200 slots each)
 *    against no limit with four processes of 13 slots (52 in all): the same
 *    effective concurrency, limited by the queue or by the workers.
 * 3. The cost of one claim of 50 from a fair queue with 10,000 pending runs
 *    under one key against 10,000 distinct keys (each claim rolled back, so
 *    every call sees the same rows); the lock-free claim for reference.
 * 4. The server's cost of a start with the queue row made on first use
 *    (a probe of trellis.queues per start) against the same start without
 *    the probe: 2,000 starts in one statement, rolled back, rounds
 *    interleaved.
 */
import { execSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import pg from 'pg';
import type { BenchConfig } from './config.ts';
import { type RepFigures, row, type ThroughputRow } from './results.ts';
import type { BenchServer } from './server.ts';
import { fmt, median } from './stats.ts';
import { log, registerBench, TRELLIS_DB, trellisRep } from './throughput.ts';

const BASE = process.env.BENCH_FLOW_BASE ?? '2694065';
const START_BASE = process.env.BENCH_FLOW_START_BASE ?? 'ce57ba3';

/**
 * The claim without flow control: this commit's sql/200_runs.sql with the
 * queue-row gate taken out of run_claim's lock-free pick. (BASE's whole file
 * can no longer be loaded over a schema with buckets: its _run_start inserts
 * no bucket.) With BENCH_FLOW_BASE_FILE=1 the old behaviour: BASE's file.
 */
function claimWithoutFlowControl(current: string): string {
  const gate = /\n\s+and not exists \(select 1 from trellis\.queues q where q\.name = v_queue and trellis\._queue_limited_by\([^)]*\)\)/;
  const limited = /exists \(select 1 from trellis\.queues q where q\.name = v_queue and trellis\._queue_limited_by\([^)]*\)\)\n(\s+into v_ids, v_limited;)/;
  if (!gate.test(current) || !limited.test(current)) throw new Error('bench flow: run_claim no longer has the gate this bench removes');
  return current.replace(gate, '').replace(limited, 'false\n$1');
}

async function useClaimOf(pool: pg.Pool, which: 'base' | 'flow'): Promise<void> {
  const current = readFileSync(new URL('../../sql/200_runs.sql', import.meta.url), 'utf8');
  const runs = which === 'flow' ? current
    : process.env.BENCH_FLOW_BASE_FILE === '1' ? execSync(`git show ${BASE}:sql/200_runs.sql`, { encoding: 'utf8' })
    : claimWithoutFlowControl(current);
  const plans = readFileSync(new URL('../../sql/900_plans.sql', import.meta.url), 'utf8');
  await pool.query(runs);
  await pool.query(plans);
  await pool.query(which === 'base'
    ? 'drop index if exists trellis.runs_running_key_idx'
    : `create index if not exists runs_running_key_idx on trellis.runs (queue, concurrency_key)
         where status = 'running' and concurrency_key is not null`);
}

export interface FlowFigures {
  claimMs: Record<string, number>;
  startUs: Record<string, number>;
}

/** Server time per start (µs), _run_start of START_BASE against this commit's, interleaved rounds. */
async function startCost(pool: pg.Pool, rounds: number): Promise<Record<string, number>> {
  const plans = readFileSync(new URL('../../sql/900_plans.sql', import.meta.url), 'utf8');
  const sql = {
    base: '',
    flow: readFileSync(new URL('../../sql/200_runs.sql', import.meta.url), 'utf8'),
  };
  // The start without its queue-row probe: this commit's file with the probe
  // taken out (START_BASE's whole file no longer loads over a schema with
  // buckets: its ON CONFLICT names the old unique key). BENCH_FLOW_BASE_FILE=1: START_BASE's file.
  const probe = /\n\s+select \* into v_qrow from trellis\.queues q where q\.name = v_queue;\n\s+if not found then\n[^\n]*\n[^\n]*\n\s+end if;/;
  if (process.env.BENCH_FLOW_BASE_FILE === '1') sql.base = execSync(`git show ${START_BASE}:sql/200_runs.sql`, { encoding: 'utf8' });
  else if (probe.test(sql.flow)) sql.base = sql.flow.replace(probe, '');
  else throw new Error('bench flow: _run_start no longer has the queue-row probe this bench removes');
  const times: Record<'base' | 'flow', number[]> = { base: [], flow: [] };
  const c = await pool.connect();
  try {
    for (let r = 0; r < rounds + 1; r++) {
      for (const which of r % 2 === 0 ? (['base', 'flow'] as const) : (['flow', 'base'] as const)) {
        await c.query(sql[which]);
        await c.query(plans);
        await c.query('begin');
        const t = performance.now();
        await c.query(`select count(trellis.run_start('bench-1', '{}', '{"input_checked": true}')) from generate_series(1, 2000)`);
        const us = ((performance.now() - t) / 2000) * 1000;
        await c.query('rollback');
        if (r > 0) times[which].push(us);
      }
    }
  } finally {
    c.release();
  }
  const out = { 'without the probe': median(times.base), 'queue row on first use': median(times.flow) };
  console.log(`  start, server time (median of ${rounds} rounds of 2,000): without the probe ${fmt(median(times.base), 1)} µs ` +
    `[${times.base.map((x) => fmt(x, 0)).join(', ')}], this commit ${fmt(median(times.flow), 1)} µs [${times.flow.map((x) => fmt(x, 0)).join(', ')}]`);
  return out;
}

async function claimCost(pool: pg.Pool, reps: number): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  const c = await pool.connect();
  try {
    for (const [label, queue, keys] of [['unlimited, no keys', 'plain', 0], ['fair, 1 key', 'fair-one', 1], ['fair, 10,000 keys', 'fair-many', 10_000]] as const) {
      if (queue !== 'plain') await c.query(`select trellis.queue_set($1, '{"fair": true}')`, [queue]);
      await c.query(`select count(trellis.run_start('bench-1', '{}', jsonb_build_object('queue', $1::text)
                       || case when $2::int > 0 then jsonb_build_object('concurrency_key', 'k' || (g % $2::int)) else '{}' end))
                       from generate_series(1, 10000) g`, [queue, keys]);
      await c.query('analyze trellis.runs');
      const times: number[] = [];
      for (let i = 0; i < reps + 3; i++) {
        await c.query('begin');
        const t = performance.now();
        const { rowCount } = await c.query(`select id from trellis.run_claim('bench', $1, '{bench-1}', '{1}', 50, '30 seconds')`, [[queue]]);
        const ms = performance.now() - t;
        await c.query('rollback');
        if (rowCount !== 50) throw new Error(`claim of ${label} returned ${rowCount} runs`);
        if (i >= 3) times.push(ms);
      }
      out[label] = median(times);
      console.log(`  claim of 50 (${label}, 10,000 pending): ${fmt(out[label] as number, 2)} ms (median of ${reps})`);
    }
  } finally {
    c.release();
  }
  return out;
}

export async function flowCost(server: BenchServer, cfg: BenchConfig): Promise<{ rows: ThroughputRow[]; figures: FlowFigures }> {
  const url = await server.createDatabase(TRELLIS_DB, { trellis: true });
  const pool = new pg.Pool({ connectionString: url, max: 6 });
  const rows: ThroughputRow[] = [];
  const reps = Math.max(cfg.reps, 2);
  try {
    await registerBench(pool);
    // 1. The unlimited path, base against this commit.
    const ab: Record<'base' | 'flow', RepFigures[]> = { base: [], flow: [] };
    for (let r = 0; r < reps; r++) {
      for (const which of r % 2 === 0 ? (['base', 'flow'] as const) : (['flow', 'base'] as const)) {
        await useClaimOf(pool, which);
        ab[which].push(await trellisRep(pool, url, { kind: '1-step', procs: 2, runs: cfg.runs1 }));
      }
    }
    await useClaimOf(pool, 'flow');
    for (const which of ['base', 'flow'] as const) {
      const result = row('trellis', `claim path ${which === 'base' ? 'without flow control' : 'flow'}`, '1-step', 2, ab[which]);
      rows.push(result);
      log(result);
    }
    // 2. A global limit of 50 against 4 x 13 worker slots.
    const sat: Record<'limit' | 'slots', RepFigures[]> = { limit: [], slots: [] };
    for (let r = 0; r < reps; r++) {
      for (const which of r % 2 === 0 ? (['limit', 'slots'] as const) : (['slots', 'limit'] as const)) {
        await pool.query(`select trellis.queue_set('default', $1::jsonb)`, [JSON.stringify({ concurrency: which === 'limit' ? 50 : null })]);
        sat[which].push(await trellisRep(pool, url, { kind: '1-step', procs: 4, runs: cfg.runs1,
          env: { BENCH_CONCURRENCY: which === 'limit' ? '200' : '13' } }));
      }
    }
    await pool.query(`select trellis.queue_set('default', '{"concurrency": null}')`);
    for (const which of ['slots', 'limit'] as const) {
      const result = row('trellis', which === 'limit' ? 'queue concurrency 50, 4 x 200 slots' : 'no limit, 4 x 13 slots', '1-step', 4, sat[which]);
      rows.push(result);
      log(result);
    }
    // 3. Claim cost by number of keys.
    await pool.query('truncate trellis.signals, trellis.steps, trellis.runs, trellis.events, trellis.hook_deliveries');
    const claimMs = await claimCost(pool, cfg.quick ? 30 : 100);
    // 4. The start with its queue row probe.
    await pool.query('truncate trellis.signals, trellis.steps, trellis.runs, trellis.events, trellis.hook_deliveries');
    const startUs = await startCost(pool, cfg.quick ? 8 : 16);
    await useClaimOf(pool, 'flow');
    return { rows, figures: { claimMs, startUs } };
  } finally {
    await pool.end();
  }
}
