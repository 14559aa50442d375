/**
 * The `trellis` program as a user runs it: the compiled CLI (built into a
 * temporary copy of the package, as in package-exports.test.ts) started by
 * plain node through bin/trellis.mjs, its output read through pipes; and the
 * development fallback (no dist/: the sources through tsx).
 */
import assert from 'node:assert/strict';
import { execFile, spawn, spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import pg from 'pg';
import { captureIo } from '../../src/cli/io.ts';
import { main } from '../../src/cli/main.ts';
import { createClient } from '../../src/client/client.ts';
import { installScript, latestMigration } from '../../src/schema/install.ts';
import { silentLogger } from '../../src/protocol/logger.ts';
import { createDatabase, testPool } from '../helpers/db.ts';
import { waitFor } from '../helpers/wait.ts';
import { startProxy, throughProxy } from '../helpers/tcp-proxy.ts';
import { SCHEMA_MIGRATION, SCHEMA_SQL_REVISION } from '../../src/protocol/schema-version.generated.ts';

const execFileP = promisify(execFile);
const root = fileURLToPath(new URL('../..', import.meta.url));

/** A child node without the test runner's tsx hooks: what a user's shell starts. */
function plainEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env = { ...process.env, ...extra };
  delete env.NODE_OPTIONS;
  return env;
}

let database: Awaited<ReturnType<typeof createDatabase>>;
let pkg: string;
let bin: string;
before(async () => {
  database = await createDatabase('trellis_cli');
  pkg = await mkdtemp(join(tmpdir(), 'trellis-cli-pkg-'));
  await copyFile(join(root, 'package.json'), join(pkg, 'package.json'));
  await symlink(join(root, 'node_modules'), join(pkg, 'node_modules'), 'dir');
  await mkdir(join(pkg, 'bin'));
  bin = join(pkg, 'bin', 'trellis.mjs');
  await copyFile(join(root, 'bin', 'trellis.mjs'), bin);
  const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc');
  await execFileP(process.execPath, [tsc, '-p', join(root, 'tsconfig.build.json'), '--outDir', join(pkg, 'dist')], { cwd: root, env: plainEnv() })
    .catch((error: { stdout?: string | undefined }) => assert.fail(`the build failed:\n${error.stdout ?? String(error)}`));
});
after(async () => {
  await database?.drop();
  if (pkg) await rm(pkg, { recursive: true, force: true });
});

/** Run the compiled CLI to completion. */
const trellis = (args: string[], env: Record<string, string> = {}) =>
  spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', env: plainEnv(env), cwd: root });

/**
 * `trellis worker <module>` as a child process of the compiled CLI, and a
 * client on its database: `started` settles at its "worker started" line
 * (rejects if it exits first), `stderr()` is what it wrote so far.
 */
function workerProcess(module: string, id: string, url = database.url) {
  const child = spawn(process.execPath, [bin, 'worker', module, '--database-url', url, '--id', id],
    { cwd: root, env: plainEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const started = new Promise<void>((resolve, reject) => {
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
      if (stderr.includes('"worker started"')) resolve();
    });
    void exited.then(() => reject(new Error(`the worker exited early:\n${stderr}`)));
  });
  const pool = testPool({ connectionString: database.url, max: 2 });
  const client = createClient({ pool, logger: silentLogger, handoff: false });
  return { child, exited, started, stderr: () => stderr, client, pool };
}

