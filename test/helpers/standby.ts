/**
 * A real primary and a streaming hot standby on 127.0.0.1, from Debian's
 * PostgreSQL (`apt-get install postgresql-15`: initdb, postgres and
 * pg_basebackup under /usr/lib/postgresql/15/bin; TRELLIS_PG_BIN overrides).
 * Both are this machine's same major, so pg_basebackup copies the primary
 * as it is; the standby gets `standby.signal` and `primary_conninfo` from
 * `pg_basebackup -R`. As root the servers run as the `postgres` OS user
 * (PostgreSQL refuses root) with data directories it owns; each is stopped
 * by its pid.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { appendFileSync, chownSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { freePort } from '../../src/testing/embedded-postgres.ts';
import { untilAccepting } from './accepting.ts';
import { waitFor } from './wait.ts';

export const PG_BIN = process.env.TRELLIS_PG_BIN ?? '/usr/lib/postgresql/15/bin';

export interface Server {
  url: string;
  pid: number;
}

export interface ReplicaPair {
  primary: Server;
  standby: Server;
  /** Stop replaying WAL on the standby (it falls behind, deterministically). */
  pauseReplay(): Promise<void>;
  resumeReplay(): Promise<void>;
  /** Resolve once the standby has replayed everything the primary has written so far. */
  caughtUp(): Promise<void>;
  stop(): Promise<void>;
}

type Owner = { uid: number; gid: number } | undefined;

function owner(): Owner {
  if (process.getuid?.() !== 0) return undefined;
  return {
    uid: Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim()),
    gid: Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim()),
  };
}

function tool(as: Owner, name: string, args: string[], cwd: string): void {
  execFileSync(join(PG_BIN, name), args, { cwd, stdio: ['ignore', 'pipe', 'pipe'], ...(as ?? {}) });
}

/** Start `postgres` on `dir` and wait until it answers queries. */
async function serve(as: Owner, dir: string, port: number): Promise<{ server: Server; child: ChildProcess; exited: Promise<void> }> {
  const child = spawn(join(PG_BIN, 'postgres'), ['-D', dir, '-p', String(port)], { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'], ...(as ?? {}) });
  let stderr = '';
  child.stderr?.on('data', (d) => (stderr = (stderr + d).slice(-4000)));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const url = `postgres://postgres@127.0.0.1:${port}/postgres`;
  await untilAccepting(url, {
    timeout: 30_000, interval: 50, what: `postgres on ${dir}`,
    check: () => {
      if (child.exitCode !== null) throw new Error(`postgres on ${dir} exited: ${stderr}`);
    },
  });
  return { server: { url, pid: child.pid ?? 0 }, child, exited };
}

async function query<R>(url: string, text: string): Promise<R[]> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return (await c.query(text)).rows as R[];
  } finally {
    await c.end();
  }
}

/** Whether Debian's PostgreSQL binaries this helper needs are installed. */
export function standbyToolsInstalled(): boolean {
  return ['initdb', 'postgres', 'pg_basebackup'].every((b) => existsSync(join(PG_BIN, b)));
}

export async function startReplicaPair(): Promise<ReplicaPair> {
  if (!standbyToolsInstalled()) throw new Error(`no PostgreSQL binaries in ${PG_BIN}: apt-get install postgresql-15 (see .ci/run)`);
  const as = owner();
  const root = mkdtempSync(join(tmpdir(), 'trellis-replicas-'));
  if (as) chownSync(root, as.uid, as.gid);
  const primaryDir = join(root, 'primary');
  const standbyDir = join(root, 'standby');
  const started: { child: ChildProcess; exited: Promise<void> }[] = [];
  const stop = async () => {
    for (const s of started.reverse()) {
      if (s.child.exitCode === null && s.child.signalCode === null) {
        process.kill(s.child.pid ?? 0, 'SIGINT'); // fast shutdown
        await s.exited;
      }
    }
    rmSync(root, { recursive: true, force: true });
  };
  try {
    tool(as, 'initdb', ['-D', primaryDir, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--no-sync'], root);
    appendFileSync(join(primaryDir, 'postgresql.conf'), [
      "listen_addresses = '127.0.0.1'", "unix_socket_directories = ''", 'wal_level = replica', 'max_wal_senders = 4',
      'hot_standby = on', 'fsync = off', 'full_page_writes = off', 'max_connections = 50', '',
    ].join('\n'));
    appendFileSync(join(primaryDir, 'pg_hba.conf'), 'host replication all 127.0.0.1/32 trust\n');
    const primaryPort = await freePort();
    const primary = await serve(as, primaryDir, primaryPort);
    started.push(primary);
    // -c fast: no wait for a spread checkpoint; -R: standby.signal and primary_conninfo.
    tool(as, 'pg_basebackup', ['-h', '127.0.0.1', '-p', String(primaryPort), '-U', 'postgres', '-D', standbyDir, '-R', '-X', 'stream', '-c', 'fast', '--no-sync'], root);
    const standby = await serve(as, standbyDir, await freePort());
    started.push(standby);
    const [state] = await query<{ recovering: boolean }>(standby.server.url, 'select pg_is_in_recovery() as recovering');
    if (!state?.recovering) throw new Error('the standby is not in recovery');
    return {
      primary: primary.server,
      standby: standby.server,
      async pauseReplay() {
        await query(standby.server.url, 'select pg_wal_replay_pause()');
        await waitFor(async () => (await query<{ s: string }>(standby.server.url, 'select pg_get_wal_replay_pause_state() as s'))[0]?.s === 'paused',
          { what: 'replay paused' });
      },
      async resumeReplay() {
        await query(standby.server.url, 'select pg_wal_replay_resume()');
      },
      async caughtUp() {
        const [{ lsn } = { lsn: '' }] = await query<{ lsn: string }>(primary.server.url, 'select pg_current_wal_lsn()::text as lsn');
        await waitFor(async () => (await query<{ ok: boolean }>(standby.server.url,
          `select pg_last_wal_replay_lsn() >= '${lsn}'::pg_lsn as ok`))[0]?.ok, { what: `standby replay to ${lsn}` });
      },
      stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
}
