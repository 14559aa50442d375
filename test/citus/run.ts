/**
 * `npm run test:citus`: Trellis on a real Citus cluster (docs/scaling.md).
 * Not part of `npm test` (it needs the citus extension, which no registry here
 * packages). Against CITUS_URL (the coordinator of a cluster; a scratch
 * database: its trellis schema is dropped and installed again) or, when the
 * citus extension is installed in the local PostgreSQL, a cluster it starts
 * (a coordinator and two workers on 127.0.0.1). Otherwise it exits 2 saying
 * what is missing.
 *
 * It installs the schema on the coordinator, places it (test/citus/distribute.sql:
 * run-scoped tables distributed by bucket, the rest reference tables), then
 *   1. runs the SQL contract tests (test/sql) against the cluster, each file on
 *      a fresh database placed the same way, and lists the files that fail;
 *      then a selection of integration files (INTEGRATION_ON_CLUSTER), the same way;
 *   2. runs 1,000 runs of a 3-step workflow through two worker processes and
 *      asserts that every run completes and no step ran twice; then 200 runs
 *      that sleep, wait for a signal the test sends and wait for a child
 *      (test/citus/waits-workload.ts), with the same assertions;
 *   3. shows where the claim's and the checkpoint's statements execute
 *      (EXPLAIN, and the shard writes counted on each worker node);
 *   4. runs the same workload on one plain PostgreSQL node and prints both
 *      throughputs.
 * env: CITUS_URL, CITUS_RUNS (default 1000), CITUS_WAIT_RUNS (default 200), CITUS_SKIP_CONTRACT=1,
 * CITUS_BASE_PORT (default 56201).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { migrate } from '../../src/schema/install.ts';
import { citusMissing, type LocalNodes, sql, startNodes } from './cluster.ts';
import { waitsWorkload } from './waits-workload.ts';
import { workload } from './workload.ts';

const root = fileURLToPath(new URL('../..', import.meta.url));
const DISTRIBUTE = readFileSync(new URL('./distribute.sql', import.meta.url), 'utf8');
const runs = Number(process.env.CITUS_RUNS ?? 1000);
/**
 * Integration files whose engine paths differ on a cluster (row locks per
 * bucket, reference tables, no SQL-function parameters in distributed
 * queries): each ran there and passes (docs/scaling.md). The outbox cursor's
 * readers (connectors) are among them, with the cluster's own cursor test
 * (test/citus/outbox-cursor.test.ts: a two-phase commit still prepared on a
 * worker node, decision 0030) and the table connector's over a distributed
 * table (test/citus/table-connector.test.ts). test/integration/events.test.ts is not: it
 * records status changes with a trigger, which Citus refuses on a
 * distributed table.
 */
const INTEGRATION_ON_CLUSTER = ['schedules', 'hooks', 'queues', 'handoff', 'retention', 'state-machine', 'templates', 'roles',
  'waits', 'control', 'children', 'result-watch', 'connectors', 'outbox-connector', 'outbox-tools', 'deadlines', 'fork', 'start-many', 'values',
  'key-policies', 'control-many', 'resume-after', 'retry-budget', 'wait-for-run', 'streams', 'patching', 'run-metadata', 'step-progress', 'payload-lowered', 'signal-with-start', 'requests'].map((f) => `test/integration/${f}.test.ts`)
  .concat('test/citus/outbox-cursor.test.ts', 'test/citus/table-connector.test.ts');
const base = Number(process.env.CITUS_BASE_PORT ?? 56201);