describe('the compiled trellis program', () => {
  it('runs from dist/ with plain node; dist/ never imports tsx, and only trellis/models (state machines, templates) imports zod', () => {
    const version = trellis(['--version']);
    assert.equal(version.status, 0, version.stderr);
    assert.equal(version.stdout, `${JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).version} (schema migration ${SCHEMA_MIGRATION}, SQL revision ${SCHEMA_SQL_REVISION})\n`);
    const files = (readdirSync(join(pkg, 'dist'), { recursive: true }) as string[]).filter((f) => f.endsWith('.js'));
    assert.ok(files.includes(join('cli', 'main.js')));
    // zod is an optional peer that only the trellis/models entry needs.
    const modelsOnly = (file: string) => /^(state-machine|templates)[/\\]/.test(file) || file === 'models.js' || file === 'models-requires-zod4.js';
    for (const file of files) {
      const text = readFileSync(join(pkg, 'dist', file), 'utf8');
      const banned = modelsOnly(file) ? 'tsx' : 'zod|tsx';
      assert.doesNotMatch(text, new RegExp(`^(import|export)\\b[^\\n]*from ['"](${banned})[/'"]|\\bimport\\(['"](${banned})[/'"]`, 'm'), file);
    }
    assert.doesNotMatch(readFileSync(join(pkg, 'dist', 'index.js'), 'utf8'), /models\.js/, 'the main entry does not load trellis/models');
    const manifest = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
    for (const name of ['zod', 'tsx']) assert.equal(manifest.dependencies[name], undefined, `${name} is not a runtime dependency`);
  });

  it('migrate installs the schema, then reports it is up to date; status reads it', () => {
    const first = trellis(['migrate', '--database-url', database.url]);
    assert.equal(first.status, 0, first.stderr);
    assert.match(first.stdout, new RegExp(`applied migrations 1, .*schema at ${latestMigration()}`));
    const again = trellis(['migrate'], { DATABASE_URL: database.url });
    assert.match(again.stdout, new RegExp(`schema already at ${latestMigration()}`));
    const status = trellis(['status', '--database-url', database.url]);
    assert.equal(status.status, 0, status.stderr);
    assert.equal(status.stdout, `schema at migration ${latestMigration()}\nno runs\n`);
  });

  it('sql piped into a slow reader arrives whole (no cut at 64 KiB), exit 0', () => {
    const expected = Buffer.byteLength(installScript(0));
    assert.ok(expected > 100 * 1024, 'the script is past one pipe buffer (64 KiB)');
    // The reader starts reading only after 2 s: by then the CLI has filled the pipe (64 KiB) and
    // must wait for it to drain before it exits (the old CLI exited at once: 65536 bytes arrived).
    const r = spawnSync('bash', ['-c', `"${process.execPath}" "${bin}" sql | (sleep 2; wc -c); echo "exit \${PIPESTATUS[0]}"`],
      { encoding: 'utf8', env: plainEnv() });
    assert.equal(r.stdout.replace(/^ +/, ''), `${expected}\nexit 0\n`, r.stderr);
  });

  it('output that cannot be written (a full disk) is exit 1 with one line on stderr, not a silent exit', () => {
    const r = spawnSync('bash', ['-c', `"${process.execPath}" "${bin}" sql > /dev/full; echo "exit $?" >&2`], { encoding: 'utf8', env: plainEnv() });
    assert.match(r.stderr, /^trellis: \[io\] cannot write the output \(ENOSPC\): it is incomplete\nexit 1\n$/);
  });

  it('trellis sql | psql installs a working schema', async () => {
    const fresh = await createDatabase('trellis_cli_sql');
    try {
      const r = spawnSync('bash', ['-c', `set -o pipefail; "${process.execPath}" "${bin}" sql | psql -q -v ON_ERROR_STOP=1 "${fresh.url}" >/dev/null`],
        { encoding: 'utf8', env: plainEnv() });
      assert.equal(r.status, 0, r.stderr);
      const client = new pg.Client({ connectionString: fresh.url });
      await client.connect();
      try {
        await client.query(`select trellis.workflow_register('[{"name":"w","version":"1"}]')`);
        const { rows } = await client.query(`select trellis.run_start('w', '{}') as id`);
        assert.match(rows[0].id, /^[0-9a-f-]{36}$/);
      } finally {
        await client.end();
      }
    } finally {
      await fresh.drop();
    }
  });

  it('a database that is down: one line on stderr and exit 5; --verbose adds the stack', () => {
    const down = 'postgres://nobody@127.0.0.1:1/nothing';
    const r = trellis(['ls', '--database-url', down]);
    assert.equal(r.status, 5);
    assert.equal(r.stdout, '');
    assert.match(r.stderr, /^trellis ls: \[database\] cannot reach the database: .*ECONNREFUSED.*\n$/);
    const verbose = trellis(['ls', '--database-url', down, '--verbose']);
    assert.equal(verbose.status, 5);
    assert.match(verbose.stderr, /\n\s+at /);
  });

  it('a server that refuses TLS when the URL requires it is the database not reached: exit 5', () => {
    const url = new URL(database.url);
    url.searchParams.set('sslmode', 'require');
    const r = trellis(['ls', '--database-url', url.toString()]);
    assert.equal(r.status, 5, r.stderr);
    // (pg itself may print a process warning about sslmode aliases first.)
    assert.match(r.stderr.trim().split('\n').at(-1) ?? '', /^trellis ls: \[database\] cannot reach the database over TLS: .*SSL/);
  });

  it('a database without the schema: exit 6 with the hint to migrate', async () => {
    const empty = await createDatabase('trellis_cli_empty');
    try {
      const r = trellis(['ls', '--database-url', empty.url]);
      assert.equal(r.status, 6);
      assert.match(r.stderr, /^trellis ls: \[schema_version\] the trellis schema is not installed: run `trellis migrate`/);
    } finally {
      await empty.drop();
    }
  });

  it('worker serves the workflows of a .ts module, then shuts down gracefully on SIGTERM with exit 0', async () => {
    const { child, exited, started, stderr, client, pool } = workerProcess('test/fixtures/cli-workflows.ts', 'cli-test-worker');
    try {
      await started;
      const run = await client.start('cli-greet', { name: 'Sig' });
      assert.deepEqual(await run.result({ timeout: '20s' }), { text: 'Hello, Sig!' });
      child.kill('SIGTERM');
      assert.equal(await exited, 0, stderr());
      const lines = stderr().trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
      assert.deepEqual(lines.at(-1), { ...lines.at(-1), level: 'info', message: 'worker stopped', worker: 'cli-test-worker' });
      assert.ok(lines.some((l) => l.message === 'worker stopping' && l.signal === 'SIGTERM'));
    } finally {
      child.kill('SIGKILL');
      await client.close();
      await pool.end();
    }
  });

  it('worker waits for a database it cannot reach yet, starts once it can, and a SIGTERM while it waits exits 0', async () => {
    const proxy = await startProxy({ host: '127.0.0.1', port: Number(new URL(database.url).port) });
    proxy.refusing = true; // a server still starting, or full: every new connection dropped
    const url = throughProxy(database.url, proxy.port);
    const waiting = workerProcess('test/fixtures/cli-workflows.ts', 'cli-waiting-worker', url);
    const gaveUp = workerProcess('test/fixtures/cli-workflows.ts', 'cli-stopped-worker', url);
    gaveUp.started.catch(() => undefined); // it exits without starting
    try {
      await waitFor(() => waiting.stderr().includes('"worker could not start; trying again"') && gaveUp.stderr().includes('"worker could not start; trying again"'),
        { what: 'both workers waiting for the database' });
      gaveUp.child.kill('SIGTERM');
      assert.equal(await gaveUp.exited, 0, gaveUp.stderr());
      assert.match(gaveUp.stderr(), /"worker stopped before it started"/);
      proxy.refusing = false;
      await waiting.started;
      const run = await waiting.client.start('cli-greet', { name: 'Late' });
      assert.deepEqual(await run.result({ timeout: '20s' }), { text: 'Hello, Late!' });
      waiting.child.kill('SIGTERM');
      assert.equal(await waiting.exited, 0, waiting.stderr());
    } finally {
      for (const w of [waiting, gaveUp]) {
        w.child.kill('SIGKILL');
        await w.client.close();
        await w.pool.end();
      }
      await proxy.close();
    }
  });

  it('dashboard serves the pages on 127.0.0.1 with the token from the environment, and stops on SIGTERM with exit 0', async () => {
    const token = 'cli-dashboard-token-1234';
    const child = spawn(process.execPath, [bin, 'dashboard', '--port', '0', '--database-url', database.url],
      { cwd: root, env: plainEnv({ TRELLIS_DASHBOARD_TOKEN: token }), stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    try {
      const url = await new Promise<string>((resolve, reject) => {
        child.stdout.on('data', (chunk: Buffer) => {
          stdout += chunk.toString();
          const m = /^dashboard on (http:\/\/127\.0\.0\.1:\d+\/)$/m.exec(stdout);
          if (m) resolve(m[1]!);
        });
        void exited.then(() => reject(new Error(`the dashboard exited early:\n${stderr}`)));
      });
      const anonymous = await fetch(url, { redirect: 'manual' });
      assert.notEqual(anonymous.status, 200, 'a token is required');
      const page = await fetch(url, { headers: { authorization: `Bearer ${token}` } });
      assert.equal(page.status, 200);
      assert.match(await page.text(), /<html/i);
      child.kill('SIGTERM');
      assert.equal(await exited, 0, stderr);
    } finally {
      child.kill('SIGKILL');
    }
  });

  it('worker loads a plain JavaScript module with no TypeScript loader anywhere', async () => {
    // A Standard Schema by hand: the module needs nothing but the built package.
    await writeFile(join(pkg, 'workflows.mjs'), `
      import { defineWorkflow } from './dist/index.js';
      const any = { '~standard': { version: 1, vendor: 'test', validate: (value) => ({ value }) } };
      export const js = defineWorkflow({ name: 'cli-js', input: any }, async (ctx) => ctx.step('one', () => 1));
    `);
    const child = spawn(process.execPath, [bin, 'worker', 'workflows.mjs', '--database-url', database.url, '--log-level', 'warn'],
      { cwd: pkg, env: plainEnv({ NODE_OPTIONS: '' }), stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    try {
      const pool = testPool({ connectionString: database.url, max: 1 });
      try {
        await waitFor(async () => (await pool.query(`select 1 from trellis.workflows where name = 'cli-js'`)).rowCount, { what: 'the registration' });
      } finally {
        await pool.end();
      }
      child.kill('SIGTERM');
      assert.equal(await exited, 0, stderr);
      assert.equal(stderr, '', 'nothing at warn or above');
    } finally {
      child.kill('SIGKILL');
    }
  });

  it('worker refuses a module that exports no workflows, or does not exist (exit 2)', () => {
    const none = trellis(['worker', 'test/helpers/wait.ts', '--database-url', database.url]);
    assert.equal(none.status, 2, none.stderr);
    assert.match(none.stderr, /^trellis worker: "test\/helpers\/wait.ts" exports no workflows/);
    assert.equal(trellis(['worker', 'nope.js', '--database-url', database.url]).status, 2);
  });

  it('worker serves a .ts module written with import/export in a CommonJS project (npm init\'s default type)', async () => {
    const empty = trellis(['worker', 'test/fixtures/cjs-project/exports-nothing.ts', '--database-url', database.url]);
    assert.equal(empty.status, 2, empty.stderr);
    assert.match(empty.stderr, /^trellis worker: "test\/fixtures\/cjs-project\/exports-nothing.ts" exports no workflows/);
    // tsx compiles it to CommonJS: its exports arrive as the namespace's default object.
    const { child, exited, started, stderr, client, pool } = workerProcess('test/fixtures/cjs-project/workflows.ts', 'cli-cjs-worker');
    try {
      await started;
      const run = await client.start('cjs-hello', { who: 'cjs' });
      assert.equal(await run.result({ timeout: '20s' }), 'hello cjs');
      child.kill('SIGTERM');
      assert.equal(await exited, 0, stderr());
    } finally {
      child.kill('SIGKILL');
      await client.close();
      await pool.end();
    }
  });
});

describe('the trellis program in a checkout without dist/ (development)', () => {
  it('bin/trellis.mjs falls back to the sources through tsx (a devDependency)', () => {
    const result = spawnSync(process.execPath, ['bin/trellis.mjs', 'sql', '--from', '1'], { cwd: root, encoding: 'utf8', env: plainEnv() });
    assert.equal(result.status, 0, result.stderr);
    assert.match(result.stdout, /create or replace function trellis.run_start/);
    assert.doesNotMatch(result.stdout, /create table trellis.runs/);
  });

  it('runs from a directory whose name has a space, as a copy and through a symlink', () => {
    const dir = mkdtempSync(join(tmpdir(), 'trellis cli '));
    try {
      // A copy: import.meta.url spells the space %20, process.argv[1] does not.
      const copy = join(dir, 'with space');
      cpSync(join(root, 'src'), join(copy, 'src'), { recursive: true });
      cpSync(join(root, 'package.json'), join(copy, 'package.json'));
      symlinkSync(join(root, 'node_modules'), join(copy, 'node_modules'));
      // A symlink: node runs the real file, argv[1] names the link.
      const link = join(dir, 'linked repo');
      symlinkSync(root, link);
      for (const cli of [join(copy, 'src/cli/main.ts'), join(link, 'src/cli/main.ts')]) {
        const result = spawnSync(process.execPath, ['--import', 'tsx', cli, 'sql', '--from', '1'], { cwd: root, encoding: 'utf8' });
        assert.equal(result.status, 0, `${cli}: ${result.stderr}`);
        assert.match(result.stdout, /create or replace function trellis.run_start/, cli);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('in-process main() returns the exit code and writes to the Io it is given', async () => {
    const io = captureIo({});
    assert.equal(await main(['sql', '--from', String(latestMigration())], io), 0);
    assert.match(io.stdout, /create or replace function trellis.run_start/);
    assert.equal(io.stderr, '');
  });
});
