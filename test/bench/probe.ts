/**
 * Family `probe`: the machine's ceiling for durable SKIP LOCKED work, with no
 * engine around it (issue 18). Its own two tables in a database of its own;
 * 4 loops in this process, each on its own connection, each claiming 100
 * runs per transaction (`update … from (select … for update skip locked)`),
 * computing constant step outputs, and checkpointing all the runs of its
 * claim in one fenced statement per step (a step row is written, and on the
 * last step the run completed, only where the run's fence still matches the
 * claim's), so a checkpoint of 100 runs is one commit (group commit). The
 * 1-step variant gives workflows/s, the 10-step one steps/s; Trellis's
 * figures in the same run are reported as ratios of these. CPU per workflow:
 * the server's CPU (every server process, /proc) and this process's CPU.
 */
import pg from 'pg';
import type { BenchConfig } from './config.ts';
import { cpuBetween, postmasterPid, readCpu } from './cpu.ts';
import { costBetween, readCounters, type BenchServer } from './server.ts';
import { fmt, medianBy } from './stats.ts';

const LOOPS = 4;
const CLAIM = 100;

const SCHEMA = `
  create table probe_runs (
    id bigint generated always as identity primary key,
    status text not null default 'pending',
    input jsonb not null,
    output jsonb,
    owner int,
    fence int not null default 0,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now());
  create index probe_runs_pending on probe_runs (id) where status = 'pending';
  create table probe_steps (
    run_id bigint not null,
    seq int not null,
    output jsonb,
    created_at timestamptz not null default now(),
    primary key (run_id, seq));`;

const CLAIM_SQL = `
  update probe_runs r set status = 'running', owner = $1, fence = r.fence + 1, updated_at = now()
    from (select id from probe_runs where status = 'pending' order by id limit ${CLAIM} for update skip locked) c
   where r.id = c.id
  returning r.id, r.fence, r.input`;

// A step of every run in the claim, fenced: only runs still held with the claim's fence get their row.
const STEP_SQL = `
  with ck as (select * from unnest($1::bigint[], $2::int[], $3::jsonb[]) as t(id, fence, out)),
       held as (select r.id, ck.out from probe_runs r join ck on r.id = ck.id
                 where r.fence = ck.fence and r.status = 'running' for no key update of r)
  insert into probe_steps (run_id, seq, output) select id, $4, out from held`;

// The last step and the completion of every run in the claim, in one fenced statement.
const LAST_SQL = `
  with ck as (select * from unnest($1::bigint[], $2::int[], $3::jsonb[]) as t(id, fence, out)),
       done as (update probe_runs r set status = 'completed', output = ck.out, updated_at = now()
                  from ck where r.id = ck.id and r.fence = ck.fence and r.status = 'running'
                returning r.id, ck.out)
  insert into probe_steps (run_id, seq, output) select id, $4, out from done`;

export interface ProbeRow {
  steps: number;
  runs: number;
  seconds: number;
  wfs: number;
  stepsPerS: number;
  xactPerStep: number;
  walSyncsPerStep: number;
  /** Core-µs per workflow: every server process, this process, the 4 loops' backends alone. */
  pgCpuUsPerWf?: number | undefined;
  nodeCpuUsPerWf: number;
  backendsCpuUsPerWf?: number | undefined;
  /** Mean cores other processes on the machine used during the window. */
  otherCores?: number | undefined;
}

async function loop(client: pg.Client, owner: number, steps: number): Promise<number> {
  let done = 0;
  for (;;) {
    const { rows } = await client.query<{ id: string; fence: number }>({ name: 'probe-claim', text: CLAIM_SQL, values: [owner] });
    if (!rows.length) return done;
    const ids = rows.map((r) => r.id);
    const fences = rows.map((r) => r.fence);
    for (let s = 1; s <= steps; s++) {
      // The step bodies: return a constant (JSON text per run, as an engine would serialise).
      const outs = rows.map(() => String(s));
      const last = s === steps;
      await client.query({ name: last ? 'probe-last' : 'probe-step', text: last ? LAST_SQL : STEP_SQL, values: [ids, fences, outs, s] });
    }
    done += rows.length;
  }
}