let cluster: LocalNodes | undefined;
let coordinator = process.env.CITUS_URL;
if (!coordinator) {
  const missing = citusMissing();
  if (missing) {
    console.error(`test:citus: cannot run: ${missing}.`);
    process.exit(2);
  }
  console.log('# starting a local Citus cluster: a coordinator and two workers');
  cluster = await startNodes(3, base, true);
  coordinator = cluster.url;
}
const failures: string[] = [];
try {
  const [ext] = await sql<{ v: string }>(coordinator, `select extversion as v from pg_extension where extname = 'citus'`);
  console.log(`# citus ${ext?.v ?? 'missing'} at ${new URL(coordinator).host}`);
  await sql(coordinator, 'drop schema if exists trellis cascade');
  await migrate(coordinator);
  await sql(coordinator, DISTRIBUTE);
  const placed = await sql(coordinator, `select logicalrelid::text as t, partmethod from pg_dist_partition
    where logicalrelid::text like 'trellis.%' order by 1`);
  console.log(`# placed: ${placed.map((p) => `${p.t} (${p.partmethod === 'h' ? 'by bucket' : 'reference'})`).join(', ')}`);

  if (process.env.CITUS_SKIP_CONTRACT !== '1') {
    console.log('## 1. SQL contract tests (test/sql) on the cluster');
    const result = await contractTests(coordinator);
    console.log(`# contract: ${result.passed} passed, ${result.failed} failed of ${result.passed + result.failed} tests`);
    if (result.failedFiles.length) console.log(`# files with failures (see docs/scaling.md): ${result.failedFiles.join(', ')}`);
    console.log('## 1b. integration tests of the engine paths a cluster changes (schedules, hooks, flow control, hand-off, retention, models, roles, waits, control, result watch, deadlines)');
    const more = await contractTests(coordinator, INTEGRATION_ON_CLUSTER, 'trellis-citus-integration.log');
    console.log(`# integration: ${more.passed} passed, ${more.failed} failed of ${more.passed + more.failed} tests`);
    if (more.failedFiles.length) console.log(`# files with failures: ${more.failedFiles.join(', ')}`);
  }

  console.log(`## 2. workload: ${runs} runs of a 3-step workflow, two worker processes, on Citus`);
  const onCitus = await workload(coordinator, runs);
  console.log(`# citus: ${onCitus.completed}/${runs} completed, max executions of a step ${onCitus.maxCalls}, ` +
    `${onCitus.runsPerSecond.toFixed(0)} runs/s (${(onCitus.runsPerSecond * 3).toFixed(0)} steps/s)`);
  if (onCitus.completed !== runs) failures.push(`only ${onCitus.completed} of ${runs} runs completed on Citus`);
  if (onCitus.maxCalls !== 1) failures.push(`a step ran ${onCitus.maxCalls} times on Citus`);

  const waitRuns = Number(process.env.CITUS_WAIT_RUNS ?? 200);
  console.log(`## 2b. waits: ${waitRuns} runs that sleep 200 ms, wait for a signal the test sends, then start a child and wait for it`);
  const waits = await waitsWorkload(coordinator, waitRuns);
  console.log(`# citus waits: ${waits.completed}/${waitRuns} completed (${waits.children} children completed, ` +
    `${waits.signalsSent} signals sent, ${waits.wrongOutputs} wrong outputs), max executions of a step ${waits.maxCalls}, ` +
    `${waits.seconds.toFixed(1)} s`);
  if (waits.completed !== waitRuns) failures.push(`only ${waits.completed} of ${waitRuns} waiting runs completed on Citus`);
  if (waits.children !== waitRuns) failures.push(`only ${waits.children} of ${waitRuns} children completed on Citus`);
  if (waits.signalsSent !== waitRuns) failures.push(`${waits.signalsSent} signals were taken for ${waitRuns} runs`);
  if (waits.wrongOutputs !== 0) failures.push(`${waits.wrongOutputs} waiting runs completed with a wrong output`);
  if (waits.maxCalls !== 1) failures.push(`a step of the waits workload ran ${waits.maxCalls} times on Citus`);

  console.log('## 3. where the claim and checkpoint statements run');
  await showPlacement(coordinator);

  console.log('## 4. the same workload on one plain PostgreSQL node');
  const single = await startNodes(1, base + 10, false);
  try {
    await migrate(single.url);
    const alone = await workload(single.url, runs);
    console.log(`# single node: ${alone.completed}/${runs} completed, ${alone.runsPerSecond.toFixed(0)} runs/s`);
    console.log(`# throughput: citus ${onCitus.runsPerSecond.toFixed(0)} runs/s vs one node ${alone.runsPerSecond.toFixed(0)} runs/s`);
  } finally {
    single.stop();
  }
} catch (error) {
  failures.push(String((error as Error).stack ?? error));
} finally {
  cluster?.stop();
}
if (failures.length) {
  console.error(`test:citus FAILED:\n${failures.join('\n')}`);
  process.exit(1);
}
console.log('test:citus passed');

