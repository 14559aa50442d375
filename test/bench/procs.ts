/**
 * Child processes for throughput runs, and the one measurement loop every
 * system (Trellis and its peers) goes through.
 *
 * Child protocol (stdout lines): "ready" once connected and set up; then the
 * parent writes "go" and the child starts processing and prints "started";
 * on "stop" it shuts down, prints "stats <json>" and exits.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { cpuBetween, type CpuDelta, postmasterPid, readCpu } from './cpu.ts';
import { costBetween, type CostDelta, readCounters } from './server.ts';
import { sleep } from './stats.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

export interface Child {
  proc: ChildProcess;
  /** Resolves on the first line equal to `line` (or starting with `line `). */
  waitFor(line: string, timeoutMs?: number): Promise<string>;
  send(line: string): void;
  kill(): void;
}

export function spawnChild(file: string, env: Record<string, string>): Child {
  // BENCH_CHILD_NODE_ARGS: extra node flags for each child (e.g. `--cpu-prof --cpu-prof-dir=/tmp/prof`,
  // which NODE_OPTIONS does not take).
  const extra = process.env.BENCH_CHILD_NODE_ARGS?.split(' ').filter(Boolean) ?? [];
  const proc = spawn(process.execPath, [...extra, '--no-deprecation', '--import', 'tsx', fileURLToPath(new URL(file, import.meta.url))], {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const seen: string[] = [];
  const waiters: { line: string; resolve: (l: string) => void }[] = [];
  createInterface({ input: proc.stdout! }).on('line', (l) => {
    seen.push(l);
    for (const w of [...waiters]) {
      if (l === w.line || l.startsWith(`${w.line} `)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(l);
      }
    }
  });
  let exited = false;
  proc.on('exit', () => {
    exited = true;
  });
  return {
    proc,
    waitFor(line, timeoutMs = 60_000) {
      const hit = seen.find((l) => l === line || l.startsWith(`${line} `));
      if (hit) return Promise.resolve(hit);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`child ${file} did not print "${line}" within ${timeoutMs} ms`)), timeoutMs);
        const onExit = () => reject(new Error(`child ${file} exited before printing "${line}"`));
        proc.once('exit', onExit);
        waiters.push({ line, resolve: (l) => (clearTimeout(timer), proc.off('exit', onExit), resolve(l)) });
      });
    },
    send(line) {
      if (!exited) proc.stdin!.write(`${line}\n`);
    },
    kill() {
      if (!exited && proc.pid) proc.kill('SIGKILL');
    },
  };
}

/** Read "go" / "stop" commands from the parent (child side). */
export function onCommand(handlers: Record<string, () => void | Promise<void>>): void {
  createInterface({ input: process.stdin }).on('line', (l) => void handlers[l.trim()]?.());
}

export interface RunMeasurement extends CostDelta {
  /** Work items (workflows or jobs) finished inside the timed window. */
  items: number;
  /** Items per second inside the window. */
  rate: number;
  /** Items already finished when every process had started (excluded). */
  before: number;
  /** Parsed "stats" lines of the children. */
  childStats: unknown[];
  /** CPU inside the timed window: the server's (without the polling session's backend, which is `backends`), the children's (`procs`), other processes' cores. */
  cpu: CpuDelta;
  /**
   * What the database's other sessions were doing, sampled once a second
   * while the window was open (pg_stat_activity, non-idle sessions): each
   * distinct (state, wait event, query start) with the number of samples
   * that saw it, most seen first. Printed when the window ran long.
   */
  activity: { what: string; samples: number }[];
}

export interface MeasureOptions {
  url: string;
  file: string;
  env: Record<string, string>;
  procs: number;
  total: number;
  /** SQL returning one row { remaining } on `url`: unfinished items. */
  remainingSql: string;
  /**
   * SQL returning one row { remaining } that is 0 exactly when
   * remainingSql's is, polled every 10 ms instead of it: existence probes
   * rather than counts. A count of 60,000 runs cost ~10 ms of a backend per
   * poll, a quarter of a two-core machine the measured system did not
   * get. remainingSql is still read once at the start, to confirm the end,
   * and for the message at the deadline.
   */
  pollSql: string;
  /** Called after the children are ready and before "go" (e.g. enqueue while running). */
  afterGo?: (() => Promise<void>) | undefined;
  timeoutMs?: number | undefined;
}

/**
 * Spawn `procs` children, start them together, and time until `remainingSql`
 * reaches 0. The window opens when every child printed "started"; items
 * finished before that are subtracted. Costs are read after the children
 * exited, so their statistics are flushed.
 */
