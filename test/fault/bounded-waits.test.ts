/**
 * Bounded waits: a server that accepts TCP and never answers must not hang
 * worker.start(), client.start() or migrate(); a worker whose pool
 * connections die silently (no FIN, no RST) recovers by itself; migrate()
 * works with a pool that is not this copy of pg's Pool.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { z } from 'zod';
import { createClient } from '../../src/client/client.ts';
import { DatabaseError } from '../../src/errors.ts';
import { migrate } from '../../src/schema/install.ts';
import { createWorker } from '../../src/worker/worker.ts';
import { defineWorkflow } from '../../src/workflow/define.ts';
import { silentLogger } from '../../src/protocol/logger.ts';
import { createDatabase, testPool } from '../helpers/db.ts';
import { useDatabase } from '../helpers/database-fixture.ts';
import { startBlackHole, startProxy, throughProxy } from '../helpers/tcp-proxy.ts';

const echo = defineWorkflow({ name: 'echo-bounded', input: z.object({ v: z.number() }) }, async (ctx, { v }) => ctx.step('echo', () => v));
const FAST = { connectTimeout: '300ms', queryTimeout: '300ms' } as const;

/** Rejects if `promise` has not settled within `ms` (what a hang looks like here). */
async function settlesWithin<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const hung = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what} still pending after ${ms} ms`)), ms)));
  try {
    return await Promise.race([promise, hung]);
  } finally {
    clearTimeout(timer);
  }
}

/** The error `promise` rejects with (fails the test if it resolves or hangs). */
async function rejection(promise: Promise<unknown>, what: string): Promise<unknown> {
  return settlesWithin(promise.then(() => assert.fail(`${what} resolved`), (e: unknown) => e), 10_000, what);
}

function assertRetryable(error: unknown, what: string): void {
  assert.ok(error instanceof DatabaseError, `${what}: a DatabaseError, not ${String(error)}`);
  assert.equal(error.retryable, true, what);
}

describe('a server that accepts TCP and never answers', () => {
  let hole: Awaited<ReturnType<typeof startBlackHole>>;
  before(async () => (hole = await startBlackHole()));
  after(() => hole.close());

  it('worker.start() gives up with a retryable DatabaseError, with its own pool and with one that has no timeouts', async () => {
    const own = createWorker({ connectionString: hole.url, workflows: [echo], logger: silentLogger, ...FAST });
    assertRetryable(await rejection(own.start(), 'worker.start (own pool)'), 'own pool');
    await own.stop();
    const bare = testPool({ connectionString: hole.url });
    bare.on('error', () => undefined);
    const theirs = createWorker({ pool: bare, workflows: [echo], logger: silentLogger, ...FAST });
    assertRetryable(await rejection(theirs.start(), 'worker.start (a pool without timeouts)'), 'their pool');
    await theirs.stop();
  });

  it('client.start() gives up with a retryable DatabaseError', async () => {
    const client = createClient({ connectionString: hole.url, logger: silentLogger, ...FAST });
    try {
      assertRetryable(await rejection(client.start(echo, { v: 1 }), 'client.start'), 'client.start');
    } finally {
      await client.close();
    }
  });

  it('migrate() gives up with a retryable DatabaseError, given a URL or a pool without timeouts', async () => {
    assertRetryable(await rejection(migrate(hole.url, { connectTimeout: '300ms' }), 'migrate(url)'), 'migrate(url)');
    const bare = testPool({ connectionString: hole.url });
    bare.on('error', () => undefined);
    assertRetryable(await rejection(migrate(bare, { connectTimeout: '300ms' }), 'migrate(pool)'), 'migrate(pool)');
  });
});

describe('migrate() with a pool that is not this copy of pg', () => {
  it('installs in one transaction on one checked-out client and leaves no session idle in transaction', async () => {
    const created = await createDatabase();
    const real = testPool({ connectionString: created.url, max: 4, application_name: 'foreign-pool' });
    // What a Pool from another copy of `pg` looks like here: pool-shaped, not an instance of ours.
    const foreign = {
      connect: () => real.connect(),
      query: (text: string, values?: unknown[]) => real.query(text, values),
      end: () => real.end(),
      get totalCount() { return real.totalCount; },
      get idleCount() { return real.idleCount; },
    };
    try {
      const result = await settlesWithin(migrate(foreign as unknown as pg.Pool), 30_000, 'migrate(foreign pool)');
      assert.ok(result.applied.length > 0);
      assert.equal((await migrate(foreign as unknown as pg.Pool)).applied.length, 0);
      const { rows } = await real.query(`select count(*)::int as n from pg_stat_activity
                                           where application_name = 'foreign-pool' and state like 'idle in transaction%'`);
      assert.equal(rows[0].n, 0);
    } finally {
      await real.end();
      await created.drop();
    }
  });
});

describe("a worker whose pool connections die silently", () => {
  const fx = useDatabase({ client: { handoff: false } });

  it('notices through the query timeout and goes on with new connections', async () => {
    const proxy = await startProxy({ host: '127.0.0.1', port: Number(new URL(fx.db.url).port) });
    const worker = createWorker({
      connectionString: throughProxy(fx.db.url, proxy.port), workflows: [echo], logger: silentLogger,
      queryTimeout: '1s', pollInterval: '200ms', listenUrl: fx.db.url,
    });
    try {
      await worker.start();
      assert.equal(await (await fx.client.start(echo, { v: 1 })).result({ timeout: '10s' }), 1);
      // Every connection of the worker's pool stops forwarding, both ways; nothing is closed.
      for (const p of proxy.pipes) p.frozen = true;
      const run = await fx.client.start(echo, { v: 2 });
      assert.equal(await run.result({ timeout: '20s' }), 2);
      const { rows } = await fx.db.pool.query(`select status from trellis.runs where id = $1`, [run.id]);
      assert.equal(rows[0].status, 'completed');
    } finally {
      await worker.stop({ timeout: '1s' });
      await proxy.close();
    }
  });
});
