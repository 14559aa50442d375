/**
 * Local PostgreSQL instances for `npm run test:citus`: a Citus cluster (a
 * coordinator and workers, each a Debian PostgreSQL on 127.0.0.1 with the
 * citus extension preloaded) or one plain node to compare against. Needs the
 * Debian server binaries (pg_config --bindir) and, for Citus, the extension
 * built into them (see docs/scaling.md: ../shared/tools/citus-build.sh or a
 * Citus package).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, appendFileSync, chmodSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';

export interface LocalNodes {
  /** The first node (the coordinator of a cluster). */
  url: string;
  urls: string[];
  stop(): void;
}

function bindir(): string {
  return execFileSync('pg_config', ['--bindir'], { encoding: 'utf8' }).trim();
}

/** Why a local Citus cluster cannot start here, or null when it can. */
export function citusMissing(): string | null {
  let lib: string;
  try {
    lib = execFileSync('pg_config', ['--pkglibdir'], { encoding: 'utf8' }).trim();
  } catch {
    return 'no PostgreSQL server binaries (pg_config not found): install postgresql-15 and postgresql-server-dev-15';
  }
  if (!existsSync(join(bindir(), 'initdb'))) return `no initdb in ${bindir()}: install the Debian postgresql-15 package`;
  if (!existsSync(join(lib, 'citus.so'))) {
    return `the citus extension is not installed in ${lib}: build it (../shared/tools/citus-build.sh <clone of github citusdata/citus>) or set CITUS_URL`;
  }
  return null;
}

/** Start `count` nodes on ports base, base + 1, …; with citus, node 0 coordinates the rest. */
export async function startNodes(count: number, base: number, citus: boolean): Promise<LocalNodes> {
  const bin = bindir();
  const root = mkdtempSync(join(tmpdir(), 'trellis-citus-'));
  chmodSync(root, 0o777);
  // initdb refuses to run as root: run the servers as the postgres OS user then.
  const as = process.getuid?.() === 0 ? ['runuser', '-u', 'postgres', '--'] : [];
  const run = (cmd: string, args: string[]) => {
    const [file, ...rest] = [...as, join(bin, cmd), ...args];
    execFileSync(file!, rest, { stdio: ['ignore', 'ignore', 'pipe'] });
  };
  const dirs: string[] = [];
  const stop = () => {
    for (const d of dirs) {
      try {
        run('pg_ctl', ['-D', d, '-m', 'immediate', '-w', 'stop']);
      } catch {
        // already stopped
      }
    }
    rmSync(root, { recursive: true, force: true });
  };
  try {
    const urls: string[] = [];
    for (let i = 0; i < count; i++) {
      const dir = join(root, `node${i}`);
      mkdirSync(dir);
      chmodSync(dir, 0o777);
      const data = join(dir, 'data');
      run('initdb', ['-D', data, '-U', 'postgres', '--auth=trust', '--no-sync']);
      dirs.push(data);
      appendFileSync(join(data, 'postgresql.conf'), [
        "listen_addresses = '127.0.0.1'", `port = ${base + i}`, "unix_socket_directories = ''",
        'max_connections = 200', 'max_prepared_transactions = 200',
        citus ? "shared_preload_libraries = 'citus'" : '', ''].join('\n'));
      run('pg_ctl', ['-D', data, '-l', join(dir, 'log'), '-w', 'start']);
      urls.push(`postgres://postgres@127.0.0.1:${base + i}/postgres`);
    }
    if (citus) {
      for (const url of urls) await sql(url, 'create extension if not exists citus');
      await sql(urls[0]!, `select citus_set_coordinator_host('127.0.0.1', ${base})`);
      for (let i = 1; i < count; i++) await sql(urls[0]!, `select citus_add_node('127.0.0.1', ${base + i})`);
    }
    return { url: urls[0]!, urls, stop };
  } catch (error) {
    stop();
    throw error;
  }
}

/** Run one statement (or a script) on a fresh connection. */
export async function sql<T extends pg.QueryResultRow = pg.QueryResultRow>(url: string, text: string, values?: unknown[]): Promise<T[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query<T>(text, values)).rows;
  } finally {
    await client.end();
  }
}
