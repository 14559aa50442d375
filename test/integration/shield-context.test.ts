import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import { adminUrl } from '../helpers/db.ts';

const script = fileURLToPath(new URL('../fixtures/shield-tracking.ts', import.meta.url));

function runFixture(): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', script], {
      env: { ...process.env, TRELLIS_TEST_ADMIN_URL: adminUrl() },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve(out);
      else reject(new Error(`fixture exited ${code ?? signal}: ${out}`));
    });
  });
}

describe('ctx.nonCancellable and the process', () => {
  it('leaves no async context tracking enabled once a shield ends, by its scope or with its execution', async () => {
    const seen = JSON.parse(await runFixture());
    assert.deepEqual(seen, {
      before: false,
      result: { charged: 10, refunded: 10 },
      afterScope: false,
      afterPark: false,
      ended: 'CancelledError',
      nap: 'completed',
    });
  });
});
