/**
 * Trellis through a real PgBouncer in transaction mode (Debian's package,
 * started by this test on 127.0.0.1 and stopped by its pid): migrate()
 * installs through it; a worker and a client run everything through it
 * except LISTEN, which goes direct (`listenUrl`), so NOTIFY still wakes
 * them (both polls are an hour here); prepared statements, which PgBouncer
 * before 1.21 cannot keep, switch off by themselves ('auto'), and with
 * `preparedStatements: true` the refusal is an error that says what to do.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { z } from 'zod';
import { createClient } from '../../src/client/client.ts';
import { DatabaseError } from '../../src/errors.ts';
import { migrate } from '../../src/schema/install.ts';
import { createWorker } from '../../src/worker/worker.ts';
import { defineWorkflow } from '../../src/workflow/define.ts';
import { type Logger, loggerFrom, silentLogger } from '../../src/protocol/logger.ts';
import { createDatabase, testPool } from '../helpers/db.ts';
import { type Bouncer, startPgBouncer } from '../helpers/pgbouncer.ts';
import { Listener } from '../../src/db/listener.ts';
import { waitFor } from '../helpers/wait.ts';

let database: Awaited<ReturnType<typeof createDatabase>>;
let bouncer: Bouncer;
before(async () => {
  database = await createDatabase();
  bouncer = await startPgBouncer(database.url);
});
after(async () => {
  await bouncer?.stop();
  await database?.drop();
});

const three = defineWorkflow({ name: 'bounced', input: z.object({ n: z.number() }) }, async (ctx, { n }) => {
  const a = await ctx.step('a', () => n + 1);
  const b = await ctx.step('b', () => a * 2);
  return ctx.step('c', () => b + 1);
});

/** Open `n` server connections behind PgBouncer at once, so round robin spreads transactions over them. */
async function warm(n: number): Promise<void> {
  const pool = testPool({ connectionString: bouncer.url, max: n });
  await Promise.all(Array.from({ length: n }, () => pool.query('select pg_sleep(0.2)')));
  await pool.end();
}

function recordingLogger(lines: string[]): Logger {
  // Trellis calls its logger as (fields, message), pino's order.
  return loggerFrom((level, message) => {
    if (level === 'warn' || level === 'error') lines.push(message);
  });
}