export async function measureRun(o: MeasureOptions): Promise<RunMeasurement> {
  const children = Array.from({ length: o.procs }, (_, i) => spawnChild(o.file, { ...o.env, BENCH_URL: o.url, BENCH_INDEX: String(i) }));
  const client = new pg.Client({ connectionString: o.url });
  await client.connect();
  const deadline = Date.now() + (o.timeoutMs ?? 300_000);
  try {
    await Promise.all(children.map((c) => c.waitFor('ready')));
    // Fresh statistics for every system's tables, as in a database in service
    // (a bulk load into a just-truncated table leaves the planner blind).
    await client.query('analyze');
    let polls = 0;
    const remaining = async (sql = o.remainingSql) => {
      polls++;
      return Number((await client.query<{ remaining: string }>(sql)).rows[0]?.remaining ?? 0);
    };
    const postmaster = await postmasterPid(client).catch(() => undefined);
    const pids = children.map((c) => c.proc.pid ?? 0);
    // This session's own backend (the polls of remainingSql: a count over
    // the pending runs reads much of the table while most are pending) is
    // the harness's, not the system's: its CPU is left out of the server's.
    const monitor = Number((await client.query<{ pid: number }>('select pg_backend_pid() as pid')).rows[0]!.pid);
    const start = await readCounters(client);
    const cpu0 = readCpu(postmaster, pids, [monitor]);
    for (const c of children) c.send('go');
    const load = o.afterGo?.();
    await Promise.all(children.map((c) => c.waitFor('started')));
    const t0 = performance.now();
    await load;
    const before = o.afterGo ? 0 : o.total - (await remaining());
    const opened = o.afterGo ? start.at : t0;
    let t1 = 0;
    let cpu1 = cpu0;
    // Once a second, what the other sessions are doing: a window that runs
    // far longer than its neighbours (issue 18's seventh round saw one
    // repetition at 1/30 of the others' rate with the server's CPU busy)
    // then says where the time went.
    const activity = new Map<string, number>();
    let nextSample = performance.now() + 1000;
    const sample = async () => {
      const { rows } = await client.query<{ what: string }>(
        `select coalesce(state, '?') || ' ' || coalesce(wait_event_type || ':' || wait_event, 'cpu') || ' ' ||
                regexp_replace(left(query, 90), '\\s+', ' ', 'g') as what
           from pg_stat_activity
          where datname = current_database() and pid <> pg_backend_pid() and state is distinct from 'idle'`);
      for (const r of rows) activity.set(r.what, (activity.get(r.what) ?? 0) + 1);
    };
    for (;;) {
      if (performance.now() >= nextSample) {
        nextSample += 1000;
        await sample();
      }
      // The window closes when the cheap probe first sees nothing left (the
      // confirming count after it is the harness's time, not the system's).
      if ((await remaining(o.pollSql)) === 0) {
        const at = performance.now();
        const cpuAt = readCpu(postmaster, pids, [monitor]);
        if ((await remaining()) === 0) {
          t1 = at;
          cpu1 = cpuAt;
          break;
        }
      }
      if (Date.now() > deadline) throw new Error(`${o.file}: ${await remaining()} of ${o.total} items unfinished at the deadline`);
      await sleep(10);
    }
    for (const c of children) c.send('stop');
    const stats = await Promise.all(children.map((c) => c.waitFor('stats', 30_000).then((l) => JSON.parse(l.slice(6)) as unknown).catch(() => null)));
    await Promise.all(children.map((c) => new Promise((r) => (c.proc.exitCode !== null ? r(null) : c.proc.once('exit', r)))));
    await sleep(200);
    const end = await readCounters(client);
    const cost = await costBetween(client, start, end, polls);
    const items = o.total - before;
    const seconds = (t1 - opened) / 1000;
    const cpu = cpuBetween(cpu0, cpu1);
    if (cpu.server !== undefined && cpu.backends !== undefined) cpu.server -= cpu.backends;
    const seen = [...activity].map(([what, samples]) => ({ what, samples })).sort((a, b) => b.samples - a.samples);
    if (seconds > 15) {
      console.log(`  (${o.file}: the window ran ${seconds.toFixed(1)} s; the other sessions, sampled each second:)`);
      for (const a of seen.slice(0, 12)) console.log(`    ${String(a.samples).padStart(4)} x ${a.what}`);
    }
    return { ...cost, items, before, seconds, rate: items / seconds, childStats: stats, cpu, activity: seen };
  } finally {
    for (const c of children) c.kill();
    await client.end();
  }
}
