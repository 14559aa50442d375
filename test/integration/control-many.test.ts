/**
 * The bulk controls end to end (decision 0037): client.retryMany after a fix,
 * cancelMany / pauseMany / resumeMany over sleeping runs in batches, inside a
 * caller's transaction, bad filters and options refused with nothing
 * changed, and `trellis cancel|pause|resume|retry --all` with filters.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { z } from 'zod';
import { captureIo } from '../../src/cli/io.ts';
import { main } from '../../src/cli/main.ts';
import { CancelledError, ValidationError } from '../../src/errors.ts';
import { createTestEnv, type TestEnv } from '../../src/testing/env.ts';
import { defineWorkflow } from '../../src/workflow/define.ts';
import { waitFor } from '../helpers/wait.ts';

let broken = true;
const importRow = defineWorkflow({ name: 'cm-import', input: z.object({ row: z.number() }) }, async (ctx, { row }) =>
  ctx.step('load', () => {
    if (broken) throw new Error(`row ${row}: parser bug`);
    return row;
  }, { retry: { maxAttempts: 1 } }));
const nap = defineWorkflow({ name: 'cm-nap', input: z.object({ n: z.number() }) }, async (ctx, { n }) => {
  await ctx.sleep('nap', '1 hour');
  return n;
});

let env: TestEnv;
before(async () => {
  env = await createTestEnv({ workflows: [importRow, nap], queues: ['default', 'naps', 'other-naps', 'tx-naps', 'bad-naps', 'cli-naps', 'meta-naps'] });
});
after(() => env.close());

async function cli(...args: string[]) {
  const io = captureIo({ DATABASE_URL: env.url });
  const code = await main(args, io);
  return { code, out: io.stdout, err: io.stderr };
}
const statuses = async (ids: string[]) => (await env.pool.query<{ status: string }>(
  'select status from trellis.runs where id = any ($1) order by id', [ids])).rows.map((r) => r.status);

async function napping(n: number, queue: string): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < n; i++) {
    const run = await env.client.start(nap, { n: i }, { queue });
    await env.waitFor(run, 'waiting');
    ids.push(run.id);
  }
  return ids;
}

describe('bulk controls', () => {
  it('retryMany runs again every failed run of a workflow once the bug is fixed', async () => {
    broken = true;
    const runs = await Promise.all([1, 2, 3, 4, 5].map((row) => env.client.start(importRow, { row })));
    for (const r of runs) await env.waitFor(r, 'failed');
    broken = false;
    const batches: number[] = [];
    const done = await env.client.retryMany({ workflow: importRow, status: 'failed' }, { batchSize: 2, onBatch: (p) => batches.push(p.changed.length) });
    assert.deepEqual([...done.changed].sort(), runs.map((r) => r.id).sort());
    assert.deepEqual(done.unchanged, []);
    assert.deepEqual(batches, [2, 4, 5], 'three batches of at most two');
    assert.deepEqual(await Promise.all(runs.map((r) => r.result({ timeout: '20s' }))), [1, 2, 3, 4, 5]);
    // Nothing failed is left: a second call changes nothing.
    assert.deepEqual(await env.client.retryMany({ workflow: importRow, status: 'failed' }), { changed: [], unchanged: [] });
  });

  it('pauseMany and resumeMany park and wake the sleeping runs of a queue; cancelMany ends them with the reason', async () => {
    const ids = await napping(3, 'naps');
    const other = await napping(1, 'other-naps');
    // A dry run lists what the real call then changes, and changes nothing.
    const dry = await env.client.pauseMany({ queue: 'naps' }, { reason: 'maintenance', dryRun: true, batchSize: 2 });
    assert.deepEqual(dry, { changed: [...ids].sort(), unchanged: [] });
    assert.deepEqual(await statuses(ids), ['waiting', 'waiting', 'waiting']);
    await assert.rejects(env.client.pauseMany({ queue: 'naps' }, { dryRun: 'yes' as never }), ValidationError);
    const paused = await env.client.pauseMany({ queue: 'naps' }, { reason: 'maintenance' });
    assert.equal(paused.changed.length, 3);
    assert.deepEqual([...paused.changed].sort(), dry.changed);
    assert.deepEqual(await statuses(ids), ['paused', 'paused', 'paused']);
    assert.deepEqual(await statuses(other), ['waiting']);
    const resumed = await env.client.resumeMany({ queue: 'naps', status: 'paused' });
    assert.equal(resumed.changed.length, 3);
    for (const id of ids) await env.waitFor(id, 'waiting');
    const cancelled = await env.client.cancelMany({ ids: [...ids, ...other] }, { reason: 'shutting the feature down' });
    assert.equal(cancelled.changed.length, 4);
    for (const id of [...ids, ...other]) {
      await assert.rejects(env.client.result(id, { timeout: '20s' }), CancelledError);
      assert.match(JSON.stringify((await env.client.get(id))?.error), /shutting the feature down/);
    }
  });

  it('filters by metadata: client.list, pauseMany and trellis ls --metadata find the runs whose metadata contains the object', async () => {
    const acme = await env.client.start(nap, { n: 1 }, { queue: 'meta-naps', metadata: { tenant: 'acme', region: 'eu' } });
    const other = await env.client.start(nap, { n: 2 }, { queue: 'meta-naps', metadata: { tenant: 'globex' } });
    for (const r of [acme, other]) await env.waitFor(r, 'waiting');
    const listed = await env.client.list({ workflow: 'cm-nap', metadata: { tenant: 'acme' } });
    assert.deepEqual(listed.runs.map((r) => r.id), [acme.id]);
    const paused = await env.client.pauseMany({ metadata: { tenant: 'acme', region: 'eu' } });
    assert.deepEqual(paused.changed, [acme.id]);
    const ls = await cli('ls', '--metadata', '{"tenant":"globex"}', '--json');
    assert.equal(ls.code, 0, ls.err);
    assert.deepEqual((JSON.parse(ls.out) as { runs: { id: string }[] }).runs.map((r) => r.id), [other.id]);
    const bad = await cli('ls', '--metadata', '"acme"');
    assert.equal(bad.code, 2);
    assert.match(bad.err, /--metadata must be a JSON object/);
    const cancelled = await cli('cancel', '--all', '--metadata', '{"tenant":"globex"}');
    assert.equal(cancelled.out, 'cancelled 1 run; any that had started ends cancelled at its next durable call, or completed if its code returns first\n', cancelled.err);
    await env.client.cancel(acme.id);
  });

  it('runs in the caller\'s transaction: rolled back, nothing changed', async () => {
    const ids = await napping(2, 'tx-naps');
    const c = await env.pool.connect();
    try {
      await c.query('begin');
      const inside = await env.client.pauseMany({ queue: 'tx-naps' }, { tx: c });
      assert.equal(inside.changed.length, 2);
      await c.query('rollback');
    } finally {
      c.release();
    }
    assert.deepEqual(await statuses(ids), ['waiting', 'waiting']);
    await env.client.cancelMany({ queue: 'tx-naps' });
  });

  it('refuses an empty or unknown filter and bad options with ValidationError, changing nothing', async () => {
    const ids = await napping(1, 'bad-naps');
    for (const [call, message] of [
      [() => env.client.cancelMany({}), /names at least one of/],
      [() => env.client.cancelMany({ all: false }), /names at least one of/],
      [() => env.client.cancelMany({ queue: 'bad-naps', wokflow: 'x' } as never), /unknown run filter field "wokflow"/],
      [() => env.client.pauseMany({ status: 'sleeping' as never }), /unknown run status "sleeping"/],
      [() => env.client.cancelMany({ ids: ['nope'] }), /not a UUID/],
      [() => env.client.cancelMany({ metadata: {} }), /names at least one of/],
      [() => env.client.cancelMany({ metadata: 'acme' as never }), /metadata filter must be a plain object/],
      [() => env.client.list({ metadata: [1] as never }), /metadata filter must be a plain object/],
      // A value JSON would drop would widen the filter to every run: refused.
      [() => env.client.cancelMany({ metadata: { tenant: undefined } }), /metadata filter metadata.tenant must be a JSON value/],
      [() => env.client.list({ metadata: { f: () => 1 } as never }), /metadata filter metadata.f must be a JSON value/],
      [() => env.client.list({ metadata: new Date() as never }), /metadata filter must be a plain object/],
      [() => env.client.cancelMany({ queue: 'bad\'; drop table trellis.runs; --' }), /queue/],
      [() => env.client.cancelMany({ queue: 'bad-naps' }, { batchSize: 0 }), /batchSize must be an integer from 1 to 10000/],
      [() => env.client.retryMany({ queue: 'bad-naps' }, { reason: 'x' } as never), /unknown retryMany option "reason"/],
      [() => env.client.cancelMany({ queue: 'bad-naps' }, { reason: 7 as never }), /reason must be text/],
    ] as const) {
      await assert.rejects(call(), (e: unknown) => e instanceof ValidationError && message.test(e.message), String(message));
    }
    assert.deepEqual(await statuses(ids), ['waiting']);
    await env.client.cancelMany({ queue: 'bad-naps' });
  });

  it('trellis cancel|pause|resume|retry --all act on what the filters match; without --all a filter is a usage error', async () => {
    const ids = await napping(2, 'cli-naps');
    const dry = await cli('pause', '--all', '--queue', 'cli-naps', '--status', 'waiting', '--dry-run');
    assert.equal(dry.code, 0, dry.err);
    assert.equal(dry.out, `${[...ids].sort().join('\n')}\nwould have paused 2 runs (dry run: nothing changed)\n`);
    assert.deepEqual(await statuses(ids), ['waiting', 'waiting']);
    const paused = await cli('pause', '--all', '--queue', 'cli-naps', '--status', 'waiting', '--reason', 'deploy');
    assert.equal(paused.code, 0, paused.err);
    assert.equal(paused.out, 'paused 2 runs\n');
    assert.deepEqual(await statuses(ids), ['paused', 'paused']);
    const resumed = await cli('resume', '--all', '--queue', 'cli-naps', '--batch', '1');
    assert.equal(resumed.out, 'resumed 2 runs\n', resumed.err);
    for (const id of ids) await env.waitFor(id, 'waiting');
    const none = await cli('retry', '--all', '--workflow', 'cm-nap', '--since', '1h');
    assert.equal(none.out, 'retried 0 runs\n', none.err);
    for (const [args, message] of [
      [['cancel', '--queue', 'cli-naps'], /--queue needs --all/],
      [['cancel', '--all', ids[0]!], /not both/],
      [['cancel', '--all', '--status', 'asleep'], /unknown status "asleep"/],
      [['cancel', '--all', '--queue', 'cli-naps', '--batch', '0'], /--batch/],
    ] as const) {
      const bad = await cli(...args);
      assert.equal(bad.code, 2, `${args.join(' ')}: ${bad.err}`);
      assert.match(bad.err, message);
    }
    assert.deepEqual(await statuses(ids), ['waiting', 'waiting']);
    const cancelled = await cli('cancel', '--all', '--workflow', 'cm-nap', '--queue', 'cli-naps', '--reason', 'done');
    assert.equal(cancelled.out, 'cancelled 2 runs; any that had started ends cancelled at its next durable call, or completed if its code returns first\n', cancelled.err);
  });
});

describe('bulk cancels of parents and children at once', () => {
  const kid = defineWorkflow({ name: 'cm-kid', input: z.object({ n: z.number() }) }, async (ctx, { n }) => {
    await ctx.sleep('nap', '1 hour');
    return n;
  });
  const parent = defineWorkflow({ name: 'cm-parent', input: z.object({ n: z.number() }) }, async (ctx, { n }) =>
    Promise.all([0, 1, 2].map((i) => ctx.child(kid, { n: n * 10 + i }))));
  let kit: TestEnv;
  before(async () => {
    kit = await createTestEnv({ workflows: [kid, parent], queues: ['default'] });
  });
  after(() => kit.close());

  it('three callers cancelling overlapping parents and children in batches never deadlock: each batch locks its whole set in id order', async () => {
    const parents = await kit.client.startMany(parent, Array.from({ length: 120 }, (_, n) => ({ input: { n } })));
    await waitFor(async () => (await kit.pool.query<{ n: number }>(
      `select count(*)::int as n from trellis.runs where status = 'waiting'`)).rows[0]!.n === 480, { what: 'every parent and child waiting', timeout: 60_000 });
    const deadlocks = async () => (await kit.pool.query<{ n: number }>(
      'select deadlocks::int as n from pg_stat_database where datname = current_database()')).rows[0]!.n;
    const before = await deadlocks();
    const results = await Promise.all([
      kit.client.cancelMany({ workflow: 'cm-kid' }, { batchSize: 20 }),
      kit.client.cancelMany({ workflow: 'cm-parent' }, { batchSize: 20 }),
      kit.client.cancelMany({ queue: 'default', status: 'waiting' }, { batchSize: 20 }),
    ]);
    assert.ok(results.every((r) => r.changed.length > 0), 'each caller cancelled some');
    // A parent whose child was cancelled first fails (ChildFailedError); one reached first is cancelled, and its children with it.
    for (const p of parents) await assert.rejects(p.result({ timeout: '30s' }));
    const unfinished = await kit.pool.query<{ n: number }>(`select count(*)::int as n from trellis.runs where finished_at is null`);
    assert.equal(unfinished.rows[0]!.n, 0, 'every run ended');
    // The statistics are flushed when a session goes idle: a fresh look.
    await new Promise((r) => setTimeout(r, 1_200));
    await kit.pool.query('select pg_stat_clear_snapshot()');
    assert.equal(await deadlocks() - before, 0, 'no deadlock');
  });
});
