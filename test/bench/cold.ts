/**
 * Family `cold`: the first `client.start` of a fresh client (a new pool), as
 * a serverless handler or a CLI pays it (issue 18). N fresh clients one after
 * another against a database where the workflow is already registered (a
 * worker or an earlier deploy did it); per client:
 *  - `first start, connect included`: a new pool, the first start (TCP
 *    connect, authentication and session start-up of the pool's first
 *    connection included);
 *  - `first start, connected pool`: a new pool whose connection is already
 *    open (`select 1` first), so what the client itself adds on its first
 *    start: reading the payload limit and schema version, registering the
 *    workflow, preparing and running the start;
 *  - `second start`: the same client again (warm);
 *  - `connect`: the `select 1` alone;
 *  - `through PgBouncer`: the same N fresh clients, each a new pool that
 *    connects to a PgBouncer (transaction mode, started here on 127.0.0.1
 *    and stopped by its pid) in front of the same database, first and
 *    second start. A fresh client then gets a server session that earlier
 *    clients warmed, which is how a serverless handler or a CLI reaches
 *    PostgreSQL in production (a pooler, PgBouncer or a managed proxy).
 *    The binary: TRELLIS_PGBOUNCER_BIN, else scripts/pgbouncer-build.sh's
 *    build in .cache/, else Debian's /usr/sbin/pgbouncer; the rows are
 *    left out, with the reason printed, when there is none.
 * Each statement of the connected-pool start is timed (pool.query wrapped)
 * so the report says where the time goes. No worker runs.
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import pg from 'pg';
import { z } from 'zod';
import type { BenchConfig } from './config.ts';
import { processCpuPrecise as processCpu } from './cpu.ts';
import { createClient, defineWorkflow, silentLogger } from './runtime.ts';
import type { BenchServer } from './server.ts';
import { fmt, percentiles, type Percentiles } from './stats.ts';

const coldStart = defineWorkflow({ name: 'bench-cold', input: z.object({ i: z.number() }) }, async (ctx, { i }) => ctx.step('noop', () => i));

export interface ColdResult {
  clients: number;
  firstWithConnect: Percentiles;
  firstConnected: Percentiles;
  second: Percentiles;
  connect: Percentiles;
  /** CPU per start, core-ms (mean over the clients): the backend's (/proc) and this process's, first (connected pool) and second start. */
  cpu: { firstServer?: number | undefined; firstNode: number; secondServer?: number | undefined; secondNode: number };
  /** Per statement of the connected-pool first start: its label and p50 ms. */
  statements: { statement: string; n: number; p50: number }[];
  /** Fresh clients through a PgBouncer in transaction mode (its server sessions warm), or why there is no such row. */
  pooled?: { pgbouncer: string; first: Percentiles; second: Percentiles } | { skipped: string } | undefined;
}

/** A new pool and client on `url`: the first start (the pool's connect included) into `first`, the second into `second`. */
async function freshClient(url: string, i: number, first: number[], second: number[]): Promise<void> {
  const pool = new pg.Pool({ connectionString: url, max: 4 });
  const client = createClient({ pool, logger: silentLogger });
  try {
    const t = performance.now();
    await client.start(coldStart, { i });
    first.push(performance.now() - t);
    const t2 = performance.now();
    await client.start(coldStart, { i });
    second.push(performance.now() - t2);
  } finally {
    await client.close();
    await pool.end();
  }
}

/**
 * The PgBouncer binary the `cold` family uses: the first of
 * TRELLIS_PGBOUNCER_BIN, the one scripts/pgbouncer-build.sh builds and the
 * system's that keeps prepared statements in transaction mode (1.21 and
 * later: `max_prepared_statements`; Debian 12's is 1.18), or why none.
 */
function pgbouncerBinary(): { binary: string } | { skipped: string } {
  const built = new URL('../../.cache/pgbouncer-1.24.1/bin/pgbouncer', import.meta.url).pathname;
  const found = [process.env.TRELLIS_PGBOUNCER_BIN, built, '/usr/sbin/pgbouncer'].filter((p): p is string => !!p && existsSync(p));
  const older: string[] = [];
  for (const binary of found) {
    const version = execFileSync(binary, ['--version'], { encoding: 'utf8' }).split('\n')[0] ?? '';
    const [major = 0, minor = 0] = (version.match(/(\d+)\.(\d+)/) ?? []).slice(1).map(Number);
    if (major > 1 || (major === 1 && minor >= 21)) return { binary };
    older.push(`${binary} is ${version.trim() || 'of unknown version'}`);
  }
  const why = older.length ? `${older.join(', ')}: prepared statements in transaction mode need 1.21 or later` : 'no PgBouncer binary';
  return { skipped: `${why} (bash scripts/pgbouncer-build.sh builds 1.24)` };
}

/** N fresh clients through a PgBouncer in front of `url`: the first start (connect to PgBouncer included) and the second. */
async function pooledStarts(url: string, n: number): Promise<ColdResult['pooled']> {
  const found = pgbouncerBinary();
  if ('skipped' in found) return found;
  const binary = found.binary;
  process.env.TRELLIS_PGBOUNCER_BIN = binary;
  const { startPgBouncer } = await import('../helpers/pgbouncer.ts');
  const bouncer = await startPgBouncer(url, { default_pool_size: 4, max_prepared_statements: 200 });
  const first: number[] = [];
  const second: number[] = [];
  try {
    // Earlier clients (a deploy, other handlers) have used the pooler's sessions.
    const warm = createClient({ connectionString: bouncer.url, logger: silentLogger });
    for (let i = 0; i < 20; i++) await warm.start(coldStart, { i });
    await warm.close();
    for (let i = 0; i < n; i++) await freshClient(bouncer.url, i, first, second);
  } finally {
    await bouncer.stop();
  }
  return { pgbouncer: bouncer.version, first: percentiles(first), second: percentiles(second) };
}

