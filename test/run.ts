/**
 * `npm test`: runs every test file with node:test (through tsx) against one
 * PostgreSQL server: DATABASE_URL when set (it must be allowed to CREATE
 * DATABASE: each test file gets its own database), otherwise an embedded
 * server started here and stopped afterwards.
 *   npm test                      everything
 *   npm test -- test/sql          one folder or file
 */
import { spawn } from 'node:child_process';
import { readdir, stat } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startEmbeddedPostgres } from '../src/testing/embedded-postgres.ts';

const root = fileURLToPath(new URL('..', import.meta.url));
const SUITES = ['test/unit', 'test/sql', 'test/integration', 'test/fault'];

async function collect(path: string): Promise<string[]> {
  const info = await stat(path);
  if (info.isFile()) return path.endsWith('.test.ts') ? [path] : [];
  const out: string[] = [];
  for (const entry of (await readdir(path)).sort()) out.push(...(await collect(join(path, entry))));
  return out;
}

const targets = process.argv.slice(2).filter((a) => !a.startsWith('-'));
const files = (await Promise.all((targets.length ? targets : SUITES).map((t) => collect(join(root, t))))).flat();
if (!files.length) {
  console.error('no test files found');
  process.exit(1);
}

let stop: (() => Promise<void>) | undefined;
const env = { ...process.env };
if (!env.DATABASE_URL) {
  const server = await startEmbeddedPostgres();
  stop = server.stop;
  env.TRELLIS_TEST_ADMIN_URL = server.connectionString;
  console.log(`# embedded PostgreSQL on 127.0.0.1:${server.port} (pid ${server.pid})`);
} else {
  env.TRELLIS_TEST_ADMIN_URL = env.DATABASE_URL;
  console.log('# using DATABASE_URL');
}

const child = spawn(
  process.execPath,
  [
    '--import',
    'tsx',
    '--test',
    // TAP as before, then every failure again at the very end (a CI log's tail names what failed).
    '--test-reporter=tap',
    '--test-reporter-destination=stdout',
    `--test-reporter=${join(root, 'test/failures-reporter.mjs')}`,
    '--test-reporter-destination=stdout',
    '--test-concurrency=2',
    `--test-timeout=${process.env.TRELLIS_TEST_TIMEOUT_MS ?? 300000}`,
    ...files.map((f) => relative(root, f)),
  ],
  { cwd: root, env, stdio: 'inherit' },
);
const code: number = await new Promise((resolve) => child.on('exit', (c, signal) => resolve(c ?? (signal ? 1 : 0))));
await stop?.();
process.exit(code);
