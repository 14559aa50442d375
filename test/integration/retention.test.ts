/**
 * Retention end to end: client.setRetention / retention / purge / scrub, and the
 * worker's purge loop deleting runs (with their children) once they are past
 * the retention on the virtual clock, in batches, and nothing younger.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { z } from 'zod';
import { IllegalTransitionError, NotFoundError, ValidationError } from '../../src/errors.ts';
import { createTestEnv, type TestEnv } from '../../src/testing/env.ts';
import { defineWorkflow } from '../../src/workflow/define.ts';
import { waitFor } from '../helpers/wait.ts';
import { engineDuties } from '../../src/worker/roles/duties.ts';

const echo = defineWorkflow({ name: 'echo', input: z.object({ n: z.number() }) }, async (ctx, { n }) =>
  ctx.step('double', () => n * 2));
const leaf = defineWorkflow({ name: 'leaf', input: z.object({}) }, async () => 'leaf');
const held = defineWorkflow({ name: 'held', input: z.object({ email: z.string() }) }, async (ctx) => {
  await ctx.waitForSignal('go');
  return 'done';
});
const tree = defineWorkflow({ name: 'tree', input: z.object({}) }, async (ctx) => ctx.child(leaf, {}));

let env: TestEnv;
before(async () => {
  env = await createTestEnv({ workflows: [echo, leaf, tree, held], purge: { interval: 50, batch: 2 } });
});
after(() => env.close());

const count = async () => Number((await env.pool.query('select count(*) as n from trellis.runs')).rows[0].n);

describe('client retention settings', () => {
  it('is unset by default, reads back what was set, and null unsets it', async () => {
    assert.equal(await env.client.retention(), null);
    await env.client.setRetention('1 day');
    assert.equal(await env.client.retention(), 86_400_000);
    await env.client.setRetention(null);
    assert.equal(await env.client.retention(), null);
  });

  it('takes the duration grammar of its own example: years, months and compound durations', async () => {
    await env.client.setRetention('7 years', { workflow: echo });
    assert.equal(await env.client.retention({ workflow: echo }), 7 * 365.25 * 86_400_000);
    await env.client.setRetention('1 year 6 months');
    assert.equal(await env.client.retention(), (365.25 + 180) * 86_400_000);
    await env.client.setRetention(null, { workflow: echo });
    await env.client.setRetention(null);
  });

  it('retention({ workflow }) of a workflow nobody registered rejects NotFoundError', async () => {
    await assert.rejects(env.client.retention({ workflow: 'nobody-registered-this' }), NotFoundError);
  });

  for (const bad of ['500ms', 'soon', -5]) {
    it(`setRetention(${JSON.stringify(bad)}) throws ValidationError and keeps the setting`, async () => {
      await env.client.setRetention('2 days');
      await assert.rejects(env.client.setRetention(bad as never), ValidationError);
      assert.equal(await env.client.retention(), 2 * 86_400_000);
      await env.client.setRetention(null);
    });
  }
});

describe('client per-workflow retention', () => {
  it('a workflow\'s own retention wins over the default, by definition or name; null removes it', async () => {
    await env.client.setRetention('1 day');
    await env.client.setRetention('30 days', { workflow: echo });
    assert.equal(await env.client.retention({ workflow: 'echo' }), 30 * 86_400_000);
    assert.equal(await env.client.retention({ workflow: leaf }), 86_400_000, 'the default');
    assert.equal(await env.client.retention(), 86_400_000);
    await env.client.setRetention(null, { workflow: 'echo' });
    assert.equal(await env.client.retention({ workflow: echo }), 86_400_000);
    await env.client.setRetention(null);
  });

  it('refuses an unknown workflow (NotFoundError) and a bad name (ValidationError), writing nothing', async () => {
    await assert.rejects(env.client.setRetention('1 day', { workflow: 'no-such-workflow' }), NotFoundError);
    await assert.rejects(env.client.setRetention('1 day', { workflow: "echo'; drop table trellis.runs; --" }), ValidationError);
    await assert.rejects(env.client.retention({ workflow: "x'y" }), ValidationError);
    assert.equal((await env.pool.query('select count(*)::int as n from trellis.retentions')).rows[0].n, 0);
  });
});

describe('the worker purge loop', () => {
  it('deletes, in batches, the runs past the retention with their steps, and keeps younger ones', async () => {
    const old = await Promise.all([1, 2, 3, 4, 5].map((n) => env.start(echo, { n })));
    for (const r of old) await env.drive(r);
    await env.advance('12 hours');
    const young = await env.start(echo, { n: 6 });
    await env.drive(young);
    const purgedBefore = env.worker.stats.purged;
    await env.client.setRetention('1 day');
    await env.advance('13 hours');
    await waitFor(async () => (await Promise.all(old.map((r) => env.client.get(r.id)))).every((r) => r === undefined),
      { what: 'the five old runs to be purged' });
    assert.equal(env.worker.stats.purged - purgedBefore, 5, 'three batches of at most 2');
    assert.equal((await env.client.get(young.id))?.status, 'completed');
    const steps = await env.pool.query('select count(*)::int as n from trellis.steps where run_id = any($1::uuid[])', [old.map((r) => r.id)]);
    assert.equal(steps.rows[0].n, 0);
    await env.client.setRetention(null);
  });

  it('purges each workflow after its own retention', async () => {
    const echoes = await Promise.all([1, 2].map((n) => env.start(echo, { n })));
    const leaves = await Promise.all([1, 2].map(() => env.start(leaf, {})));
    for (const r of [...echoes, ...leaves]) await env.drive(r);
    await env.client.setRetention('1 hour', { workflow: leaf });
    await env.client.setRetention('3 days');
    await env.advance('2 hours');
    await waitFor(async () => (await Promise.all(leaves.map((r) => env.client.get(r.id)))).every((r) => r === undefined),
      { what: 'the leaves purged after their own hour' });
    for (const r of echoes) assert.equal((await env.client.get(r.id))?.status, 'completed', 'echo keeps the default 3 days');
    await env.advance('3 days');
    await waitFor(async () => (await Promise.all(echoes.map((r) => env.client.get(r.id)))).every((r) => r === undefined),
      { what: 'the echoes purged after the default' });
    await env.client.setRetention(null, { workflow: leaf });
    await env.client.setRetention(null);
  });

  it('purges a parent and the child it waited on', async () => {
    const run = await env.start(tree, {});
    assert.equal((await env.drive(run)).output, 'leaf');
    const child = (await env.client.list({ workflow: 'leaf' })).runs.find((r) => r.parentRunId === run.id);
    assert.ok(child, 'the child run exists');
    await env.client.setRetention('1 hour');
    await env.advance('2 hours');
    await waitFor(async () => !(await env.client.get(run.id)) && !(await env.client.get(child.id)), { what: 'parent and child purged' });
    await env.client.setRetention(null);
  });
});

describe('client.purge', () => {
  it('deletes finished runs of one workflow older than olderThan, and returns how many', async () => {
    const a = await env.start(echo, { n: 1 });
    await env.drive(a);
    const b = await env.start(leaf, {});
    await env.drive(b);
    await env.advance('1 hour');
    assert.equal(await env.client.purge({ olderThan: '30 minutes', workflow: echo }), 1);
    assert.equal(await env.client.get(a.id), undefined);
    assert.ok(await env.client.get(b.id));
  });

  it("inside the caller's transaction: a rollback keeps the runs", async () => {
    const r = await env.start(echo, { n: 2 });
    await env.drive(r);
    await env.advance('1 hour');
    const c = await env.pool.connect();
    try {
      await c.query('begin');
      assert.ok((await env.client.purge({ olderThan: '1 minute', tx: c })) >= 1);
      await c.query('rollback');
    } finally {
      c.release();
    }
    assert.equal((await env.client.get(r.id))?.status, 'completed');
  });

  const bad: [string, Parameters<TestEnv['client']['purge']>[0]][] = [
    ['a limit of 0', { olderThan: '1 day', limit: 0 }],
    ['a limit of 1.5', { olderThan: '1 day', limit: 1.5 }],
    ['a duration that is not one', { olderThan: 'yesterday' as never }],
    ['a workflow name with SQL in it', { olderThan: '0ms' as never, workflow: `echo'; delete from trellis.runs; --` }],
  ];
  for (const [what, options] of bad) {
    it(`refuses ${what} with ValidationError and deletes nothing`, async () => {
      const before = await count();
      await assert.rejects(env.client.purge(options), ValidationError);
      assert.equal(await count(), before);
    });
  }
});

describe('client.scrub', () => {
  it('removes the payloads of a finished run found by key and keeps its skeleton', async () => {
    const run = await env.start(echo, { n: 21 }, { key: 'scrub-me', metadata: { email: 'ada@example.com' } });
    await env.drive(run);
    const at = await env.client.scrub({ workflow: echo, key: 'scrub-me' });
    const after = await env.client.get(run.id);
    assert.equal(after?.status, 'completed');
    assert.equal(after?.input, null);
    assert.equal(after?.output, null);
    assert.deepEqual(after?.metadata, {});
    assert.equal(after?.scrubbedAt?.getTime(), at.getTime());
    assert.deepEqual((await env.client.history(run.id)).map((s) => [s.name, s.status, s.output]), [['double', 'completed', null]]);
  });

  it('refuses an unfinished run with IllegalTransitionError and an unknown key with NotFoundError', async () => {
    const run = await env.start(held, { email: 'lin@example.com' });
    await env.waitFor(run, 'waiting');
    await assert.rejects(env.client.scrub(run.id), IllegalTransitionError);
    assert.deepEqual((await env.client.get(run.id))?.input, { email: 'lin@example.com' });
    await assert.rejects(env.client.scrub({ workflow: echo, key: 'no-such-key' }), NotFoundError);
    await env.client.cancel(run.id);
  });
});

describe('the purge duty and the outbox', () => {
  it('one look drains every event past the retention, a batch per transaction (it took one batch per look)', async () => {
    const own = await createTestEnv({ workflows: [leaf], purge: false });
    try {
      for (let i = 0; i < 5; i++) await own.drive(await own.start(leaf, {}));
      const events = async () => Number((await own.pool.query('select count(*) as n from trellis.events')).rows[0].n);
      const before = await events();
      assert.ok(before >= 10, `${before} events`);
      // The runs are kept for a week; their events only for the default hour.
      await own.client.setRetention('1 hour');
      await own.client.setRetention('7 days', { workflow: leaf });
      await own.advance('2 hours');
      const purged: number[] = [];
      const [duty] = engineDuties({ db: own.pool, purge: { intervalMs: 1000, batch: 2 }, schedules: undefined, deadlines: undefined,
        onPurged: (n) => purged.push(n), onFired: () => undefined, onOverdue: () => undefined });
      assert.equal(duty?.name, 'trellis.purge');
      await duty!.run({ token: 'test', signal: new AbortController().signal } as never);
      assert.equal(await events(), 0, `${before} events, 2 a batch, all gone after one look`);
      assert.deepEqual(purged, [], 'no run was past its own retention');
      assert.equal(Number((await own.pool.query('select count(*) as n from trellis.runs')).rows[0].n), 5);
    } finally {
      await own.close();
    }
  });
});
