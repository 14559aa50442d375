/**
 * ctx.race on real PostgreSQL: one winner among branches ready at once (only
 * it consumes), a losing child stays awaitable with its real result, a losing
 * signal wait throws RaceLostError when awaited, and a workflow that awaits
 * something no durable call settles fails loudly instead of holding its slot.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { z } from 'zod';
import { WorkflowFailedError } from '../../src/errors.ts';
import { createTestEnv, type TestEnv } from '../../src/testing/env.ts';
import { defineWorkflow } from '../../src/workflow/define.ts';
import { adminUrl } from '../helpers/db.ts';
import { waitFor } from '../helpers/wait.ts';

const remindOrApprove = defineWorkflow({ name: 'race-both-ready', input: z.object({}) }, async (ctx) => {
  const first = await ctx.race({ timer: ctx.sleep('deadline', '1 day'), signal: ctx.waitForSignal<string>('go') });
  if (first.key === 'timer') await ctx.step('send-reminder', () => 'reminded');
  const next = first.key === 'signal' ? first.value : await ctx.waitForSignal<string>('go', { timeout: '7 days' });
  return { winner: first.key, next };
});

// A step that runs until the test lets it go, raced against a short sleep.
let letStepGo: (() => void) | undefined;
let stepBodies = 0;
const stepOrTimeout = defineWorkflow({ name: 'race-step-or-timeout', input: z.object({}) }, async (ctx) => {
  const won = await ctx.race({
    work: ctx.step('slow', () => {
      stepBodies++;
      return new Promise<string>((resolve) => { letStepGo = () => resolve('worked'); });
    }),
    timeout: ctx.sleep('t', 200),
  });
  return won.key;
});

const kid = defineWorkflow({ name: 'race-kid', input: z.object({}) }, async (ctx) => {
  await ctx.sleep('k', '2 hours');
  return { value: 42 };
});
const keepWaiting = defineWorkflow({ name: 'race-then-await-child', input: z.object({}) }, async (ctx) => {
  const c = ctx.child(kid, {});
  const r = await ctx.race({ kid: c, timer: ctx.sleep('t', '1 hour') });
  const late = await c; // the timer won; keep waiting for the child's real result
  return { winner: r.key, late };
});

const awaitsLoser = defineWorkflow({ name: 'race-await-loser', input: z.object({}) }, async (ctx) => {
  const s = ctx.waitForSignal<string>('go');
  await ctx.race({ s, t: ctx.sleep('t', '1 hour') });
  try {
    await s;
    return 'resolved';
  } catch (error) {
    return `${(error as Error).name}/${(error as { code?: string | undefined }).code}`;
  }
});

const stuck = defineWorkflow({ name: 'race-stuck', input: z.object({}) }, async (ctx) => {
  await ctx.step('before', () => 1);
  await new Promise(() => {}); // not a ctx call: nothing will ever settle it
  return 'never';
});

let env: TestEnv;
before(async () => {
  env = await createTestEnv({ workflows: [remindOrApprove, kid, keepWaiting, awaitsLoser, stuck, stepOrTimeout], serverUrl: adminUrl() });
});
after(() => env.close());

describe('ctx.race', () => {
  it('with the deadline passed and the signal sent while the run was paused, lets only the winner consume: the next wait gets the signal', async () => {
    const run = await env.start(remindOrApprove, {});
    await env.waitFor(run.id, 'waiting');
    await env.client.pause(run.id);
    await env.advance('1 day');
    await env.client.signal(run.id, 'go', 'approved-late');
    await env.client.resume(run.id);
    // Both branches are ready at this claim; the first in key order (the timer) wins.
    assert.deepEqual(await run.result({ timeout: '10s' }), { winner: 'timer', next: { timedOut: false, payload: 'approved-late', signalId: null } });
    const history = await env.history(run.id);
    const race = history.find((s) => s.kind === 'race');
    assert.deepEqual(race?.output, { key: 'timer', lost: [1] });
    assert.deepEqual(history.find((s) => s.seq === 1)?.output, { lost: true }, 'the losing signal wait consumed nothing');
  });

  it('leaves a losing child live: awaiting it later returns the child\'s real result', async () => {
    const run = await env.start(keepWaiting, {});
    await env.waitFor(run.id, 'waiting');
    // The child's 2-hour sleep must have started before the clock moves, or it ends an hour later.
    await waitFor(async () => (await env.pool.query(
      `select 1 from trellis.runs where parent_run_id = $1 and status = 'waiting'`, [run.id])).rowCount, { what: 'the child asleep' });
    await env.advance('1 hour'); // the timer wins
    await waitFor(async () => (await env.history(run.id)).some((s) => s.kind === 'race' && s.status === 'completed'), { what: 'the race decided' });
    await env.waitFor(run.id, 'waiting'); // parked again on the child, holding no slot
    await waitFor(() => env.worker.activeCount === 0, { what: 'the worker slot to be free', timeout: 5000 });
    await env.advance('1 hour'); // the child finishes
    assert.deepEqual(await run.result({ timeout: '10s' }), { winner: 'timer', late: { value: 42 } });
    const child = (await env.history(run.id)).find((s) => s.kind === 'child');
    assert.equal(child?.status, 'completed');
  });

  it('makes awaiting a losing signal wait throw RaceLostError (typed, illegal_transition)', async () => {
    const run = await env.start(awaitsLoser, {});
    await env.waitFor(run.id, 'waiting');
    await env.advance('1 hour');
    assert.equal(await run.result({ timeout: '10s' }), 'RaceLostError/illegal_transition');
  });
});

describe('ctx.race of a step against a sleep', () => {
  it('is won by the sleep when it is due first, while the step still runs (it waited for the step to end)', async () => {
    const run = await env.start(stepOrTimeout, {});
    try {
      // The step never ends before the result: before the change, the result waited for it for ever.
      assert.equal(await run.result({ timeout: '20s' }), 'timeout');
      assert.equal(stepBodies, 1);
      const history = await env.client.history(run.id);
      assert.deepEqual(history.filter((h) => h.kind !== 'step').map((h) => [h.kind, h.name, h.status]),
        [['sleep', 't', 'completed'], ['race', 'race', 'completed']]);
      assert.deepEqual(history.find((h) => h.kind === 'race')?.output, { key: 'timeout', lost: [] });
    } finally {
      letStepGo?.();
    }
  });
});

describe('an execution with nothing running, nothing blocked and an unsettled function', () => {
  it('fails the run with WorkflowStuckError instead of holding its worker slot', async () => {
    const run = await env.start(stuck, {});
    await assert.rejects(run.result({ timeout: '10s' }), WorkflowFailedError);
    const row = await env.client.get(run.id);
    assert.equal((row?.error as { name: string }).name, 'WorkflowStuckError');
    assert.match((row?.error as { message: string }).message, /await only ctx calls/i);
    await waitFor(() => env.worker.activeCount === 0, { what: 'the worker slot to be free', timeout: 5000 });
  });
});
