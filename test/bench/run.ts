/**
 * `npm run bench`: Trellis against its peers on one PostgreSQL server
 * (never part of `npm test`). Prints a report and writes
 * bench-results/bench-<time>.json, bench-results/latest.json and an SVG chart.
 * Options: see config.ts.
 */
import { execSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import { backlog } from './backlog.ts';
import { inputChecks } from './inputs.ts';
import { startsFamily } from './starts.ts';
import { coldStarts } from './cold.ts';
import { rolesBench } from './roles.ts';
import { runtimeName } from './runtime.ts';
import { type Family, readConfig } from './config.ts';
import { printReport, throughputSvg } from './report.ts';
import { latency } from './latency.ts';
import { levers } from './levers.ts';
import { outboxCost } from './outbox.ts';
import { dbosThroughput } from './peers/dbos.ts';
import { graphileThroughput } from './peers/graphile-worker.ts';
import { pgBossThroughput } from './peers/pg-boss.ts';
import { pgbench } from './peers/pgbench.ts';
import { probe, type ProbeRow } from './probe.ts';
import type { BenchResults } from './results.ts';
import { machine, startServer } from './server.ts';
import { fmt } from './stats.ts';
import { sustained } from './sustained.ts';
import { modelsThroughput } from './models.ts';
import { flowCost } from './flow.ts';
import { log, trellisThroughput } from './throughput.ts';

const cfg = readConfig();
const load1 = () => loadavg()[0] ?? 0;
const started = Date.now();
const git = (cmd: string) => {
  try {
    return execSync(`git ${cmd}`, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return 'unknown';
  }
};
console.log(`# trellis bench (${cfg.quick ? 'quick' : 'full'}): ${[...cfg.only].join(', ')}; ${cfg.reps} repetition(s); runtime ${runtimeName}`);
// Other work on a 2-core machine distorts every figure: wait (up to 10 min) for a quiet machine
// (not with --no-wait or BENCH_NO_WAIT=1; the load average is still recorded with each family).
for (let waited = 0; !process.env.BENCH_NO_WAIT && !process.argv.includes('--no-wait') && load1() > Math.max(1, cpus().length / 2) && waited < 600; waited += 10) {
  if (waited === 0) console.log(`# waiting for a quiet machine (load ${load1().toFixed(1)})`);
  await new Promise((r) => setTimeout(r, 10_000));
}
// Pools of peer libraries may still hold idle connections that a family's
// `drop database … with (force)` or the server's stop terminates (57P01).
process.on('uncaughtException', (e) => {
  if ((e as { code?: string | undefined }).code !== '57P01') throw e;
});
const loads: Record<string, number> = {};
const server = await startServer();
const results: BenchResults = {
  meta: {
    started: new Date(started).toISOString(),
    quick: cfg.quick,
    config: { ...cfg, only: [...cfg.only] },
    machine: machine(),
    postgres: await server.info(),
    // BENCH_COMMIT: when the bench runs from an exported snapshot of a commit.
    runtime: runtimeName,
    commit: process.env.BENCH_COMMIT ?? git('rev-parse HEAD'),
    dirty: process.env.BENCH_COMMIT ? false : git('status --porcelain') !== '',
  },
  throughput: [],
  peers: [],
  latency: [],
  levers: [],
  errors: [],
};

async function family(name: Family, fn: () => Promise<void>): Promise<void> {
  if (!cfg.only.has(name)) return;
  const t = performance.now();
  const load = load1();
  loads[name] = load;
  console.log(`\n## ${name} (load average ${load.toFixed(1)})`);
  if (load > cpus().length) console.log('  WARNING: the machine is busy with other work; figures will be low and noisy');
  try {
    await fn();
  } catch (error) {
    console.log(`  ERROR: ${String((error as Error)?.stack ?? error)}`);
    results.errors.push({ family: name, error: String(error) });
  }
  console.log(`  (${fmt((performance.now() - t) / 1000, 1)} s)`);
}

/** A peer that cannot be installed or run is reported as skipped, never faked. */
async function peer(system: string, fn: () => Promise<BenchResults['throughput']>): Promise<void> {
  try {
    const rows = await fn();
    for (const r of rows) log(r);
    results.throughput.push(...rows);
  } catch (error) {
    const reason = String((error as Error)?.message ?? error).slice(0, 300);
    console.log(`  ${system}: skipped: ${reason}`);
    results.peers.push({ system, skipped: reason });
  }
}

try {
  await family('pgbench', async () => {
    results.pgbench = await pgbench(server, cfg.quick ? 5 : 10);
    console.log(`  ${JSON.stringify(results.pgbench)}`);
  });
  await family('starts', async () => {
    const rows = await startsFamily(server, cfg);
    const tps = results.pgbench && 'tps' in results.pgbench ? results.pgbench.tps : undefined;
    results.starts = { rows, pgbenchTps: tps };
    if (tps) for (const r of rows) console.log(`  ${r.system} ${r.variant}: ${fmt(r.startsPerS / tps, 2)}x pgbench (${fmt(tps, 0)} tps)`);
  });
  await family('cold', async () => {
    results.cold = await coldStarts(server, cfg);
  });
  let ceiling: { oneStep: ProbeRow; tenStep: ProbeRow } | undefined;
  await family('probe', async () => {
    ceiling = await probe(server, cfg);
    results.probe = ceiling;
  });
  await family('throughput', async () => {
    const rows = await trellisThroughput(server, cfg);
    results.throughput.push(...rows);
    if (ceiling) {
      const ratios = rows.filter((r) => r.variant === 'prefilled').map((r) => ({
        kind: r.kind, procs: r.procs,
        ratio: r.kind === '1-step' ? r.median.wfs / ceiling!.oneStep.wfs : r.median.stepsPerS / ceiling!.tenStep.stepsPerS,
        cpuUsPerWf: (r.median.pgCpuUsPerWf ?? Number.NaN) + (r.median.nodeCpuUsPerWf ?? Number.NaN),
      }));
      for (const x of ratios) console.log(`  trellis ${x.kind} x${x.procs}: ${fmt(x.ratio, 2)} of the probe's ${x.kind === '1-step' ? 'wf/s' : 'steps/s'}, ${fmt(x.cpuUsPerWf)} core-µs/wf`);
      results.probe = { ...ceiling, ratios };
    }
  });
  await family('peers', async () => {
    const peerProcs = cfg.quick ? [1] : [1, 2];
    await peer('graphile-worker', () => graphileThroughput(server, cfg.reps, cfg.runs1, [1]));
    await peer('pg-boss', () => pgBossThroughput(server, cfg.reps, cfg.peerRuns1, [1]));
    await peer('dbos', () => dbosThroughput(server, cfg.reps, { '1-step': cfg.peerRuns1, '10-step': cfg.peerRuns10 }, peerProcs));
  });
  await family('latency', async () => {
    const { rows, skipped } = await latency(server, cfg);
    results.latency.push(...rows);
    if (skipped) results.peers.push({ system: 'graphile-worker (latency)', skipped });
  });
  await family('levers', async () => {
    results.levers.push(...(await levers(server, cfg)));
  });
  await family('backlog', async () => {
    results.backlog = await backlog(server, cfg);
  });
  await family('inputs', async () => {
    results.inputs = await inputChecks(server, cfg);
  });
  await family('outbox', async () => {
    results.levers.push(...(await outboxCost(server, cfg)));
  });
  await family('models', async () => {
    results.models = await modelsThroughput(server, cfg);
  });
  await family('roles', async () => {
    results.roles = await rolesBench(server, cfg);
  });
  await family('flow', async () => {
    const flow = await flowCost(server, cfg);
    results.levers.push(...flow.rows);
    results.flow = flow.figures;
  });
  await family('sustained', async () => {
    // The peak with runs started while they are served: the sustained test's own
    // setup (the enqueuer shares the cores with the workers and Postgres).
    const peak = results.throughput.find((r) => r.system === 'trellis' && r.kind === '1-step' && r.procs === 2 && r.variant === 'enqueue-while-running');
    results.sustained = await sustained(server, cfg, peak?.median.wfs);
  });
} finally {
  await server.stop();
}

results.meta.seconds = (Date.now() - started) / 1000;
results.meta.loadAverageAtFamilyStart = loads;
printReport(results);
mkdirSync(cfg.out, { recursive: true });
const stamp = new Date(started).toISOString().replace(/[:.]/g, '-');
const json = `${JSON.stringify(results, null, 2)}\n`;
writeFileSync(join(cfg.out, `bench-${stamp}.json`), json);
writeFileSync(join(cfg.out, 'latest.json'), json);
if (results.throughput.length) {
  mkdirSync(dirname(cfg.svg), { recursive: true });
  writeFileSync(cfg.svg, throughputSvg(results));
}
console.log(`\nwrote ${join(cfg.out, `bench-${stamp}.json`)}${results.throughput.length ? ` and ${cfg.svg}` : ''}; total ${fmt((Date.now() - started) / 60_000, 1)} min`);
process.exit(0);
