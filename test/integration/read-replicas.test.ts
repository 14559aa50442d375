/**
 * Read replicas against a real streaming standby (Debian's PostgreSQL 15,
 * started here with pg_basebackup -R; see test/helpers/standby.ts): reads
 * come from the standby, `result()` and a client's reads after its own
 * writes do not, and no write reaches it. Replay is paused with
 * pg_wal_replay_pause() to make the standby lag deterministically.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { z } from 'zod';
import { captureIo } from '../../src/cli/io.ts';
import { main } from '../../src/cli/main.ts';
import { createClient, type Client } from '../../src/client/client.ts';
import { createDashboard } from '../../src/dashboard/index.ts';
import { ValidationError } from '../../src/errors.ts';
import { migrate } from '../../src/schema/install.ts';
import { createWorker, type Worker } from '../../src/worker/worker.ts';
import { defineWorkflow } from '../../src/workflow/define.ts';
import { loggerFrom, silentLogger } from '../../src/protocol/logger.ts';
import { runExample } from '../helpers/examples.ts';
import { type ReplicaPair, startReplicaPair } from '../helpers/standby.ts';
import { testPool } from '../helpers/db.ts';

const greet = defineWorkflow({ name: 'greet', input: z.object({ name: z.string() }) }, async (ctx, { name }) =>
  ctx.step('hello', () => `hello ${name}`));
// No worker serves this queue: its runs stay pending until the test acts on them.
const parked = defineWorkflow({ name: 'parked', queue: 'parked', input: z.object({ i: z.number() }) }, async () => 'never');

let pair: ReplicaPair;
let primary: pg.Pool;
let standby: pg.Pool;
let worker: Worker;
let writer: Client; // starts and acts; reads through the standby
let reader: Client; // never writes in the staleness checks; its read pool is a connection string

/** Whether the standby itself has the run (its own view, not the client's). */
const onStandby = async (id: string) => (await standby.query('select 1 from trellis.runs where id = $1', [id])).rowCount === 1;

/** Run `body` with the standby's replay paused, resuming and catching up afterwards. */
async function lagging<T>(body: () => Promise<T>): Promise<T> {
  await pair.pauseReplay();
  try {
    return await body();
  } finally {
    await pair.resumeReplay();
    await pair.caughtUp();
  }
}

before(async () => {
  pair = await startReplicaPair();
  primary = testPool({ connectionString: pair.primary.url, max: 8 });
  standby = testPool({ connectionString: pair.standby.url, max: 4, application_name: 'trellis-test-read' });
  primary.on('error', () => undefined);
  standby.on('error', () => undefined);
  await migrate(primary);
  worker = createWorker({ pool: primary, workflows: [greet], pollInterval: 200, logger: silentLogger });
  await worker.start();
  writer = createClient({ pool: primary, readPool: standby, logger: silentLogger, resultPollInterval: 1000 });
  reader = createClient({ pool: primary, readPool: pair.standby.url, logger: silentLogger, resultPollInterval: 1000 });
  await writer.register(parked);
  await pair.caughtUp();
});
after(async () => {
  await reader?.close();
  await writer?.close();
  await worker?.stop({ timeout: 2000 });
  await standby?.end();
  await primary?.end();
  await pair?.stop();
});

