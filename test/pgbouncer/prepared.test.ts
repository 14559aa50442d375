/**
 * Prepared statements through PgBouncer 1.21 and later in transaction mode
 * (`npm run test:pgbouncer`: scripts/pgbouncer-build.sh builds 1.24.1 from
 * Debian's source, since Debian 12 ships 1.18; test/fault/pgbouncer.test.ts
 * covers 1.18). With `max_prepared_statements` set, the engine's named
 * statements stay on — by default ('auto') and with `true` — and PgBouncer
 * prepares each once per server connection; set to 0, 'auto' switches them
 * off by itself as before 1.21. LISTEN goes direct (`listenUrl`).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { z } from 'zod';
import { createClient } from '../../src/client/client.ts';
import { type Logger, loggerFrom } from '../../src/protocol/logger.ts';
import { migrate } from '../../src/schema/install.ts';
import { createWorker } from '../../src/worker/worker.ts';
import { defineWorkflow } from '../../src/workflow/define.ts';
import { createDatabase, testPool } from '../helpers/db.ts';
import { type Bouncer, startPgBouncer } from '../helpers/pgbouncer.ts';

let database: Awaited<ReturnType<typeof createDatabase>>;
before(async () => {
  database = await createDatabase();
  await migrate(database.url);
});
after(async () => {
  await database?.drop();
});

const three = defineWorkflow({ name: 'bounced-prepared', input: z.object({ n: z.number() }) }, async (ctx, { n }) => {
  const a = await ctx.step('a', () => n + 1);
  const b = await ctx.step('b', () => a * 2);
  return ctx.step('c', () => b + 1);
});

function warnings(lines: string[]): Logger {
  return loggerFrom((level, message) => {
    if (level === 'warn' || level === 'error') lines.push(message);
  });
}

/** PgBouncer's own counters (SHOW STATS on its admin console), summed over databases. */
async function stats(bouncer: Bouncer): Promise<{ clientParses: number; serverParses: number; binds: number }> {
  const admin = new URL(bouncer.url);
  admin.pathname = '/pgbouncer';
  const c = new pg.Client({ connectionString: admin.toString() });
  await c.connect();
  try {
    const { rows } = await c.query('show stats');
    const sum = (column: string) => rows.reduce((n, r) => n + Number(r[column] ?? 0), 0);
    return { clientParses: sum('total_client_parse_count'), serverParses: sum('total_server_parse_count'), binds: sum('total_bind_count') };
  } finally {
    await c.end();
  }
}

/** Start 20 three-step runs through the bouncer with a worker and a client in `mode`; return the warnings logged. */
async function runThrough(bouncer: Bouncer, mode: boolean | 'auto'): Promise<string[]> {
  const logged: string[] = [];
  const worker = createWorker({
    connectionString: bouncer.url, listenUrl: database.url, workflows: [three], logger: warnings(logged),
    preparedStatements: mode, purge: false, concurrency: 8,
  });
  const client = createClient({ connectionString: bouncer.url, listenUrl: database.url, logger: warnings(logged), preparedStatements: mode, handoff: false });
  try {
    await worker.start();
    const runs = await Promise.all(Array.from({ length: 20 }, (_, n) => client.start(three, { n })));
    const outputs = await Promise.all(runs.map((r) => r.result({ timeout: '60s' })));
    assert.deepEqual(outputs, runs.map((_, n) => (n + 1) * 2 + 1));
    assert.equal(worker.stats.failed, 0);
  } finally {
    await worker.stop();
    await client.close();
  }
  return logged;
}

describe('PgBouncer 1.21+ in transaction mode with max_prepared_statements', () => {
  let bouncer: Bouncer;
  before(async () => {
    const user = decodeURIComponent(new URL(database.url).username);
    bouncer = await startPgBouncer(database.url, { max_prepared_statements: 200, admin_users: user, default_pool_size: 4 });
  });
  after(async () => bouncer?.stop());

  it('is a PgBouncer that keeps prepared statements (1.21 or later)', () => {
    const [major, minor] = (/PgBouncer (\d+)\.(\d+)/.exec(bouncer.version) ?? []).slice(1).map(Number);
    assert.ok(major !== undefined && minor !== undefined && (major > 1 || minor >= 21), `built PgBouncer: ${bouncer.version}`);
  });

  it("keeps the engine's named statements on by default ('auto'): no refusal, and PgBouncer binds far more than it parses on the server", async () => {
    const before = await stats(bouncer);
    const logged = await runThrough(bouncer, 'auto');
    assert.deepEqual(logged.filter((w) => /prepared/.test(w)), [], 'nothing was switched off');
    const after = await stats(bouncer);
    const clientParses = after.clientParses - before.clientParses;
    const serverParses = after.serverParses - before.serverParses;
    const binds = after.binds - before.binds;
    assert.ok(clientParses > 0, 'named statements went through PgBouncer');
    // Each (statement, server connection) pair is parsed once; every later
    // execution on that connection is only a bind.
    assert.ok(serverParses < binds / 2, `server parses ${serverParses}, binds ${binds}`);
  });

  it('works with preparedStatements: true (no error where PgBouncer 1.18 refuses)', async () => {
    const logged = await runThrough(bouncer, true);
    assert.deepEqual(logged.filter((w) => /prepared/.test(w)), []);
  });
});

describe('PgBouncer 1.21+ with max_prepared_statements = 0', () => {
  let bouncer: Bouncer;
  before(async () => {
    bouncer = await startPgBouncer(database.url, { max_prepared_statements: 0, default_pool_size: 4 });
  });
  after(async () => bouncer?.stop());

  it("'auto' switches named statements off by itself, logs it once per pool, and every run completes", async () => {
    // Several server connections, so a named statement lands where it was not prepared.
    const warm = testPool({ connectionString: bouncer.url, max: 4 });
    await Promise.all(Array.from({ length: 4 }, () => warm.query('select pg_sleep(0.2)')));
    await warm.end();
    const logged = await runThrough(bouncer, 'auto');
    assert.ok(logged.some((w) => /prepared statements refused/.test(w)), `the switch was logged: ${logged.join(' | ')}`);
  });
});

