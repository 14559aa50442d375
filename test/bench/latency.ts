/**
 * Latency from `client.start()` to the first step's body and to the result
 * in the caller, with an in-process worker (one clock for both ends):
 *  - low load: 200 starts spaced 10 ms;
 *  - saturation: 200 callers in a closed loop (start, await result, repeat);
 *  - under load: open loop at half the saturation rate.
 * graphile-worker gets the same low-load and open-loop schedules (start =
 * addJob, first step = the task body; it has no results).
 */
import pg from 'pg';
import { z } from 'zod';
import { createClient, createWorker, defineWorkflow, silentLogger } from './runtime.ts';
import type { BenchConfig } from './config.ts';
import { graphileDatabase, graphileLogger } from './peers/graphile-worker.ts';
import type { LatencyRow } from './results.ts';
import type { BenchServer } from './server.ts';
import { fmt, percentiles, sleep } from './stats.ts';

const now = () => performance.timeOrigin + performance.now();

interface Sample {
  first?: number;
  result?: number;
}

/** Fire `start(i)` every `intervalMs` (open loop, drift-corrected) `count` times; await all. */
async function openLoop(count: number, intervalMs: number, start: (i: number) => Promise<void>): Promise<void> {
  const t0 = performance.now();
  const pending: Promise<void>[] = [];
  for (let i = 0; i < count; i++) {
    const wait = t0 + i * intervalMs - performance.now();
    if (wait > 1) await sleep(wait);
    pending.push(start(i));
  }
  await Promise.all(pending);
}

function toRow(system: string, load: string, rate: number, samples: Sample[], withResult: boolean): LatencyRow {
  const first = samples.map((s) => s.first).filter((v): v is number => v !== undefined);
  const result = samples.map((s) => s.result).filter((v): v is number => v !== undefined);
  const r: LatencyRow = { system, load, rate, firstStep: percentiles(first), result: withResult ? percentiles(result) : undefined };
  console.log(`  ${system} ${load} @ ${fmt(rate)}/s: start->first step p50 ${fmt(r.firstStep.p50, 1)} p95 ${fmt(r.firstStep.p95, 1)} ` +
    `p99 ${fmt(r.firstStep.p99, 1)} ms` + (r.result ? `; start->result p50 ${fmt(r.result.p50, 1)} p95 ${fmt(r.result.p95, 1)} p99 ${fmt(r.result.p99, 1)} ms` : ''));
  return r;
}

export async function trellisLatency(server: BenchServer, cfg: BenchConfig): Promise<{ rows: LatencyRow[]; loadRate: number }> {
  const url = await server.createDatabase('bench_latency', { trellis: true });
  const pool = new pg.Pool({ connectionString: url, max: 20 });
  const firstAt = new Map<string, number>();
  const lat = defineWorkflow({ name: 'lat-1', input: z.object({ i: z.number() }) }, async (ctx) => {
    await ctx.step('first', ({ runId }) => {
      if (!firstAt.has(runId)) firstAt.set(runId, now());
      return null;
    });
    return null;
  });
  const worker = createWorker({ pool, workflows: [lat], logger: silentLogger });
  const client = createClient({ pool, logger: silentLogger });
  const rows: LatencyRow[] = [];
  const one = async (samples: Sample[], i: number) => {
    const t = now();
    const handle = await client.start(lat, { i });
    await handle.result({ timeout: '60s' });
    const done = now();
    const first = firstAt.get(handle.id);
    samples.push({ first: first === undefined ? undefined : first - t, result: done - t });
  };
  try {
    await worker.start();
    await openLoop(50, 5, (i) => one([], i)); // warm-up: connections, listener, JIT
    const low: Sample[] = [];
    await openLoop(200, 10, (i) => one(low, i));
    rows.push(toRow('trellis', 'low load', 100, low, true));

    const seconds = cfg.quick ? 2 : 4;
    const sat: Sample[] = [];
    const t0 = performance.now();
    const until = t0 + seconds * 1000;
    await Promise.all(Array.from({ length: 200 }, async (_, c) => {
      for (let k = 0; performance.now() < until; k++) await one(sat, c * 1_000_000 + k);
    }));
    const satRate = sat.length / ((performance.now() - t0) / 1000);
    rows.push(toRow('trellis', 'saturation (200 callers)', satRate, sat, true));

    const loadRate = Math.max(100, Math.round(satRate / 2 / 10) * 10);
    const load: Sample[] = [];
    await openLoop(Math.round(loadRate * seconds), 1000 / loadRate, (i) => one(load, i));
    rows.push(toRow('trellis', 'under load (50% of saturation)', loadRate, load, true));
    return { rows, loadRate };
  } finally {
    await worker.stop({ timeout: 5000 });
    await client.close();
    await pool.end();
  }
}

export async function graphileLatency(server: BenchServer, loadRate: number, seconds: number): Promise<LatencyRow[]> {
  const { makeWorkerUtils, run } = await import('graphile-worker');
  const url = await graphileDatabase(server);
  const firstAt = new Map<number, number>();
  const runner = await run({
    connectionString: url,
    concurrency: 10,
    noHandleSignals: true,
    logger: graphileLogger(),
    taskList: { lat: async (payload) => void firstAt.set((payload as { i: number }).i, now()) },
  });
  const utils = await makeWorkerUtils({ connectionString: url, logger: graphileLogger() });
  const rows: LatencyRow[] = [];
  let next = 0;
  const measure = async (count: number, intervalMs: number): Promise<Sample[]> => {
    const started = new Map<number, number>();
    await openLoop(count, intervalMs, async () => {
      const i = next++;
      started.set(i, now());
      await utils.addJob('lat', { i });
    });
    const deadline = Date.now() + 30_000;
    while ([...started.keys()].some((i) => !firstAt.has(i)) && Date.now() < deadline) await sleep(10);
    return [...started].map(([i, t]) => ({ first: firstAt.has(i) ? (firstAt.get(i) as number) - t : undefined }));
  };
  try {
    await measure(50, 5);
    rows.push(toRow('graphile-worker', 'low load', 100, await measure(200, 10), false));
    rows.push(toRow('graphile-worker', 'under load (Trellis rate)', loadRate, await measure(Math.round(loadRate * seconds), 1000 / loadRate), false));
  } finally {
    await utils.release();
    await runner.stop();
  }
  return rows;
}
