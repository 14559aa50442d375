/**
 * The package's "exports": plain Node (no tsx) imports `trellis` and
 * `trellis/testing` from the build in dist/, TypeScript finds their types
 * there, and the `trellis-source` condition maps both to the sources. The
 * build goes to a temporary copy of the package root, never to dist/ of the
 * checkout, so test runs in parallel do not race on it.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { copyFile, mkdtemp, readFile, realpath, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
const root = fileURLToPath(new URL('../..', import.meta.url));
const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc');

/** The environment of a child `node` without the test runner's tsx hooks. */
function plainEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  delete env.NODE_OPTIONS;
  return env;
}

const PROBE = `
const trellis = await import('trellis');
const testing = await import('trellis/testing');
console.log(JSON.stringify({
  resolved: [import.meta.resolve('trellis'), import.meta.resolve('trellis/testing')],
  trellis: ['createClient', 'createWorker', 'defineWorkflow', 'migrate', 'TrellisError'].map((n) => typeof trellis[n]),
  testing: ['createTestEnv', 'startEmbeddedPostgres'].map((n) => typeof testing[n]),
  error: new trellis.ValidationError('x').code,
}));
`;

const CONSUMER = `
import { createClient, defineWorkflow, type RunHandle } from 'trellis';
import { createTestEnv, type TestEnv } from 'trellis/testing';
export const start: typeof createClient = createClient;
export const define: typeof defineWorkflow = defineWorkflow;
export type Env = TestEnv;
export type Handle = RunHandle<number>;
export const make: (o: { workflows: [] }) => Promise<TestEnv> = createTestEnv;
// @ts-expect-error the declarations are real types, not any
export const wrong: number = createClient;
`;

let pkg: string;
before(async () => {
  // A package root of its own: the checkout's package.json, its sources and
  // dependencies by symlink, and a fresh build in dist/.
  pkg = await mkdtemp(join(tmpdir(), 'trellis-pkg-'));
  await copyFile(join(root, 'package.json'), join(pkg, 'package.json'));
  await symlink(join(root, 'node_modules'), join(pkg, 'node_modules'), 'dir');
  await symlink(join(root, 'src'), join(pkg, 'src'), 'dir');
  await run(process.execPath, [tsc, '-p', join(root, 'tsconfig.build.json'), '--outDir', join(pkg, 'dist')], { cwd: root, env: plainEnv() })
    .catch((error: { stdout?: string | undefined }) => assert.fail(`the build failed:\n${error.stdout ?? String(error)}`));
  await writeFile(join(pkg, 'probe.mjs'), PROBE);
});
after(async () => {
  if (pkg) await rm(pkg, { recursive: true, force: true });
});

describe('package exports', () => {
  it('plain node imports trellis and trellis/testing by name from dist/', async () => {
    const { stdout } = await run(process.execPath, ['probe.mjs'], { cwd: pkg, env: plainEnv() });
    const out = JSON.parse(stdout);
    assert.deepEqual(out.resolved.map((u: string) => fileURLToPath(u).slice(pkg.length)), ['/dist/index.js', '/dist/testing/index.js']);
    assert.deepEqual(out.trellis, ['function', 'function', 'function', 'function', 'function']);
    assert.deepEqual(out.testing, ['function', 'function']);
    assert.equal(out.error, 'validation');
  });

  it('the trellis-source condition resolves both to the TypeScript sources (for tsx)', async () => {
    const { stdout } = await run(process.execPath, ['--conditions=trellis-source', '--import', 'tsx', 'probe.mjs'], { cwd: pkg, env: plainEnv() });
    const out = JSON.parse(stdout);
    const sources = await Promise.all(['src/index.ts', 'src/testing/index.ts'].map((f) => realpath(join(pkg, f))));
    assert.deepEqual(await Promise.all(out.resolved.map((u: string) => realpath(fileURLToPath(u)))), sources);
    assert.deepEqual(out.testing, ['function', 'function']);
  });

  it('TypeScript resolves the types of both from the declarations in dist/', async () => {
    await writeFile(join(pkg, 'consumer.ts'), CONSUMER);
    await writeFile(join(pkg, 'tsconfig.json'), JSON.stringify({
      compilerOptions: { target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', strict: true, noEmit: true, types: ['node'] },
      files: ['consumer.ts'],
    }));
    await run(process.execPath, [tsc, '-p', join(pkg, 'tsconfig.json')], { cwd: pkg, env: plainEnv() }).catch((error: { stdout?: string | undefined }) => {
      assert.fail(`tsc failed:\n${error.stdout ?? String(error)}`);
    });
  });

  it('plain node imports trellis/dashboard from dist/ (hono and all)', async () => {
    await writeFile(join(pkg, 'dashboard-probe.mjs'), `const d = await import('trellis/dashboard');
console.log(JSON.stringify([import.meta.resolve('trellis/dashboard'), typeof d.createDashboard, typeof d.serveDashboard]));`);
    const { stdout } = await run(process.execPath, ['dashboard-probe.mjs'], { cwd: pkg, env: plainEnv() });
    const [resolved, ...types] = JSON.parse(stdout);
    assert.equal(fileURLToPath(resolved).slice(pkg.length), '/dist/dashboard/index.js');
    assert.deepEqual(types, ['function', 'function']);
  });

  it('every target of "exports" exists and "files" ships dist/', async () => {
    const manifest = JSON.parse(await readFile(join(pkg, 'package.json'), 'utf8'));
    const targets = Object.values(manifest.exports).flatMap((t) => (typeof t === 'string' ? [t] : Object.values(t as object))) as string[];
    for (const target of targets) assert.ok((await stat(join(pkg, target))).isFile(), `${target} exists`);
    assert.ok(manifest.files.includes('dist'));
  });
});
