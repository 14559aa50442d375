/** examples/dashboard: the dashboard mounted next to an app's own routes in one node:http server. */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { freshDatabase, type TestDatabase } from '../helpers/db.ts';

const root = fileURLToPath(new URL('../..', import.meta.url));

describe('examples/dashboard', () => {
  let db: TestDatabase;
  before(async () => {
    db = await freshDatabase();
  });
  after(() => db.close());

  it('serves the app and the dashboard pages from one server and exits 0', async () => {
    const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', 'examples/dashboard/main.ts'], {
      cwd: root, env: { ...process.env, DATABASE_URL: db.url, TRELLIS_DASHBOARD_TOKEN: 'example-token-123' }, timeout: 60_000,
    });
    assert.match(stdout, /^dashboard: http:\/\/127\.0\.0\.1:\d+\/trellis\/$/m);
    assert.match(stdout, /^app: your app$/m);
    assert.match(stdout, /^GET \/trellis\/ -> 200 Overview · Trellis$/m);
    assert.match(stdout, /^GET \/trellis\/runs\?metadata=customer%3Dacme -> 200 Runs · Trellis$/m);
    assert.match(stdout, /^GET \/trellis\/runs\/[0-9a-f-]{36} -> 200 approval [0-9a-f]{8} · Trellis$/m);
    const [row] = (await db.pool.query<{ status: string }>(`select status from trellis.runs where key = 'order-A-7'`)).rows;
    assert.equal(row?.status, 'waiting');
  });
});