async function rep(url: string, meter: pg.Client, loops: pg.Client[], pids: number[], postmaster: number | undefined,
  steps: number, runs: number): Promise<ProbeRow> {
  await meter.query('truncate probe_runs, probe_steps');
  await meter.query(`insert into probe_runs (input) select jsonb_build_object('i', g) from generate_series(1, $1::int) g`, [runs]);
  await meter.query('analyze probe_runs, probe_steps');
  await meter.query('checkpoint');
  const c0 = await readCounters(meter);
  const cpu0 = readCpu(postmaster, [], pids);
  const counts = await Promise.all(loops.map((c, i) => loop(c, i + 1, steps)));
  const cpu1 = readCpu(postmaster, [], pids);
  const c1 = await readCounters(meter);
  const cost = await costBetween(meter, c0, c1);
  const cpu = cpuBetween(cpu0, cpu1);
  const finished = counts.reduce((a, b) => a + b, 0);
  const { rows } = await meter.query<{ c: string; s: string }>(`select (select count(*) from probe_runs where status = 'completed') as c,
    (select count(*) from probe_steps) as s`);
  if (finished !== runs || Number(rows[0]!.c) !== runs || Number(rows[0]!.s) !== runs * steps) {
    throw new Error(`probe ${url}: ${finished} claimed, ${rows[0]!.c} completed, ${rows[0]!.s} steps of ${runs} x ${steps}`);
  }
  const us = (s: number | undefined) => (s === undefined ? undefined : (s * 1e6) / runs);
  return {
    steps,
    runs,
    seconds: cpu.seconds,
    wfs: runs / cpu.seconds,
    stepsPerS: (runs * steps) / cpu.seconds,
    xactPerStep: cost.xacts / (runs * steps),
    walSyncsPerStep: cost.walSyncs / (runs * steps),
    pgCpuUsPerWf: us(cpu.server),
    nodeCpuUsPerWf: us(cpu.self)!,
    backendsCpuUsPerWf: us(cpu.backends),
    otherCores: cpu.otherCores,
  };
}

export function logProbe(label: string, r: ProbeRow): void {
  console.log(`  ${label}: ${fmt(r.wfs)} wf/s, ${fmt(r.stepsPerS)} steps/s, ${fmt(r.xactPerStep, 3)} xact/step, ` +
    `CPU/wf: pg ${fmt(r.pgCpuUsPerWf ?? Number.NaN)} (4 backends ${fmt(r.backendsCpuUsPerWf ?? Number.NaN)}) + node ${fmt(r.nodeCpuUsPerWf)} core-µs; ` +
    `other processes ${fmt(r.otherCores ?? Number.NaN, 2)} cores`);
}

/** The probe's 1-step and 10-step ceilings (the median of `cfg.reps` repetitions each). */
export async function probe(server: BenchServer, cfg: BenchConfig): Promise<{ oneStep: ProbeRow; tenStep: ProbeRow; reps: ProbeRow[] }> {
  const url = await server.createDatabase('bench_probe');
  const meter = new pg.Client({ connectionString: url });
  await meter.connect();
  const loops = Array.from({ length: LOOPS }, () => new pg.Client({ connectionString: url }));
  try {
    await meter.query(SCHEMA);
    await Promise.all(loops.map((c) => c.connect()));
    const pids = await Promise.all(loops.map(async (c) => (await c.query<{ pid: number }>('select pg_backend_pid() as pid')).rows[0]!.pid));
    const postmaster = await postmasterPid(meter);
    const all: ProbeRow[] = [];
    const pick = async (steps: number, runs: number) => {
      const reps: ProbeRow[] = [];
      for (let r = 0; r < cfg.reps; r++) {
        const x = await rep(url, meter, loops, pids, postmaster, steps, runs);
        logProbe(`probe ${steps}-step (rep ${r + 1})`, x);
        reps.push(x);
      }
      all.push(...reps);
      return medianBy(reps, (x) => x.wfs) as ProbeRow;
    };
    // A window of a second or more: the probe is 5-10x faster than Trellis,
    // and twice Trellis's runs (0.5 s) spread its figure 2x between runs.
    const oneStep = await pick(1, cfg.runs1 * 10);
    const tenStep = await pick(10, cfg.runs10 * 5);
    return { oneStep, tenStep, reps: all };
  } finally {
    await Promise.all(loops.map((c) => c.end().catch(() => undefined)));
    await meter.end();
    await server.dropDatabase('bench_probe');
  }
}
