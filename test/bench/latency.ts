/**
 * Latency from `client.start()` to the first step's body and to the result
 * in the caller, with an in-process worker (one clock for both ends):
 *  - low load: 200 starts spaced 10 ms, in several rounds that alternate
 *    with graphile-worker's (both systems run in this process the whole
 *    time, idle when it is the other's turn); each percentile is the median
 *    of the rounds', and the pooled samples give a p99 with ~10 samples
 *    above it instead of 2. Start -> first step is measured as for
 *    graphile-worker (the caller starts and moves on); start -> result in
 *    rounds of their own whose caller awaits the result;
 *  - saturation: 200 callers in a closed loop (start, await result, repeat);
 *  - under load: open loop at half the saturation rate.
 * graphile-worker gets the same low-load and open-loop schedules (start =
 * addJob, first step = the task body; it has no results).
 * Trellis runs twice at low load: with the default client, which hands a
 * start to the worker in its process (no NOTIFY, no claim: see decision
 * 0015), and with `handoff: false`, the path of a start from another
 * process (start commits, NOTIFY, claim), each against its own database.
 */
import pg from 'pg';
import { z } from 'zod';
import { createClient, createWorker, defineWorkflow, silentLogger } from './runtime.ts';
import type { BenchConfig } from './config.ts';
import { graphileDatabase, graphileLogger } from './peers/graphile-worker.ts';
import { type LatencyRow, NO_HANDOFF } from './results.ts';
import type { BenchServer } from './server.ts';
import { fmt, median, type Percentiles, percentiles, sleep } from './stats.ts';

const now = () => performance.timeOrigin + performance.now();