describe('a client with a readPool on a streaming standby', () => {
  it('serves list, get, history, queue stats, events and schedules from the standby, which may be behind', async () => {
    const first = await writer.start(greet, { name: 'ada' });
    assert.equal(await first.result({ timeout: '20s' }), 'hello ada');
    await pair.caughtUp();
    assert.ok((await reader.list({ workflow: 'greet' })).runs.some((r) => r.id === first.id));

    const secondId = await lagging(async () => {
      const second = await writer.start(greet, { name: 'bob' });
      assert.equal(await second.result({ timeout: '20s' }), 'hello bob');
      await writer.schedules.set('nightly', { cron: '0 3 * * *', workflow: greet, input: { name: 'cron' } });
      assert.equal(await onStandby(second.id), false, 'the standby is behind');

      // The reader never wrote: its reads are the standby's view.
      const listed = (await reader.list({ workflow: 'greet' })).runs.map((r) => r.id);
      assert.ok(listed.includes(first.id));
      assert.ok(!listed.includes(second.id), 'list came from the standby');
      assert.ok((await reader.list({ workflow: 'greet', consistency: 'primary' })).runs.some((r) => r.id === second.id));

      const stale = (await reader.queueStats('default'))[0];
      const fresh = (await reader.queueStats('default', { consistency: 'primary' }))[0];
      assert.equal(fresh!.finishedLastMinute, stale!.finishedLastMinute + 1, 'queue stats came from the standby');

      const events = [];
      for await (const e of reader.events({ follow: false })) events.push(e.runId);
      assert.ok(events.includes(first.id));
      assert.ok(!events.includes(second.id), 'events came from the standby');
      // A cursor read on the primary is ahead of the standby: refused there (TR001), served by the primary.
      let newest = '';
      for await (const e of reader.events({ follow: false, consistency: 'primary' })) newest = e.cursor;
      const resume = async (consistency?: 'primary') => {
        for await (const e of reader.events({ after: newest, follow: false, ...(consistency ? { consistency } : {}) })) void e;
      };
      await assert.rejects(resume(), (e: Error) => e instanceof ValidationError && /from the future/.test(e.message));
      await resume('primary');

      assert.equal((await reader.schedules.list()).length, 0, 'schedules came from the standby');
      assert.deepEqual((await writer.schedules.list()).map((s) => s.name), ['nightly'], 'the writer reads its own write');
      assert.ok(Array.isArray(await reader.roles.list()));

      // A run the standby lacks yet is read from the primary.
      assert.equal((await reader.get(second.id))?.status, 'completed');
      assert.deepEqual((await reader.history(second.id)).map((s) => s.name), ['hello']);
      return second.id;
    });
    assert.ok((await reader.list({ workflow: 'greet' })).runs.some((r) => r.id === secondId), 'the standby has caught up');
    assert.deepEqual((await reader.schedules.list()).map((s) => s.name), ['nightly']);
    await writer.schedules.delete('nightly');
  });

  it('a fresh client reads from the standby while its primary cannot be reached (its schema check goes where the read goes)', async () => {
    const run = await writer.start(greet, { name: 'cy' });
    assert.equal(await run.result({ timeout: '20s' }), 'hello cy');
    await pair.caughtUp();
    // A primary nobody answers on (port 1).
    const down = new pg.Pool({ connectionString: 'postgres://nobody@127.0.0.1:1/none', connectionTimeoutMillis: 2000 });
    down.on('error', () => undefined);
    const fresh = createClient({ pool: down, readPool: standby, logger: silentLogger });
    try {
      assert.equal((await fresh.get(run.id))?.status, 'completed');
      assert.ok((await fresh.list({ workflow: 'greet' })).runs.some((r) => r.id === run.id));
      assert.deepEqual((await fresh.history(run.id)).map((s) => s.name), ['hello']);
    } finally {
      await fresh.close();
      await down.end();
    }
  });

  it('result() after the run finished is not stale while the standby is behind', async () => {
    await lagging(async () => {
      const run = await writer.start(greet, { name: 'cy' });
      assert.equal(await run.result({ timeout: '20s' }), 'hello cy');
      assert.equal(await onStandby(run.id), false, 'the standby has not even seen the run');
      // A client that never wrote, asked after the run finished.
      assert.equal(await reader.result(run.id, { timeout: '5s' }), 'hello cy');
    });
  });

  it('a read right after the same client\'s write reads the primary, and the standby again once it has replayed it', async () => {
    const a = await writer.start(parked, { i: 1 });
    const b = await writer.start(parked, { i: 2 });
    await pair.caughtUp();
    await lagging(async () => {
      assert.equal(await writer.cancel(a.id), 'cancelled');
      assert.equal((await writer.get(a.id))?.status, 'cancelled', 'the writer reads its own write');
      assert.equal((await writer.list({ queue: 'parked' })).runs.find((r) => r.id === a.id)?.status, 'cancelled');
      assert.equal((await reader.get(a.id))?.status, 'pending', 'another client reads the standby, which is behind');
    });
    // Caught up: the writer reads the standby again. Another client's write shows the standby's lag to it.
    await lagging(async () => {
      assert.equal((await writer.get(a.id))?.status, 'cancelled');
      assert.equal(await reader.cancel(b.id), 'cancelled');
      assert.equal((await writer.get(b.id))?.status, 'pending', 'the writer is back on the standby');
      assert.equal((await writer.get(b.id, { consistency: 'primary' }))?.status, 'cancelled');
    });
  });

  it('reads made in parallel right after the same client\'s write all read it (none goes to the standby before the mark is known)', async () => {
    const runs = await Promise.all([1, 2, 3].map((i) => writer.start(parked, { i: 10 + i })));
    await pair.caughtUp();
    await lagging(async () => {
      assert.equal(await writer.cancel(runs[0]!.id), 'cancelled');
      await writer.setMetadata(runs[1]!.id, { stage: 'parallel' });
      const [a, b, c, listed] = await Promise.all([writer.get(runs[0]!.id), writer.get(runs[0]!.id), writer.get(runs[1]!.id),
        writer.list({ queue: 'parked', limit: 200 })]);
      assert.deepEqual([a?.status, b?.status], ['cancelled', 'cancelled'], 'both parallel reads see the cancel');
      assert.deepEqual(c?.metadata, { stage: 'parallel' });
      assert.equal(listed.runs.find((r) => r.id === runs[0]!.id)?.status, 'cancelled');
      const started = await writer.start(parked, { i: 20 });
      const lists = await Promise.all([1, 2, 3].map(() => writer.list({ queue: 'parked', limit: 200 })));
      assert.deepEqual(lists.map((l) => l.runs.some((r) => r.id === started.id)), [true, true, true], 'every parallel list has the new run');
      await writer.cancel(started.id);
    });
    for (const run of runs.slice(1)) await writer.cancel(run.id);
  });

  it('sends every write to the primary (the standby refuses writes)', async () => {
    // Caught up: a write routed to the standby would fail with "read-only transaction".
    const run = await reader.start(parked, { i: 3 }, { key: 'w-1' });
    assert.equal(await reader.signal(run.id, 'nudge', { n: 1 }, { id: 'sig-1' }), true);
    assert.equal(await reader.pause(run.id), 'paused');
    assert.equal(await reader.resume(run.id), 'pending');
    assert.equal(await reader.cancel({ workflow: 'parked', key: 'w-1' }), 'cancelled');
    assert.ok((await reader.scrub(run.id)) instanceof Date);
    await reader.setQueue('parked', { concurrency: 3 });
    await reader.pauseQueue('parked');
    await reader.resumeQueue('parked');
    await reader.setRetention('30 days');
    assert.equal(await reader.retention(), 30 * 86_400_000);
    await reader.setRetention(null);
    assert.equal(await reader.purge({ olderThan: '1 day' }), 0);
    await reader.schedules.set('hourly', { cron: '0 * * * *', workflow: 'parked', input: { i: 4 } });
    await reader.schedules.pause('hourly');
    await reader.schedules.resume('hourly');
    assert.equal(await reader.schedules.delete('hourly'), true);
    const consumer = await reader.eventConsumer('replica-test');
    const [event] = await consumer.read(1);
    assert.ok(event);
    assert.equal(await consumer.ack(event), event.cursor);
    // Every one of those writes is on the primary.
    assert.equal((await primary.query(`select status from trellis.runs where id = $1`, [run.id])).rows[0].status, 'cancelled');
    const [standbyState] = (await standby.query('select pg_is_in_recovery() as r')).rows;
    assert.equal(standbyState.r, true);
  });

  it('refuses a readPool that is not a pool or connection string, and an unknown consistency', async () => {
    assert.throws(() => createClient({ pool: primary, readPool: 42 as never }), ValidationError);
    assert.throws(() => createClient({ pool: primary, readPool: '' }), ValidationError);
    await assert.rejects(reader.list({ consistency: 'fresh' as never }), ValidationError);
    await assert.rejects(reader.get('00000000-0000-0000-0000-000000000000', { consistency: 'latest' as never }), ValidationError);
  });
});

