/**
 * `ctx.patched` / `ctx.deprecatePatch`: the code of one workflow version
 * changed under runs in flight. A run that passed the patch point under the
 * old code replays the old path; a run that had not reached it, and a new
 * run, take the new one (the marker is recorded); checkReplay finds the
 * patched code compatible with every recorded run; the deprecated form stops
 * a run from before the patch with NonDeterminismError and replays the rest.
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

const input = z.object({ order: z.string() });
const sent: string[] = [];

// Deployed first.
const v1 = defineWorkflow({ name: 'pt-order', input }, async (ctx, { order }) => {
  await ctx.step('price', () => order.length);
  await ctx.waitForSignal('a');
  await ctx.step('notify-email', () => sent.push(`email ${order}`));
  await ctx.waitForSignal('b');
  return 'email';
});
// The same version, patched.
const patchedCode = defineWorkflow({ name: 'pt-order', input }, async (ctx, { order }) => {
  await ctx.step('price', () => order.length);
  await ctx.waitForSignal('a');
  const sms = ctx.patched('sms');
  if (sms) await ctx.step('notify-sms', () => sent.push(`sms ${order}`));
  else await ctx.step('notify-email', () => sent.push(`email ${order}`));
  await ctx.waitForSignal('b');
  return sms ? 'sms' : 'email';
});
// Later: the old branch removed.
const deprecated = defineWorkflow({ name: 'pt-order', input }, async (ctx, { order }) => {
  await ctx.step('price', () => order.length);
  await ctx.waitForSignal('a');
  ctx.deprecatePatch('sms');
  await ctx.step('notify-sms', () => sent.push(`sms ${order}`));
  await ctx.waitForSignal('b');
  return 'sms';
});
// A patch inside a loop: decided once per execution.
const loopInput = z.object({});
const loopV1 = defineWorkflow({ name: 'pt-loop', input: loopInput }, async (ctx) => {
  for (let i = 0; i < 3; i++) {
    await ctx.waitForSignal('tick');
    await ctx.step(`old-${i}`, () => i);
  }
  return 'done';
});
const loopPatched = defineWorkflow({ name: 'pt-loop', input: loopInput }, async (ctx) => {
  for (let i = 0; i < 3; i++) {
    await ctx.waitForSignal('tick');
    if (ctx.patched('loop')) await ctx.step(`new-${i}`, () => i);
    else await ctx.step(`old-${i}`, () => i);
  }
  return 'done';
});
const misuse = defineWorkflow({ name: 'pt-misuse', input: z.object({ id: z.string() }) }, async (ctx, { id }) => {
  const out: string[] = [];
  try {
    ctx.patched(id);
  } catch (error) {
    out.push(error instanceof ValidationError ? 'bad id refused' : String(error));
  }
  try {
    await ctx.step('body', () => ctx.patched('inside'));
  } catch (error) {
    out.push(/ctx\.patched "inside"/.test(String((error as Error).message)) ? 'in a step body refused' : String(error));
  }
  return out;
});

let db: TestDatabase;
let client: Client;
let worker: Worker | undefined;
const deploy = async (code: typeof v1, loop: typeof loopV1 = loopV1) => {
  await worker?.stop();
  worker = createWorker({ pool: db.pool, workflows: [code, loop, misuse], pollInterval: 50, logger: silentLogger });
  await worker.start();
};
const status = async (id: string) => (await client.get(id))?.status;
const parkedAt = async (id: string, calls: number) =>
  waitFor(async () => (await status(id)) === 'waiting'
    && (await db.pool.query('select 1 from trellis.steps where run_id = $1', [id])).rowCount === calls, { what: `run ${id} parked after ${calls} calls` });
const calls = async (id: string) =>
  (await db.pool.query<{ kind: string; name: string }>('select kind, name from trellis.steps where run_id = $1 order by seq', [id])).rows
    .map((r) => `${r.kind} ${r.name}`);

before(async () => {
  db = await freshDatabase();
  client = createClient({ pool: db.pool, logger: silentLogger });
});
after(async () => {
  await worker?.stop();
  await client.close();
  await db.close();
});

describe('ctx.patched', () => {
  it('old runs past the patch replay the old path; runs that had not reached it and new runs take the new one', async () => {
    await deploy(v1);
    const before = await client.start(v1, { order: 'before' }); // will not have reached the patch point
    const past = await client.start(v1, { order: 'past' }); // will have passed it
    const pastToo = await client.start(v1, { order: 'past-too' }); // kept for the deprecation below
    await parkedAt(before.id, 2);
    for (const r of [past, pastToo]) {
      await parkedAt(r.id, 2);
      await client.signal(r.id, 'a', {});
      await parkedAt(r.id, 4);
    }
    await deploy(patchedCode);
    // checkReplay: the patched code replays every recorded run.
    const report = await checkReplay(db.pool, patchedCode);
    assert.equal(report.length, 3);
    assert.deepEqual(report.filter((r) => !r.ok), []);
    // And the code without the patch (the new path only) would break the runs past the point.
    const unpatched = defineWorkflow({ name: 'pt-order', input }, async (ctx, { order }) => {
      await ctx.step('price', () => order.length);
      await ctx.waitForSignal('a');
      await ctx.step('notify-sms', () => sent.push(`sms ${order}`));
      await ctx.waitForSignal('b');
      return 'sms';
    });
    assert.equal((await checkReplay(db.pool, unpatched)).filter((r) => !r.ok).length, 2);
    const fresh = await client.start(patchedCode, { order: 'new' });
    await parkedAt(fresh.id, 2);
    for (const r of [before, fresh]) {
      await client.signal(r.id, 'a', {});
      await parkedAt(r.id, 5);
      await client.signal(r.id, 'b', {});
    }
    await client.signal(past.id, 'b', {});
    assert.equal(await past.result({ timeout: '20s' }), 'email');
    assert.equal(await before.result({ timeout: '20s' }), 'sms');
    assert.equal(await fresh.result({ timeout: '20s' }), 'sms');
    assert.deepEqual(sent.filter((s) => !s.startsWith('email past-too')).sort(), ['email past', 'sms before', 'sms new']);
    assert.deepEqual(await calls(before.id), ['step price', 'signal a', 'patch sms', 'step notify-sms', 'signal b']);
    assert.deepEqual(await calls(past.id), ['step price', 'signal a', 'step notify-email', 'signal b']);

    // Deprecated: the marker is accepted without a branch; a run from before the patch is stopped.
    await deploy(deprecated);
    const later = await client.start(deprecated, { order: 'later' });
    await parkedAt(later.id, 2);
    await client.signal(later.id, 'a', {});
    await parkedAt(later.id, 5);
    await client.signal(later.id, 'b', {});
    assert.equal(await later.result({ timeout: '20s' }), 'sms');
    await client.signal(pastToo.id, 'b', {});
    await waitFor(async () => (await status(pastToo.id)) === 'failed', { what: 'the run from before the patch stopped' });
    const stopped = await client.get(pastToo.id);
    assert.equal((stopped?.error as { code?: string } | null)?.code, 'non_determinism');
    assert.match((stopped?.error as { message?: string } | null)?.message ?? '', /deprecated patch "sms"/);
  });

  it('decides once per execution: a patch in a loop keeps a run on the path its first call took', async () => {
    await deploy(v1, loopV1);
    const old = await client.start(loopV1, {});
    await parkedAt(old.id, 1);
    await client.signal(old.id, 'tick', {});
    await parkedAt(old.id, 3); // tick, old-0, and the next tick waiting
    await deploy(v1, loopPatched);
    const fresh = await client.start(loopPatched, {});
    for (const r of [old, fresh]) {
      for (let i = 0; i < 3; i++) await client.signal(r.id, 'tick', {});
      assert.equal(await r.result({ timeout: '20s' }), 'done');
    }
    assert.deepEqual(await calls(old.id), ['signal tick', 'step old-0', 'signal tick', 'step old-1', 'signal tick', 'step old-2']);
    assert.deepEqual(await calls(fresh.id), ['signal tick', 'patch loop', 'step new-0', 'signal tick', 'step new-1', 'signal tick', 'step new-2']);
  });

  it('refuses a malformed id and a call from a step body', async () => {
    const run = await client.start(misuse, { id: 'not valid ' });
    assert.deepEqual(await run.result({ timeout: '20s' }), ['bad id refused', 'in a step body refused']);
  });
});
