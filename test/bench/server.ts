/**
 * The benchmark's PostgreSQL server: DATABASE_URL when set (databases are
 * created on it), otherwise one embedded PostgreSQL 17 with default
 * durability (fsync on, synchronous_commit on). Plus the counters every
 * measurement reads: transactions, WAL bytes and WAL syncs.
 */
import { execSync } from 'node:child_process';
import { cpus, totalmem } from 'node:os';
import pg from 'pg';
import { migrate } from '../../src/schema/install.ts';
import { startEmbeddedPostgres } from '../../src/testing/embedded-postgres.ts';

export interface BenchServer {
  adminUrl: string;
  urlFor(database: string): string;
  /** Create (dropping first) a database; with `trellis` install the schema. */
  createDatabase(name: string, options?: { trellis?: boolean | undefined }): Promise<string>;
  dropDatabase(name: string): Promise<void>;
  info(): Promise<ServerInfo>;
  stop(): Promise<void>;
}

export interface ServerInfo {
  version: string;
  embedded: boolean;
  settings: Record<string, string>;
}

const SETTINGS = ['synchronous_commit', 'fsync', 'wal_sync_method', 'shared_buffers', 'max_connections', 'max_wal_size',
  'checkpoint_timeout', 'wal_level', 'full_page_writes', 'autovacuum', 'work_mem', 'commit_delay'];

export async function startServer(): Promise<BenchServer> {
  let stopEmbedded: (() => Promise<void>) | undefined;
  let adminUrl = process.env.DATABASE_URL;
  const embedded = !adminUrl;
  if (!adminUrl) {
    // Defaults of PostgreSQL except what a 4-process benchmark with peers needs.
    const server = await startEmbeddedPostgres({ settings: { max_connections: 400, shared_buffers: '512MB', max_wal_size: '4GB' } });
    stopEmbedded = server.stop;
    adminUrl = server.connectionString;
  }
  const admin = adminUrl;
  const urlFor = (database: string) => {
    const url = new URL(admin);
    url.pathname = `/${database}`;
    return url.toString();
  };
  const adminQuery = async (text: string) => {
    const c = new pg.Client({ connectionString: admin });
    await c.connect();
    try {
      return await c.query(text);
    } finally {
      await c.end();
    }
  };
  return {
    adminUrl: admin,
    urlFor,
    async createDatabase(name, options = {}) {
      await adminQuery(`drop database if exists "${name}" with (force)`);
      await adminQuery(`create database "${name}"`);
      const url = urlFor(name);
      if (options.trellis) {
        const pool = new pg.Pool({ connectionString: url, max: 1 });
        try {
          await migrate(pool);
        } finally {
          await pool.end();
        }
      }
      return url;
    },
    async dropDatabase(name) {
      await adminQuery(`drop database if exists "${name}" with (force)`);
    },
    async info() {
      const version = String((await adminQuery('show server_version')).rows[0].server_version);
      const rows = (await adminQuery(`select name, setting, unit from pg_settings where name = any ('{${SETTINGS.join(',')}}')`)).rows;
      const settings: Record<string, string> = {};
      for (const r of rows) settings[r.name] = r.unit ? `${r.setting} (${r.unit})` : r.setting;
      return { version, embedded, settings };
    },
    async stop() {
      await stopEmbedded?.();
    },
  };
}

/** Server-wide and per-database cost counters at one moment. */
export interface Counters {
  xact: number;
  walLsn: string;
  walSync: number;
  at: number;
}

export interface CostDelta {
  xacts: number;
  walBytes: number;
  walSyncs: number;
  seconds: number;
}

/**
 * Read the counters on `client`'s database. Statistics of other sessions are
 * flushed when they go idle (at most once a second) or exit, so take the end
 * reading after the measured processes exited; this session forces its own.
 */
export async function readCounters(client: pg.ClientBase): Promise<Counters> {
  await client.query('select pg_stat_force_next_flush()');
  const { rows } = await client.query(`
    select (select xact_commit from pg_stat_database where datname = current_database())::float8 as xact,
           pg_current_wal_lsn()::text as lsn,
           coalesce((select wal_sync from pg_stat_wal), 0)::float8 as sync`);
  const r = rows[0] as { xact: number; lsn: string; sync: number };
  return { xact: r.xact, walLsn: r.lsn, walSync: r.sync, at: performance.now() };
}

/** The cost between two readings; `ownQueries` of the reading session are subtracted. */
export async function costBetween(client: pg.ClientBase, a: Counters, b: Counters, ownQueries = 0): Promise<CostDelta> {
  const { rows } = await client.query('select pg_wal_lsn_diff($1::pg_lsn, $2::pg_lsn)::float8 as d', [b.walLsn, a.walLsn]);
  return {
    // The two pg_stat_force_next_flush + reading statements of the first reading count too.
    xacts: Math.max(0, b.xact - a.xact - ownQueries - 2),
    walBytes: (rows[0] as { d: number }).d,
    walSyncs: b.walSync - a.walSync,
    seconds: (b.at - a.at) / 1000,
  };
}

export function machine(): Record<string, string> {
  const sh = (cmd: string) => {
    try {
      return execSync(cmd, { encoding: 'utf8' }).trim();
    } catch {
      return 'unknown';
    }
  };
  return {
    nproc: sh('nproc'),
    cpu: sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2").trim() || (cpus()[0]?.model ?? 'unknown'),
    memory: sh("free -h | awk '/^Mem:/ {print $2}'") || `${Math.round(totalmem() / 2 ** 30)} GiB`,
    node: process.version,
    os: sh('uname -sr'),
  };
}
