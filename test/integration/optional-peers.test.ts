import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { execFile } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { useFreshDatabase } from '../helpers/database-fixture.ts';

const root = fileURLToPath(new URL('../..', import.meta.url));
const run = promisify(execFile);

const fx = useFreshDatabase();

describe('optional peer dependencies (prom-client, @opentelemetry/api)', () => {
  it('are never imported statically by the library', async () => {
    let seen = 0;
    for (const file of (await readdir(`${root}src`, { recursive: true })).filter((f) => f.endsWith('.ts'))) {
      const code = (await readFile(`${root}src/${file}`, 'utf8')).split('\n').filter((l) => !/^\s*(\*|\/\/|\/\*)/.test(l));
      for (const line of code.filter((l) => /from '(prom-client|@opentelemetry\/[^']+)'/.test(l))) {
        seen++;
        assert.match(line, /^import type /, `src/${file}: ${line}`);
      }
    }
    assert.ok(seen >= 2, 'the type imports were found');
  });

  it('are never named by the published type declarations (a TypeScript app without them compiles)', async () => {
    const out = await mkdtemp(join(tmpdir(), 'trellis-dts-'));
    try {
      await run(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', join(root, 'tsconfig.build.json'),
        '--emitDeclarationOnly', '--declarationMap', 'false', '--outDir', out], { cwd: root });
      let files = 0;
      for (const file of (await readdir(out, { recursive: true })).filter((f) => f.endsWith('.d.ts'))) {
        files++;
        const code = (await readFile(join(out, file), 'utf8')).split('\n').filter((l) => !/^\s*(\*|\/\/|\/\*)/.test(l));
        assert.deepEqual(code.filter((l) => /['"](prom-client|@opentelemetry\/[^'"]+)['"]/.test(l)), [], file);
      }
      assert.ok(files > 20, `${files} declaration files`);
    } finally {
      await rm(out, { recursive: true, force: true });
    }
  });

  it('without them installed, workers and clients run, and asking for metrics or tracing is a ValidationError naming the package', async () => {
    const { code, stdout, stderr } = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve, reject) => {
      const child = spawn(process.execPath, ['--import', 'tsx', '--import', './test/helpers/hide-optional-peers.mjs', 'test/helpers/without-optional-peers.ts'], {
        cwd: root, env: { ...process.env, DATABASE_URL: fx.db.url }, stdio: ['ignore', 'pipe', 'pipe'],
      });
      let out = '';
      let err = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      child.stderr.on('data', (d: Buffer) => (err += d.toString()));
      child.on('error', reject);
      child.on('close', (c) => resolve({ code: c, stdout: out, stderr: err }));
    });
    assert.equal(code, 0, `exit ${code}\nstdout:\n${stdout}\nstderr:\n${stderr}`);
    const report = JSON.parse(stdout.trim().split('\n').at(-1) as string);
    assert.equal(report.output, 42);
    const refused = (pkg: string) => ({
      code: 'validation',
      message: `Trellis ${pkg === 'prom-client' ? 'metrics' : 'tracing'} needs the optional package ${pkg}, which is not installed: npm install ${pkg}`,
      details: { package: pkg },
    });
    assert.deepEqual(report.createMetrics, refused('prom-client'));
    assert.deepEqual(report.workerMetrics, refused('prom-client'));
    assert.deepEqual(report.workerTracing, refused('@opentelemetry/api'));
    assert.deepEqual(report.clientTracing, refused('@opentelemetry/api'));
    assert.equal(report.runsWrittenByRefusedStart, 0);
  });
});