interface Sample {
  first?: number | undefined;
  result?: number | undefined;
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

const values = (samples: Sample[], k: keyof Sample) => samples.map((s) => s[k]).filter((v): v is number => v !== undefined);

function log(system: string, load: string, rate: number, r: Pick<LatencyRow, 'firstStep' | 'result'>): void {
  console.log(`  ${system} ${load} @ ${fmt(rate)}/s: start->first step p50 ${fmt(r.firstStep.p50, 1)} p95 ${fmt(r.firstStep.p95, 1)} ` +
    `p99 ${fmt(r.firstStep.p99, 1)} ms` + (r.result ? `; start->result p50 ${fmt(r.result.p50, 1)} p95 ${fmt(r.result.p95, 1)} p99 ${fmt(r.result.p99, 1)} ms` : ''));
}

function toRow(system: string, load: string, rate: number, samples: Sample[], withResult: boolean): LatencyRow {
  const r: LatencyRow = { system, load, rate, firstStep: percentiles(values(samples, 'first')),
    result: withResult ? percentiles(values(samples, 'result')) : undefined };
  log(system, load, rate, r);
  return r;
}

/** Percentiles per round, their medians, and the percentiles of all rounds' samples together. */
function roundsRow(system: string, load: string, rate: number, rounds: Sample[][], withResult: boolean): LatencyRow {
  const per = (k: keyof Sample) => rounds.map((r) => percentiles(values(r, k)));
  const med = (ps: Percentiles[]): Percentiles => ({
    n: ps.reduce((a, p) => a + p.n, 0),
    p50: median(ps.map((p) => p.p50)), p95: median(ps.map((p) => p.p95)), p99: median(ps.map((p) => p.p99)), max: Math.max(...ps.map((p) => p.max)),
  });
  const first = per('first');
  const result = withResult ? per('result') : undefined;
  const all = rounds.flat();
  const r: LatencyRow = {
    system, load, rate,
    firstStep: med(first),
    result: result && med(result),
    rounds: rounds.map((_, i) => ({ firstStep: first[i] as Percentiles, result: result?.[i] })),
    pooled: { firstStep: percentiles(values(all, 'first')), result: withResult ? percentiles(values(all, 'result')) : undefined },
  };
  for (const [i, x] of (r.rounds ?? []).entries()) log(system, `${load} round ${i + 1}`, rate, x);
  log(system, `${load}, median of ${rounds.length} rounds`, rate, r);
  log(system, `${load}, ${all.length} samples pooled`, rate, r.pooled as Pick<LatencyRow, 'firstStep' | 'result'>);
  return r;
}

/**
 * A system under test. `one(samples)` starts one run or job and records when
 * its first step ran, the way graphile-worker's addJob is measured (nobody
 * awaits a result); `settle()` resolves when every start so far has its
 * sample. Trellis also has `oneAwaitingResult`, whose caller awaits the
 * result (its own query and NOTIFY run alongside the run).
 */
interface Subject {
  one(samples: Sample[]): Promise<void>;
  oneAwaitingResult?(samples: Sample[]): Promise<void>;
  settle(): Promise<void>;
  close(): Promise<void>;
}

/** Samples of started work, filled in once the first step of each has run. */
function firstSteps<K>(firstAt: Map<K, number>) {
  const open = new Map<K, { t: number; samples: Sample[] }>();
  return {
    started(key: K, t: number, samples: Sample[]) {
      open.set(key, { t, samples });
    },
    async settle() {
      const deadline = Date.now() + 30_000;
      while ([...open.keys()].some((k) => !firstAt.has(k)) && Date.now() < deadline) await sleep(10);
      for (const [k, { t, samples }] of open) samples.push({ first: firstAt.has(k) ? (firstAt.get(k) as number) - t : undefined });
      open.clear();
    },
  };
}

async function trellisSubject(server: BenchServer, handoff: boolean): Promise<Subject> {
  const url = await server.createDatabase(handoff ? 'bench_latency' : 'bench_latency_nh', { trellis: true });
  const pool = new pg.Pool({ connectionString: url, max: 20 });
  const firstAt = new Map<string, number>();
  const lat = defineWorkflow({ name: 'lat-1', input: z.object({ i: z.number() }) }, async (ctx) => {
    await ctx.step('first', ({ runId }) => {
      if (!firstAt.has(runId)) firstAt.set(runId, now());
      return null;
    });
    return null;
  });
  const client = createClient({ pool, logger: silentLogger, handoff });
  const worker = createWorker({ pool, workflows: [lat], logger: silentLogger, client });
  await worker.start();
  const open = firstSteps(firstAt);
  let i = 0;
  return {
    async one(samples) {
      const t = now();
      const handle = await client.start(lat, { i: i++ });
      open.started(handle.id, t, samples);
    },
    async oneAwaitingResult(samples) {
      const t = now();
      const handle = await client.start(lat, { i: i++ });
      await handle.result({ timeout: '60s' });
      const done = now();
      const first = firstAt.get(handle.id);
      samples.push({ first: first === undefined ? undefined : first - t, result: done - t });
    },
    settle: () => open.settle(),
    async close() {
      await worker.stop({ timeout: 5000 });
      await client.close();
      await pool.end();
    },
  };
}

async function graphileSubject(server: BenchServer): Promise<Subject> {
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
  let next = 0;
  const open = firstSteps(firstAt);
  return {
    async one(samples) {
      const i = next++;
      open.started(i, now(), samples);
      await utils.addJob('lat', { i });
    },
    settle: () => open.settle(),
    async close() {
      await utils.release();
      await runner.stop();
    },
  };
}

/** 200 starts spaced 10 ms on `subject`, the samples once all have their first step. */
async function lowLoad(subject: Subject, awaitResult = false): Promise<Sample[]> {
  const samples: Sample[] = [];
  const one = awaitResult && subject.oneAwaitingResult ? subject.oneAwaitingResult : subject.one;
  await openLoop(200, 10, () => one(samples));
  await subject.settle();
  return samples;
}

export async function latency(server: BenchServer, cfg: BenchConfig): Promise<{ rows: LatencyRow[]; skipped?: string | undefined }> {
  const trellis = await trellisSubject(server, true);
  const remote = await trellisSubject(server, false);
  let graphile: Subject | undefined;
  let skipped: string | undefined;
  try {
    graphile = await graphileSubject(server);
  } catch (error) {
    skipped = String(error).slice(0, 300);
  }
  const rows: LatencyRow[] = [];
  try {
    // Warm-up: connections, listeners, JIT.
    for (const s of [trellis, remote, graphile]) {
      if (!s) continue;
      await openLoop(50, 5, () => s.one([]));
      await s.settle();
    }
    const rounds = cfg.quick ? 1 : 5;
    const low = { trellis: [] as Sample[][], remote: [] as Sample[][], graphile: [] as Sample[][], result: [] as Sample[][], remoteResult: [] as Sample[][] };
    for (let r = 0; r < rounds; r++) {
      low.trellis.push(await lowLoad(trellis));
      low.remote.push(await lowLoad(remote));
      if (graphile) low.graphile.push(await lowLoad(graphile));
      low.result.push(await lowLoad(trellis, true));
      low.remoteResult.push(await lowLoad(remote, true));
    }
    rows.push(roundsRow('trellis', 'low load', 100, low.trellis, false));
    rows.push(roundsRow(NO_HANDOFF, 'low load', 100, low.remote, false));
    if (graphile) rows.push(roundsRow('graphile-worker', 'low load', 100, low.graphile, false));
    rows.push(roundsRow('trellis', 'low load, caller awaits result', 100, low.result, true));
    rows.push(roundsRow(NO_HANDOFF, 'low load, caller awaits result', 100, low.remoteResult, true));

    const seconds = cfg.quick ? 2 : 4;
    const sat: Sample[] = [];
    const t0 = performance.now();
    const until = t0 + seconds * 1000;
    await Promise.all(Array.from({ length: 200 }, async () => {
      while (performance.now() < until) await (trellis.oneAwaitingResult as Subject['one'])(sat);
    }));
    const satRate = sat.length / ((performance.now() - t0) / 1000);
    rows.push(toRow('trellis', 'saturation (200 callers)', satRate, sat, true));

    const loadRate = Math.max(100, Math.round(satRate / 2 / 10) * 10);
    for (const [name, s, label] of [['trellis', trellis, 'under load (50% of saturation)'], ['graphile-worker', graphile, 'under load (Trellis rate)']] as const) {
      if (!s) continue;
      const load: Sample[] = [];
      await openLoop(Math.round(loadRate * seconds), 1000 / loadRate, () => (s.oneAwaitingResult ?? s.one)(load));
      await s.settle();
      rows.push(toRow(name, label, loadRate, load, name === 'trellis'));
    }
    return { rows, skipped };
  } finally {
    await trellis.close();
    await remote.close();
    await graphile?.close();
  }
}