describe('the CLI and the dashboard with a read replica', () => {
  it('trellis ls --read-url and $TRELLIS_READ_URL list from the standby', async () => {
    await lagging(async () => {
      const run = await writer.start(parked, { i: 5 });
      const viaFlag = captureIo({ DATABASE_URL: pair.primary.url });
      assert.equal(await main(['ls', '--json', '--workflow', 'parked', '--read-url', pair.standby.url], viaFlag), 0, viaFlag.stderr);
      assert.ok(!viaFlag.stdout.includes(run.id), 'ls read the standby');
      const viaEnv = captureIo({ DATABASE_URL: pair.primary.url, TRELLIS_READ_URL: pair.standby.url });
      assert.equal(await main(['ls', '--json', '--workflow', 'parked'], viaEnv), 0, viaEnv.stderr);
      assert.ok(!viaEnv.stdout.includes(run.id));
      const plain = captureIo({ DATABASE_URL: pair.primary.url });
      assert.equal(await main(['ls', '--json', '--workflow', 'parked'], plain), 0, plain.stderr);
      assert.ok(plain.stdout.includes(run.id), 'without a read URL ls reads the primary');
    });
  });

  it('the dashboard reads pages from its readPool, and the page an action leads to from the primary', async () => {
    const dashboard = createDashboard({ pool: primary, readPool: standby, logger: silentLogger });
    const page = async (path: string) => (await dashboard.fetch(new Request(`http://127.0.0.1${path}`))).text();
    const run = await writer.start(parked, { i: 6 });
    await pair.caughtUp();
    await lagging(async () => {
      await writer.cancel(run.id);
      assert.match(await page(`/runs/${run.id}`), /pending/, 'the run page read the standby');
      assert.match(await page(`/runs/${run.id}?done=cancel`), /cancelled/, 'after an action it reads the primary');
    });
    assert.throws(() => createDashboard({ pool: primary, readPool: {} as never }), ValidationError);
  });
});

