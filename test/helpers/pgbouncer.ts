/**
 * A real PgBouncer (Debian's package, `apt-get install pgbouncer`, or the
 * binary at TRELLIS_PGBOUNCER_BIN: scripts/pgbouncer-build.sh builds 1.24)
 * in transaction mode on 127.0.0.1, in front of one database of the test
 * server, started here and stopped by its pid. As root it runs as the
 * `postgres` OS user (PgBouncer refuses to run as root).
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { chmodSync, chownSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from '../../src/testing/embedded-postgres.ts';
import { untilAccepting } from './accepting.ts';

export interface Bouncer {
  url: string;
  version: string;
  pid: number;
  stop(): Promise<void>;
}

const BINARY = process.env.TRELLIS_PGBOUNCER_BIN || '/usr/sbin/pgbouncer';

export function pgbouncerVersion(): string {
  return execFileSync(BINARY, ['--version'], { encoding: 'utf8' }).split('\n')[0] ?? '';
}

/**
 * The [databases] entry for the server of `target`: each value quoted as
 * PgBouncer reads them, the password left out when the URL has
 * none (DATABASE_URL=postgres://postgres@host/db: an empty `password=` is a
 * syntax error to PgBouncer), the port 5432 when the URL names none.
 */
export function serverEntry(target: URL, database: string): string {
  // PgBouncer's connection strings: a quote inside a quoted value is doubled (no backslash escapes).
  const quote = (v: string) => `'${v.replace(/'/g, "''")}'`;
  const fields: [string, string][] = [
    ['host', decodeURIComponent(target.hostname.replace(/^\[(.*)\]$/, '$1')) || target.searchParams.get('host') || 'localhost'],
    ['port', target.port || '5432'],
    ['dbname', decodeURIComponent(database)],
    ['user', decodeURIComponent(target.username)],
    ['password', decodeURIComponent(target.password)],
  ];
  return fields.filter(([, v]) => v !== '').map(([k, v]) => `${k}=${quote(v)}`).join(' ');
}

export async function startPgBouncer(databaseUrl: string, settings: Record<string, string | number> = {}): Promise<Bouncer> {
  const target = new URL(databaseUrl);
  const database = target.pathname.slice(1);
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'trellis-pgbouncer-'));
  const asRoot = process.getuid?.() === 0;
  const config = {
    listen_addr: '127.0.0.1',
    listen_port: port,
    unix_socket_dir: '',
    auth_type: 'any',
    pool_mode: 'transaction',
    default_pool_size: 4,
    max_client_conn: 500,
    server_round_robin: 1,
    logfile: join(dir, 'pgbouncer.log'),
    ...settings,
  };
  const ini = [
    '[databases]',
    `${database} = ${serverEntry(target, database)}`,
    '[pgbouncer]',
    ...Object.entries(config).map(([k, v]) => `${k} = ${v}`),
  ].join('\n');
  const file = join(dir, 'pgbouncer.ini');
  writeFileSync(file, `${ini}\n`, { mode: 0o600 });
  if (asRoot) {
    const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
    const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim());
    chmodSync(dir, 0o700);
    chownSync(dir, uid, gid);
    chownSync(file, uid, gid);
  }
  const child: ChildProcess = spawn(BINARY, asRoot ? ['-u', 'postgres', file] : [file], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (d) => (stderr += d));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const url = `postgres://${target.username}:${target.password}@127.0.0.1:${port}/${database}`;
  const log = () => {
    try {
      return readFileSync(config.logfile as string, 'utf8');
    } catch {
      return '';
    }
  };
  let died: Error | undefined;
  const alive = () => {
    if (child.exitCode !== null) throw (died = new Error(`pgbouncer exited: ${stderr}${log()}`));
  };
  try {
    await untilAccepting(url, { timeout: 15_000, interval: 50, what: 'pgbouncer', check: alive });
  } catch (error) {
    if (error === died) throw error;
    child.kill('SIGKILL');
    throw new Error(`pgbouncer did not accept connections: ${String(error)}\n${stderr}${log()}`);
  }
  return {
    url,
    version: pgbouncerVersion(),
    pid: child.pid ?? 0,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        process.kill(child.pid ?? 0, 'SIGINT');
        await exited;
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
