/**
 * checkReplay (trellis/testing): new code replayed against the recorded
 * histories of runs, without writing anything or running a step body. A
 * compatible change passes; a renamed or inserted call, an input the code no
 * longer accepts and (for a finished run) another output are reported per run.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { z } from 'zod';
import { createClient, type Client } from '../../src/client/client.ts';
import { ValidationError } from '../../src/errors.ts';
import { silentLogger } from '../../src/protocol/logger.ts';
import { checkReplay } from '../../src/testing/replay-check.ts';
import { createWorker, type Worker } from '../../src/worker/worker.ts';
import { defineWorkflow } from '../../src/workflow/define.ts';
import { freshDatabase, type TestDatabase } from '../helpers/db.ts';
import { waitFor } from '../helpers/wait.ts';

let bodies = 0;
const input = z.object({ order: z.string() });
const deployed = defineWorkflow({ name: 'rc-order', input }, async (ctx, { order }) => {
  const total = await ctx.step('price', () => order.length * 10);
  await ctx.sleep('cool-off', '1 hour');
  return ctx.step('charge', () => `charged ${total}`);
});
// Returns its keys in another order than jsonb keeps them (jsonb: shorter keys first).
const quick = defineWorkflow({ name: 'rc-quick', input }, async (ctx, { order }) => ({ text: await ctx.step('echo', () => `echo ${order}`), at: 1 }));

// Candidates for the next deploy of the same version.
const reworded = defineWorkflow({ name: 'rc-order', input }, async (ctx, { order }) => {
  const total = await ctx.step('price', () => (bodies++, order.length * 10));
  await ctx.sleep('cool-off', '1 hour');
  return ctx.step('charge', () => (bodies++, `charged ${total} (new text)`));
});
const renamed = defineWorkflow({ name: 'rc-order', input }, async (ctx, { order }) => {
  const total = await ctx.step('compute-price', () => (bodies++, order.length * 10));
  await ctx.sleep('cool-off', '1 hour');
  return `charged ${total}`;
});
const inserted = defineWorkflow({ name: 'rc-order', input }, async (ctx, { order }) => {
  const total = await ctx.step('price', () => (bodies++, order.length * 10));
  await ctx.step('audit', () => (bodies++, 'audited'));
  await ctx.sleep('cool-off', '1 hour');
  return `charged ${total}`;
});
const stricter = defineWorkflow({ name: 'rc-order', input: z.object({ order: z.string(), currency: z.string() }) }, async (ctx) => {
  await ctx.step('price', () => (bodies++, 0));
  return 'never';
});
// Returns before the sleep the history holds; and one that waits on what no ctx call settles.
const shorter = defineWorkflow({ name: 'rc-order', input }, async (ctx, { order }) => `priced ${await ctx.step('price', () => (bodies++, order.length * 10))}`);
const stuck = defineWorkflow({ name: 'rc-order', input }, async (ctx, { order }) => {
  await ctx.step('price', () => (bodies++, order.length * 10));
  await new Promise(() => undefined);
  return 'never';
});
// The recorded step result is replayed; what the code makes of it changed.
const quickChanged = defineWorkflow({ name: 'rc-quick', input }, async (ctx, { order }) =>
  ({ text: (await ctx.step('echo', () => (bodies++, `echo ${order}`))).toUpperCase(), at: 1 }));

let db: TestDatabase;
let client: Client;
let worker: Worker;
before(async () => {
  db = await freshDatabase();
  client = createClient({ pool: db.pool, logger: silentLogger });
  worker = createWorker({ pool: db.pool, workflows: [deployed, quick], pollInterval: 50, logger: silentLogger });
  await worker.start();
});
after(async () => {
  await worker?.stop({ timeout: 2000 });
  await client?.close();
  await db?.close();
});

describe('checkReplay', () => {
  it('reports, per run, whether new code makes the recorded calls; writes nothing and runs no step body', async () => {
    const runs = await Promise.all(['a-1', 'b-22'].map((order) => client.start(deployed, { order })));
    for (const run of runs) await waitFor(async () => (await client.get(run.id))?.status === 'waiting', { what: 'the run sleeping' });
    const done = await client.start(quick, { order: 'q' });
    assert.deepEqual(await done.result({ timeout: '20s' }), { text: 'echo q', at: 1 });
    const rowsBefore = (await db.pool.query('select count(*)::int as n from trellis.steps')).rows[0].n;

    const ok = await checkReplay(db.pool, reworded);
    assert.deepEqual(ok.map((r) => [r.runId, r.ok, r.replayed, r.status]).sort(),
      runs.map((r) => [r.id, true, 2, 'waiting']).sort(), 'the price step and the sleep replay; the charge is past the history');

    const [first] = await checkReplay(db.pool, renamed, { runs: [runs[0]!.id] });
    assert.equal(first?.ok, false);
    assert.match(first?.problem ?? '', /call #0 is step "compute-price" but the history has step "price"/);
    assert.equal(first?.replayed, 0);

    const moved = await checkReplay(db.pool, inserted);
    assert.deepEqual(moved.map((r) => r.ok), [false, false]);
    assert.match(moved[0]?.problem ?? '', /call #1 is step "audit" but the history has sleep "cool-off"/);

    // It made one recorded call (the price) of the two before it returned or got stuck: replayed 1, not the history's length.
    const early = await checkReplay(db.pool, shorter, { runs: [runs[0]!.id] });
    assert.deepEqual(early.map((r) => [r.ok, r.replayed]), [[false, 1]]);
    assert.match(early[0]?.problem ?? '', /returned after 1 durable calls but the history holds calls up to #1/);
    const blocked = await checkReplay(db.pool, stuck, { runs: [runs[0]!.id] });
    assert.deepEqual(blocked.map((r) => [r.ok, r.replayed]), [[false, 1]]);
    assert.match(blocked[0]?.problem ?? '', /is stuck/);

    const strict = await checkReplay(db.pool, stricter, { limit: 1 });
    assert.equal(strict.length, 1, 'limit');
    assert.match(strict[0]?.problem ?? '', /^input of rc-order is invalid/);
    assert.equal(strict[0]?.replayed, 0, 'code that refuses the input replays no call');

    // A finished run: the code must end it as it ended.
    assert.deepEqual((await checkReplay(db.pool, quick, { statuses: ['completed'] })).map((r) => [r.ok, r.replayed]), [[true, 1]]);
    const changed = await checkReplay(db.pool, quickChanged, { statuses: ['completed'] });
    assert.equal(changed[0]?.ok, false);
    assert.match(changed[0]?.problem ?? '', /returns \{"text":"ECHO Q","at":1\} where the run returned \{"at":1,"text":"echo q"\}/);
    assert.deepEqual(await checkReplay(db.pool, quick), [], 'by default only unfinished runs');

    assert.equal(bodies, 0, 'no step body ran');
    assert.equal((await db.pool.query('select count(*)::int as n from trellis.steps')).rows[0].n, rowsBefore, 'nothing was written');
    for (const run of runs) assert.equal((await client.get(run.id))?.status, 'waiting');
  });

  it('refuses what is not a workflow, a bad limit, an unknown status or a run id that is not one', async () => {
    await assert.rejects(checkReplay(db.pool, {} as never), ValidationError);
    await assert.rejects(checkReplay(db.pool, deployed, { limit: 0 }), ValidationError);
    await assert.rejects(checkReplay(db.pool, deployed, { statuses: ['sleeping' as never] }), /statuses must be an array of pending, running/);
    await assert.rejects(checkReplay(db.pool, deployed, { runs: ["x'; drop table trellis.runs; --"] }), /runs must be an array of run ids/);
  });
});