describe('the read-replica example', () => {
  it('runs against the primary and the standby and exits 0', async () => {
    const out = await runExample('examples/read-replica/main.ts', pair.primary.url, 60_000, { TRELLIS_READ_URL: pair.standby.url });
    assert.equal(out.code, 0, out.stderr + out.stdout);
    assert.match(out.stdout, /invoice-A-2\.pdf mailed/);
    assert.match(out.stdout, /listed 3 of 3 new runs as completed/);
    assert.match(out.stdout, /: render, mail\n/);
    assert.match(out.stdout, /reads served by the standby/);
  });
});

describe('a read pool whose standby was promoted (a failover)', () => {
  it('is warned of once by a client that checks its position, and its writes are still read from the primary', async () => {
    const warnings: string[] = [];
    const watcher = createClient({ pool: primary, readPool: pair.standby.url, resultPollInterval: 1000,
      logger: loggerFrom((level, message) => { if (level === 'warn') warnings.push(message); }) });
    try {
      const before = await watcher.start(parked, { i: 30 });
      await pair.caughtUp();
      assert.equal((await watcher.get(before.id))?.status, 'pending', 'a standby first: its position checked, then read');
      await standby.query('select pg_promote(true, 30)');
      const after = await watcher.start(parked, { i: 31 });
      assert.equal((await watcher.get(after.id))?.status, 'pending', 'its own write read from the primary');
      await watcher.cancel(after.id);
      assert.equal((await watcher.get(after.id))?.status, 'cancelled');
      assert.deepEqual(warnings.filter((w) => /no longer a standby/.test(w)).length, 1, warnings.join(' | '));
      await watcher.cancel(before.id);
    } finally {
      await watcher.close();
    }
  });
});
