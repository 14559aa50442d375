/**
 * The fault harness: several worker processes (worker-main.ts) over one real
 * PostgreSQL database, an effects ledger table (public.effects, made here,
 * not by a migration) that every step body appends to, and helpers to start
 * runs, inject faults and wait for every run to end. The invariant checker
 * is invariants.ts.
 *
 * Quick mode (inside `npm test`) by default; `TRELLIS_FAULTS=full` (set by
 * `npm run test:faults`) switches every scenario to the issue's figures.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { appendFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { createClient, type Client } from '../../../src/client/client.ts';
import { silentLogger } from '../../../src/protocol/logger.ts';
import { waitFor } from '../../helpers/wait.ts';

const root = fileURLToPath(new URL('../../..', import.meta.url));

/** True in `npm run test:faults` (TRELLIS_FAULTS=full). */
export const FULL = process.env.TRELLIS_FAULTS === 'full';

/** `quick` in `npm test`, `full` in `npm run test:faults`. */
export function scale<T>(quick: T, full: T): T {
  return FULL ? full : quick;
}

/**
 * The ledger: one row per execution of a step body (run, step, attempt, pid,
 * when it began on the server's clock: `at`, and `at_earliest`, a time it
 * cannot have begun before; see record() in worker-main.ts).
 */
export async function createLedger(pool: pg.Pool): Promise<void> {
  await pool.query(`create table if not exists public.effects (
    exec uuid primary key, run_id uuid not null, workflow text not null, step text not null,
    attempt int not null, pid int not null, worker text, info jsonb,
    at timestamptz not null default clock_timestamp(), at_earliest timestamptz)`);
  await pool.query('create index if not exists effects_run_step_idx on public.effects (run_id, step)');
}

export interface WorkerProcess {
  id: string;
  child: ChildProcess;
  pid: number;
  /** What the process wrote to stderr (for failure messages). */
  stderr(): string;
  exited: Promise<void>;
  alive(): boolean;
  /** Claiming (printed "ready"). */
  ready: boolean;
  /** The harness killed or stopped it (kill(), close()): its exit is no crash. */
  stopped: boolean;
}

export interface HarnessOptions {
  /** Environment of every worker process (LEASE_MS, POLL_MS, ...). */
  env?: Record<string, string> | undefined;
}

export class Harness {
  readonly client: Client;
  readonly workers: WorkerProcess[] = [];
  private next = 1;

  constructor(readonly url: string, readonly pool: pg.Pool, private readonly options: HarnessOptions = {}) {
    this.client = createClient({ connectionString: url, logger: silentLogger, handoff: false });
  }

  /** Make the ledger; call once per database. */
  async setUp(): Promise<void> {
    await createLedger(this.pool);
  }