/** EXPLAIN of a claim's row lock and a checkpoint's step insert, and the shard writes on each worker node. */
async function showPlacement(url: string): Promise<void> {
  const [run] = await sql<{ bucket: number; id: string }>(url, 'select bucket, id from trellis.runs limit 1');
  assert.ok(run, 'no run to explain');
  const lock = await sql(url, `explain select r.id from trellis.runs r where r.bucket = $1 and r.id = any ($2::uuid[])
    and r.status = 'pending' order by r.id for update skip locked`, [run.bucket, [run.id]]);
  const insert = await sql(url, `explain insert into trellis.steps (bucket, run_id, execution, seq, name, kind, status, started_at, finished_at)
    values ($1, $2, 9, 0, 'x', 'step', 'completed', now(), now())`, [run.bucket, run.id]);
  for (const [what, plan] of [['claim lock (one bucket)', lock], ['step insert (checkpoint_apply)', insert]] as const) {
    const text = plan.map((r) => r['QUERY PLAN']).join('\n');
    const node = /Node: (host=\S+ port=\d+)/.exec(text)?.[1] ?? 'unknown';
    const tasks = /Task Count: (\d+)/.exec(text)?.[1] ?? '?';
    console.log(`# ${what}: ${tasks} task(s), executed on ${node}`);
    if (tasks !== '1') failures.push(`${what} is not routed to one shard:\n${text}`);
  }
  const nodes = await sql<{ nodename: string; nodeport: number }>(url,
    `select nodename, nodeport from pg_dist_node where noderole = 'primary' order by nodeport`);
  for (const n of nodes) {
    const nodeUrl = new URL(url);
    nodeUrl.host = `${n.nodename}:${n.nodeport}`;
    // Shards are hidden from the catalog views of a node unless asked for.
    nodeUrl.searchParams.set('options', '-c citus.override_table_visibility=off');
    const [w = {}] = await sql(nodeUrl.toString(), `select coalesce(sum(n_tup_upd) filter (where relname like 'runs\\_%'), 0) as run_updates,
      coalesce(sum(n_tup_ins) filter (where relname like 'steps\\_%'), 0) as step_inserts,
      coalesce(sum(n_tup_ins) filter (where relname like 'events\\_%'), 0) as event_inserts
      from pg_stat_user_tables where schemaname = 'trellis'`);
    console.log(`# node ${n.nodeport}: run row updates (claims, moves) ${w.run_updates}, step inserts ${w.step_inserts}, event inserts ${w.event_inserts}`);
  }
}

/** Test files against the cluster: each file's fresh database is created on every node and placed. */
async function contractTests(url: string, paths = ['test/sql'], logName = 'trellis-citus-contract.log'):
  Promise<{ passed: number; failed: number; failedFiles: string[] }> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'test/run.ts', ...paths], {
    cwd: root,
    // A cluster on one machine is slower than one node: a file gets 10 minutes, not 2.
    env: { TRELLIS_TEST_TIMEOUT_MS: '600000', ...process.env, DATABASE_URL: url, TRELLIS_TEST_CITUS: '1' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
  await new Promise((resolve) => child.on('exit', resolve));
  const log = join(tmpdir(), logName);
  writeFileSync(log, out);
  console.log(`# the tests' output: ${log}`);
  const num = (name: string) => Number(new RegExp(`^# ${name} (\\d+)`, 'm').exec(out)?.[1] ?? 0);
  // Each failed test's block names its file in a location line.
  const failedFiles = new Set<string>();
  const lines = out.split('\n');
  lines.forEach((line, i) => {
    if (!/^\s*not ok \d+/.test(line)) return;
    const at = lines.slice(i + 1, i + 8).map((l) => /location: '.*test\/((?:sql|integration)\/[^:']+)/.exec(l)?.[1]).find(Boolean);
    if (at) failedFiles.add(at);
  });
  return { passed: num('pass'), failed: num('fail'), failedFiles: [...failedFiles].sort() };
}