/** Time every pool.query of `pool` into `into` (label: the statement's name or its first words). */
function timeQueries(pool: pg.Pool, into: Map<string, number[]>): void {
  const query = pool.query.bind(pool) as (...a: unknown[]) => Promise<unknown>;
  (pool as unknown as { query: unknown }).query = async (config: unknown, values?: unknown) => {
    const c = config as { name?: string | undefined; text?: string | undefined } | string;
    const label = typeof c === 'string' ? c : (c.name ?? c.text ?? '?');
    const key = label.replace(/\s+/g, ' ').trim().slice(0, 60);
    const t = performance.now();
    try {
      return await query(config, values);
    } finally {
      const list = into.get(key) ?? [];
      list.push(performance.now() - t);
      into.set(key, list);
    }
  };
}

export async function coldStarts(server: BenchServer, cfg: BenchConfig): Promise<ColdResult> {
  const n = cfg.quick ? 40 : 100;
  const url = await server.createDatabase('bench_cold', { trellis: true });
  const first: number[] = [];
  const connected: number[] = [];
  const second: number[] = [];
  const connect: number[] = [];
  const statements = new Map<string, number[]>();
  let pooled: ColdResult['pooled'];
  const cpu = { firstServer: 0 as number | undefined, firstNode: 0, secondServer: 0 as number | undefined, secondNode: 0 };
  const nodeCpu = () => {
    const u = process.cpuUsage();
    return (u.user + u.system) / 1e3;
  };
  const add = (key: 'firstServer' | 'secondServer', before: number | undefined, after: number | undefined) => {
    cpu[key] = cpu[key] === undefined || before === undefined || after === undefined ? undefined : cpu[key]! + (after - before) * 1e3;
  };
  try {
    const setup = createClient({ connectionString: url, logger: silentLogger });
    await setup.register(coldStart);
    await setup.start(coldStart, { i: 0 });
    await setup.close();
    for (let i = 0; i < n; i++) {
      await freshClient(url, i, first, second);
      {
        const pool = new pg.Pool({ connectionString: url, max: 4 });
        const t0 = performance.now();
        await pool.query('select 1');
        connect.push(performance.now() - t0);
        const pid = (await pool.query<{ pid: number }>('select pg_backend_pid() as pid')).rows[0]!.pid;
        timeQueries(pool, statements);
        const client = createClient({ pool, logger: silentLogger });
        let b = processCpu(pid);
        let n0 = nodeCpu();
        const t = performance.now();
        await client.start(coldStart, { i });
        connected.push(performance.now() - t);
        add('firstServer', b, processCpu(pid));
        cpu.firstNode += nodeCpu() - n0;
        b = processCpu(pid);
        n0 = nodeCpu();
        await client.start(coldStart, { i });
        add('secondServer', b, processCpu(pid));
        cpu.secondNode += nodeCpu() - n0;
        await client.close();
        await pool.end();
      }
    }
    pooled = await pooledStarts(url, n);
  } finally {
    await server.dropDatabase('bench_cold');
  }
  const result: ColdResult = {
    clients: n,
    firstWithConnect: percentiles(first),
    firstConnected: percentiles(connected),
    second: percentiles(second),
    connect: percentiles(connect),
    cpu: {
      firstServer: cpu.firstServer === undefined ? undefined : cpu.firstServer / n,
      firstNode: cpu.firstNode / n,
      secondServer: cpu.secondServer === undefined ? undefined : cpu.secondServer / n,
      secondNode: cpu.secondNode / n,
    },
    statements: [...statements].map(([statement, t]) => ({ statement, n: t.length, p50: percentiles(t).p50 })),
    pooled,
  };
  const line = (label: string, p: Percentiles) => console.log(`  ${label.padEnd(34)} p50 ${fmt(p.p50, 2)} ms  p95 ${fmt(p.p95, 2)}  p99 ${fmt(p.p99, 2)}  max ${fmt(p.max, 2)}`);
  line(`first start, connect included (${n})`, result.firstWithConnect);
  line('first start, connected pool', result.firstConnected);
  line('second start (warm client)', result.second);
  line('connect (select 1 on a new pool)', result.connect);
  const c = result.cpu;
  console.log(`  CPU per start (core-ms): first ${fmt(c.firstServer, 2)} backend + ${fmt(c.firstNode, 2)} node; second ${fmt(c.secondServer, 2)} backend + ${fmt(c.secondNode, 2)} node`);
  for (const s of result.statements) console.log(`    ${s.statement.padEnd(60)} x${s.n}  p50 ${fmt(s.p50, 2)} ms`);
  if (pooled !== undefined && 'skipped' in pooled) console.log(`  through PgBouncer: skipped (${pooled.skipped})`);
  else if (pooled !== undefined) {
    line(`first start through ${pooled.pgbouncer.replace(/^PgBouncer /i, 'PgBouncer ')}`.slice(0, 34), pooled.first);
    line('second start through PgBouncer', pooled.second);
  }
  return result;
}