  /** Start a worker process and wait until it claims. */
  async spawn(env: Record<string, string> = {}): Promise<WorkerProcess> {
    const id = `fh-${this.next++}`;
    const child = spawn(process.execPath, ['--import', 'tsx', 'test/fault/harness/worker-main.ts'], {
      cwd: root,
      env: { ...process.env, DATABASE_URL: this.url, WORKER_ID: id, ...this.options.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout?.on('data', (d) => (out += d));
    child.stderr?.on('data', (d) => (err = (err + d).slice(-4000)));
    const exited = once(child, 'exit').then(([code, signal]) => {
      // With WORKER_LOG (worker-main.ts), how a worker process ended goes to its log too.
      if (process.env.WORKER_LOG) appendFileSync(`${process.env.WORKER_LOG}-${id}.log`, `${JSON.stringify({ at: new Date().toISOString(), exited: code ?? signal, stderr: err })}\n`);
    });
    const w: WorkerProcess = {
      id, child, pid: child.pid ?? 0, stderr: () => err, exited,
      alive: () => child.exitCode === null && child.signalCode === null,
      ready: false, stopped: false,
    };
    this.workers.push(w);
    await waitFor(() => {
      if (!w.alive()) throw new Error(`worker ${id} exited before it was ready:\n${err}`);
      return out.includes('ready');
    }, { what: `worker ${id} ready`, timeout: 60_000, interval: 50 });
    w.ready = true;
    return w;
  }

  /**
   * Worker processes that ended by themselves (not by kill() or close()),
   * with the end of their stderr: a scenario where no process should die
   * asserts this is empty (a dead worker leaves its runs to wait a lease).
   */
  crashed(): string[] {
    return this.workers.filter((w) => !w.alive() && !w.stopped)
      .map((w) => `${w.id} exited ${w.child.exitCode ?? w.child.signalCode}: ${w.stderr().slice(-1500)}`);
  }

  /** Workers running and claiming. */
  live(): WorkerProcess[] {
    return this.workers.filter((w) => w.alive() && w.ready);
  }

  /** SIGKILL a worker; returns the runs it held and the server's clock at the kill. */
  async kill(w: WorkerProcess): Promise<{ held: string[]; at: Date }> {
    const { rows } = await this.pool.query<{ id: string }>(
      `select id from trellis.runs where lease_owner = $1 and status = 'running'`, [w.id]);
    const { rows: [clock] } = await this.pool.query<{ at: Date }>('select clock_timestamp() as at');
    w.stopped = true;
    w.child.kill('SIGKILL');
    await w.exited;
    return { held: rows.map((r) => r.id), at: clock!.at };
  }

  /** Start `count` runs of `workflow`, `concurrency` at a time. */
  async startMany(workflow: string, count: number, input: (i: number) => unknown, concurrency = 50): Promise<string[]> {
    const ids: string[] = new Array(count);
    let i = 0;
    await Promise.all(Array.from({ length: Math.min(concurrency, count) }, async () => {
      while (i < count) {
        const n = i++;
        ids[n] = (await this.client.start(workflow, input(n) as never)).id;
      }
    }));
    return ids;
  }

  /** Start `count` runs of `workflow` at a steady `perSecond` (below the workers' capacity, so latency means recovery, not queueing). */
  async startPaced(workflow: string, count: number, input: (i: number) => unknown, perSecond: number): Promise<string[]> {
    const ids: string[] = [];
    const t0 = performance.now();
    const inflight: Promise<void>[] = [];
    for (let n = 0; n < count; n++) {
      const due = t0 + (n * 1000) / perSecond;
      const wait = due - performance.now();
      if (wait > 0) await sleep(wait);
      inflight.push(this.client.start(workflow, input(n) as never).then((r) => void (ids[n] = r.id)));
      if (inflight.length >= 200) await Promise.all(inflight.splice(0));
    }
    await Promise.all(inflight);
    return ids;
  }

  /** Wait until no run is pending, running or waiting (paused counts as ended when `pausedEnds`). */
  async waitAllEnded({ timeout = 120_000, pausedEnds = false, what = 'every run to end' } = {}): Promise<void> {
    const open = pausedEnds ? `('pending', 'running', 'waiting')` : `('pending', 'running', 'waiting', 'paused')`;
    try {
      await waitFor(async () => {
        const { rows } = await this.pool.query(`select count(*)::int as n from trellis.runs where status in ${open}`);
        return rows[0].n === 0;
      }, { timeout, interval: 200, what });
    } catch (error) {
      // Say what the workers and the runs left were doing.
      const { rows } = await this.pool.query(`select workflow, status, count(*)::int as n from trellis.runs
        where status in ${open} group by 1, 2`).catch(() => ({ rows: [] }));
      const workers = this.workers.map((w) => `${w.id} ${w.alive() ? 'alive' : `exited ${w.child.exitCode ?? w.child.signalCode}`}` +
        (w.stderr() ? `: ${w.stderr().slice(-500)}` : '')).join('\n');
      throw new Error(`${(error as Error).message}; runs left ${JSON.stringify(rows)}; workers:\n${workers}`, { cause: error });
    }
  }

  /** Stop every worker (SIGTERM, then SIGKILL after 5 s) and close the client. */
  async close(): Promise<void> {
    await Promise.all(this.workers.filter((w) => w.alive()).map(async (w) => {
      w.stopped = true;
      w.child.kill('SIGTERM');
      const timer = setTimeout(() => w.child.kill('SIGKILL'), 5000);
      await w.exited;
      clearTimeout(timer);
    }));
    await this.client.close();
  }
}

/** Counts of trellis.runs by status. */
export async function statusCounts(pool: pg.Pool): Promise<Record<string, number>> {
  const { rows } = await pool.query<{ status: string; n: number }>('select status, count(*)::int as n from trellis.runs group by status');
  return Object.fromEntries(rows.map((r) => [r.status, r.n]));
}

/** A random integer in [lo, hi]. */
export function between(lo: number, hi: number): number {
  return lo + Math.floor(Math.random() * (hi - lo + 1));
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