describe(`PgBouncer in transaction mode`, () => {
  it('migrate() installs the schema through it', async () => {
    const pool = testPool({ connectionString: bouncer.url, max: 2 });
    try {
      assert.ok((await migrate(pool)).applied.length > 0);
      assert.equal((await migrate(bouncer.url)).applied.length, 0);
    } finally {
      await pool.end();
    }
  });

  it('runs complete with everything through it and LISTEN direct; prepared statements switch off by themselves', async () => {
    await warm(4);
    const warnings: string[] = [];
    const worker = createWorker({
      connectionString: bouncer.url, listenUrl: database.url, workflows: [three], logger: recordingLogger(warnings),
      pollInterval: '1 hour', purge: false,
    });
    const client = createClient({ connectionString: bouncer.url, listenUrl: database.url, logger: silentLogger, resultPollInterval: '1 hour' });
    try {
      await worker.start();
      const runs = await Promise.all(Array.from({ length: 20 }, (_, n) => client.start(three, { n })));
      const outputs = await Promise.all(runs.map((r) => r.result({ timeout: '30s' })));
      assert.deepEqual(outputs, runs.map((_, n) => (n + 1) * 2 + 1));
      assert.equal(worker.stats.failed, 0);
      assert.ok(warnings.some((w) => /prepared statements refused/.test(w)), `the switch was logged: ${warnings.join(' | ')}`);
      // And the next runs still complete (unnamed now), woken by NOTIFY on the direct connection.
      const again = await client.start(three, { n: 100 });
      assert.equal(await again.result({ timeout: '10s' }), 203);
    } finally {
      await worker.stop();
      await client.close();
    }
  });

  it('a LISTEN through it hears nothing, and its listener says so once; a direct one hears its own NOTIFY', async () => {
    await warm(4);
    // As a worker does: the check's NOTIFY goes through its pool (through PgBouncer here, in both cases).
    const pool = testPool({ connectionString: bouncer.url, max: 2 });
    const run = async (connectionString: string) => {
      const warnings: string[] = [];
      const listener = new Listener({
        connection: { connectionString }, channels: ['trellis:run_ready'], onNotify: () => undefined, onConnect: () => undefined,
        log: recordingLogger(warnings), applicationName: 'echo-check',
        echoVia: (channel, payload) => pool.query('select pg_notify($1, $2)', [channel, payload]),
      });
      await listener.start();
      try {
        await waitFor(() => listener.echoed !== undefined, { what: 'the echo check to decide', timeout: 15_000 });
        return { echoed: listener.echoed, warnings };
      } finally {
        await listener.close();
      }
    };
    try {
      const direct = await run(database.url);
      assert.deepEqual(direct, { echoed: true, warnings: [] });
      const bounced = await run(bouncer.url);
      assert.equal(bounced.echoed, false);
      assert.equal(bounced.warnings.filter((w) => /^LISTEN hears nothing on this connection: .*\(listenUrl\)/.test(w)).length, 1, bounced.warnings.join(' | '));
    } finally {
      await pool.end();
    }
  });

  it('with preparedStatements: true a refused statement is an error that says what to change', async () => {
    await warm(4);
    const pool = testPool({ connectionString: bouncer.url, max: 1 });
    const client = createClient({ pool, listenUrl: database.url, logger: silentLogger, preparedStatements: true, handoff: false });
    try {
      let refused: unknown;
      for (let i = 0; i < 8 && !refused; i++) {
        await client.start(three, { n: i }).catch((error: unknown) => (refused = error));
      }
      assert.ok(refused instanceof DatabaseError, `a DatabaseError, not ${String(refused)}`);
      assert.match(refused.message, /preparedStatements: false/);
      assert.match(refused.message, /PgBouncer before 1\.21/);
    } finally {
      await client.close();
      await pool.end();
    }
  });

  it("'auto' inside a caller's transaction: the first refusal says to run it again and switches the client off named statements for good", async () => {
    await warm(4);
    const warnings: string[] = [];
    const pool = testPool({ connectionString: bouncer.url, max: 4 });
    const client = createClient({ pool, listenUrl: database.url, logger: recordingLogger(warnings), handoff: false });
    /** One transaction of the caller's: begin, a start in it, commit. */
    const inTransaction = async (n: number) => {
      const c = await pool.connect();
      try {
        await c.query('begin');
        const run = await client.start(three, { n }, { tx: c });
        await c.query('commit');
        return run.id;
      } catch (error) {
        await c.query('rollback').catch(() => undefined);
        throw error;
      } finally {
        c.release();
      }
    };
    try {
      let refused: unknown;
      for (let round = 0; round < 40 && !refused; round++) {
        const tried = await Promise.allSettled(Array.from({ length: 4 }, (_, i) => inTransaction(round * 4 + i)));
        refused = tried.find((t) => t.status === 'rejected')?.reason;
      }
      assert.ok(refused instanceof DatabaseError, `a refusal in 40 rounds, a DatabaseError: ${String(refused)}`);
      assert.match(refused.message, /inside your transaction.*run the transaction again/);
      assert.equal(refused.retryable, true);
      assert.equal(warnings.filter((w) => /prepared statements refused/.test(w)).length, 1, warnings.join(' | '));
      // The switch holds: every later transaction goes through (unnamed statements).
      for (let round = 0; round < 4; round++) {
        const later = await Promise.allSettled(Array.from({ length: 4 }, (_, i) => inTransaction(1000 + round * 4 + i)));
        assert.deepEqual(later.filter((t) => t.status === 'rejected').map((t) => String((t as PromiseRejectedResult).reason)), []);
      }
    } finally {
      await client.close();
      await pool.end();
    }
  });

  it('a readPool through it takes the client\'s preparedStatements: value() and streamEntries() read there in every mode but true', async () => {
    await warm(4);
    const stored = defineWorkflow({ name: 'bounced-values', input: z.object({}) }, async (ctx) => {
      await ctx.setValue('stage', 'done');
      await ctx.writeStream('lines', 'one');
      await ctx.writeStream('lines', 'two');
      return 'ok';
    });
    const worker = createWorker({ connectionString: database.url, workflows: [stored], logger: silentLogger, purge: false });
    const writer = createClient({ connectionString: database.url, logger: silentLogger });
    try {
      await worker.start();
      const run = await writer.start(stored, {});
      assert.equal(await run.result({ timeout: '20s' }), 'ok');
      for (const mode of [false, 'auto'] as const) {
        const warnings: string[] = [];
        // A client that never writes: its reads all go to the read pool (PgBouncer, in front of the same server).
        const reader = createClient({ connectionString: database.url, readPool: bouncer.url, preparedStatements: mode, logger: recordingLogger(warnings) });
        try {
          const reads = await Promise.allSettled(Array.from({ length: 24 }, (_, i) => (i % 2
            ? reader.value(run.id, 'stage').then((v) => v?.value)
            : reader.streamEntries(run.id, 'lines').then((p) => p.entries.map((e) => e.value).join(',')))));
          assert.deepEqual(reads.filter((r) => r.status === 'rejected').map((r) => String((r as PromiseRejectedResult).reason).slice(0, 200)), [], `mode ${mode}`);
          assert.deepEqual(new Set(reads.map((r) => (r as PromiseFulfilledResult<unknown>).value)), new Set(['done', 'one,two']));
          if (mode === false) assert.deepEqual(warnings, [], 'never prepared: nothing refused');
        } finally {
          await reader.close();
        }
      }
    } finally {
      await worker.stop();
      await writer.close();
    }
  });

  it('the pgbouncer example runs through it and exits 0', async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'examples/pgbouncer/main.ts'], {
      env: { ...process.env, DATABASE_URL: database.url, PGBOUNCER_URL: bouncer.url }, stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    assert.equal(code, 0, out);
    assert.match(out, /label for P-2 handed over/);
    assert.match(out, /through PgBouncer: 3 runs completed/);
  });
});
