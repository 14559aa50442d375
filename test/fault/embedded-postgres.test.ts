/**
 * The embedded server never outlives the process that started it: however that
 * process ends (a signal, process.exit, an uncaught exception, SIGKILL), the
 * postmaster goes and its temporary directory is deleted.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { describe, it } from 'node:test';
import pg from 'pg';
import { startEmbeddedPostgres } from '../../src/testing/embedded-postgres.ts';

const MODULE = new URL('../../src/testing/embedded-postgres.ts', import.meta.url).href;

// The child: start a server, report it, then do what stdin says.
const CHILD = `
import pg from 'pg';
import { startEmbeddedPostgres } from ${JSON.stringify(MODULE)};
const server = await startEmbeddedPostgres();
if (process.argv.includes('--own-handler')) {
  // An application that drains on SIGINT: the server must still be up then.
  process.once('SIGINT', async () => {
    const client = new pg.Client({ connectionString: server.connectionString });
    await client.connect();
    const { rows } = await client.query('select 1 as one');
    await client.end();
    console.log('DRAINED ' + rows[0].one);
    await server.stop();
    process.exit(0);
  });
}
console.log('READY ' + JSON.stringify({ pid: server.pid, dataDir: server.dataDir, url: server.connectionString }));
process.stdin.setEncoding('utf8').on('data', (line) => {
  if (line.startsWith('exit')) process.exit(3);
  if (line.startsWith('throw')) throw new Error('boom');
});
setInterval(() => {}, 1000);
`;

interface Started {
  child: ChildProcess;
  pid: number;
  dataDir: string;
  url: string;
  output: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

async function startChild(args: string[] = []): Promise<Started> {
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', CHILD, '--', ...args], {
    cwd: new URL('../..', import.meta.url),
    env: { ...process.env, DATABASE_URL: '' },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout?.on('data', (d) => (output += d));
  child.stderr?.on('data', (d) => (output += d));
  let ended = false;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => {
      ended = true;
      resolve({ code, signal });
    }));
  // initdb and the server's start: a few seconds, far more on a loaded machine.
  const ready = await poll(() => {
    const found = /READY (\{.*\})/.exec(output)?.[1];
    if (!found && ended) assert.fail(`child exited before it was ready:\n${output}`);
    return found;
  }, 90_000, () => `child never got ready:\n${output}`).catch((error: unknown) => {
    child.kill('SIGKILL'); // not left running to hold the test file open
    throw error;
  });
  const { pid, dataDir, url } = JSON.parse(ready) as { pid: number; dataDir: string; url: string };
  return { child, pid, dataDir, url, output: () => output, exited };
}

/** Poll until `probe` returns a value, or fail after `ms`. */
async function poll<T>(probe: () => T | undefined | false, ms: number, why: () => string): Promise<T> {
  for (const deadline = Date.now() + ms; ;) {
    const value = probe();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) assert.fail(why());
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** A pid that no longer runs (a zombie waiting for its new parent to reap it counts as gone). */
function gone(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return /^[ZX]/.test(stat.slice(stat.lastIndexOf(')') + 2));
  } catch {
    if (process.platform === 'linux') return true;
  }
  try {
    process.kill(pid, 0);
    return false;
  } catch {
    return true;
  }
}

async function assertCleanedUp(started: Started): Promise<void> {
  const root = dirname(started.dataDir);
  assert.ok(root.includes('trellis-pg-'), root);
  await poll(() => gone(started.pid), 10_000, () => `postmaster ${started.pid} still runs\n${started.output()}`);
  await poll(() => !existsSync(root), 10_000, () => `${root} was left behind\n${started.output()}`);
}

describe('embedded PostgreSQL cleanup', () => {
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    it(`${signal} stops the server and deletes its directory`, async () => {
      const started = await startChild();
      assert.ok(existsSync(started.dataDir));
      assert.equal(gone(started.pid), false);
      started.child.kill(signal);
      const { code } = await started.exited;
      assert.equal(code, { SIGINT: 130, SIGTERM: 143, SIGHUP: 129 }[signal], started.output());
      await assertCleanedUp(started);
    });
  }

  it('process.exit(3) stops the server and deletes its directory', async () => {
    const started = await startChild();
    started.child.stdin?.write('exit\n');
    assert.equal((await started.exited).code, 3, started.output());
    await assertCleanedUp(started);
  });

  it('an uncaught exception stops the server and deletes its directory', async () => {
    const started = await startChild();
    started.child.stdin?.write('throw\n');
    assert.equal((await started.exited).code, 1, started.output());
    assert.match(started.output(), /boom/);
    await assertCleanedUp(started);
  });

  it('SIGKILL of the process: the watchdog stops the server and deletes its directory', async () => {
    const started = await startChild();
    started.child.kill('SIGKILL');
    assert.equal((await started.exited).signal, 'SIGKILL');
    await assertCleanedUp(started);
  });

  it('an application that handles SIGINT itself still has the server while it drains', async () => {
    const started = await startChild(['--own-handler']);
    started.child.kill('SIGINT');
    assert.equal((await started.exited).code, 0, started.output());
    assert.match(started.output(), /DRAINED 1/);
    await assertCleanedUp(started);
  });

  it('each server gets its own random password', async () => {
    const [a, b] = await Promise.all([startChild(), startChild()]);
    const password = (url: string) => new URL(url).password;
    try {
      assert.notEqual(password(a.url), 'trellis');
      assert.match(password(a.url), /^[0-9a-f]{32,}$/);
      assert.notEqual(password(a.url), password(b.url));
    } finally {
      a.child.kill('SIGTERM');
      b.child.kill('SIGTERM');
      await Promise.all([a.exited, b.exited]);
    }
    await Promise.all([assertCleanedUp(a), assertCleanedUp(b)]);
  });

  it('keeps serving while the process that started it is blocked (the server log is not a pipe to drain)', async () => {
    const server = await startEmbeddedPostgres();
    try {
      // ~600 kB of log lines, far beyond a pipe's buffer, while our event loop is stuck in spawnSync.
      const script = `const pg = require('pg');
        (async () => {
          const c = new pg.Client(${JSON.stringify(server.connectionString)});
          await c.connect();
          await c.query("do $$ begin for i in 1..3000 loop raise warning '%', repeat('x', 200); end loop; end $$");
          await c.end();
          console.log('DONE');
        })();`;
      const result = spawnSync(process.execPath, ['-e', script], { cwd: new URL('../..', import.meta.url), encoding: 'utf8', timeout: 15_000 });
      assert.equal(result.error, undefined);
      assert.match(result.stdout, /DONE/, result.stderr);
      const client = new pg.Client({ connectionString: server.connectionString });
      await client.connect();
      assert.equal((await client.query('select 1 as one')).rows[0].one, 1);
      await client.end();
    } finally {
      await server.stop();
    }
    assert.equal(existsSync(dirname(server.dataDir)), false);
  });
});
