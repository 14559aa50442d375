import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { freshDatabase, type TestDatabase } from '../helpers/db.ts';

const root = fileURLToPath(new URL('../..', import.meta.url));

let db: TestDatabase;
before(async () => {
  db = await freshDatabase();
});
after(() => db.close());

describe('tracing example', () => {
  it('exports one trace from the request through the run, its steps and its children to the console', async () => {
    const { code, stdout, stderr } = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve, reject) => {
      const child = spawn(process.execPath, ['--import', 'tsx', 'examples/tracing/main.ts'], {
        cwd: root, env: { ...process.env, DATABASE_URL: db.url }, stdio: ['ignore', 'pipe', 'pipe'],
      });
      let out = '';
      let err = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      child.stderr.on('data', (d: Buffer) => (err += d.toString()));
      const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
      child.on('error', reject);
      child.on('close', (c) => {
        clearTimeout(timer);
        resolve({ code: c, stdout: out, stderr: err });
      });
    });
    assert.equal(code, 0, `exit ${code}\nstdout:\n${stdout}\nstderr:\n${stderr}`);
    assert.match(stdout, /^result: \{"order":"A-17","parcels":\["mug@bin-3","teapot@bin-6"\]\}$/m);
    // Every exported span line names the same trace.
    const spans = stdout.split('\n').filter((l) => l.startsWith('span '));
    assert.equal(spans.length, 11);
    assert.equal(new Set(spans.map((l) => /trace=([0-9a-f]{32})/.exec(l)?.[1])).size, 1);
    assert.match(stdout, /^trace [0-9a-f]{32} has 11 spans in 1 trace\(s\)$/m);
    const tree = stdout.split('\n').filter((l) => l.startsWith('tree ')).map((l) => l.slice(5));
    assert.deepEqual(tree, [
      'POST /orders',
      '  workflow ship-order (wait)',
      '    step reserve',
      '    workflow pack-item (completed)',
      '      step locate',
      '      step pack',
      '    workflow pack-item (completed)',
      '      step locate',
      '      step pack',
      '  workflow ship-order (completed)',
      '    step ship',
    ]);
  });
});
