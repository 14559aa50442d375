/**
 * client.fork end to end (decision 0032): the calls before the fork point
 * are not run again, the rest runs on the version asked for, a failed run is
 * forked onto fixed code, and bad input is refused with nothing written.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { z } from 'zod';
import { NotFoundError, ValidationError, WorkflowFailedError } from '../../src/errors.ts';
import { createTestEnv, type TestEnv } from '../../src/testing/env.ts';
import { defineWorkflow } from '../../src/workflow/define.ts';

const ran: string[] = [];
const input = z.object({ order: z.string() });
/** Version 1 charges with a price list that is wrong for order "bad". */
const v1 = defineWorkflow({ name: 'checkout', version: '1', input }, async (ctx, { order }) => {
  const reserved = await ctx.step('reserve', () => { ran.push(`v1 reserve ${order}`); return `r-${order}`; });
  const price = await ctx.step('price', () => {
    ran.push(`v1 price ${order}`);
    if (order === 'bad') throw new Error('no price for bad');
    return 10;
  }, { retry: { maxAttempts: 1 } });
  await ctx.sleep('settle', '1 minute');
  return ctx.step('charge', () => { ran.push(`v1 charge ${order}`); return `${reserved} charged ${price}`; });
});
/** Version 2: the same calls, a fixed price step. */
const v2 = defineWorkflow({ name: 'checkout', version: '2', input }, async (ctx, { order }) => {
  const reserved = await ctx.step('reserve', () => { ran.push(`v2 reserve ${order}`); return `r-${order}`; });
  const price = await ctx.step('price', () => { ran.push(`v2 price ${order}`); return 12; }, { retry: { maxAttempts: 1 } });
  await ctx.sleep('settle', '1 minute');
  return ctx.step('charge', () => { ran.push(`v2 charge ${order}`); return `${reserved} charged ${price}`; });
});

/** A signal raced against a sleep (the sleep wins when nobody signals), then a step. */
const racer = defineWorkflow({ name: 'racer', input: z.object({}) }, async (ctx) => {
  const before = await ctx.step('before', () => 'b');
  const won = await ctx.race({ sig: ctx.waitForSignal('go'), nap: ctx.sleep('nap', '1 minute') });
  return ctx.step('after', () => `${before} ${String(won.key)}`);
});

let env: TestEnv;
before(async () => {
  env = await createTestEnv({ workflows: [v1, v2, racer] });
});
after(() => env.close());

describe('client.fork', () => {
  it('keeps the calls before fromCall and runs the rest again; forkedFrom names the original', async () => {
    const original = await env.start(v1, { order: 'o1' }, { key: 'o1' });
    assert.equal((await env.drive(original)).output, 'r-o1 charged 10');
    ran.length = 0;
    // Call 2 is the sleep: reserve and price keep their results.
    const fork = await env.client.fork({ workflow: 'checkout', key: 'o1' }, { fromCall: 2 });
    const done = await env.drive(fork.id);
    assert.equal(done.output, 'r-o1 charged 10');
    assert.deepEqual(ran, ['v1 charge o1'], 'reserve and price were not run again');
    assert.deepEqual(done.forkedFrom, { runId: original.id, fromCall: 2 });
    assert.equal(done.version, '1');
    assert.equal(done.key, null);
    assert.equal((await env.client.get(original.id))!.forkedFrom, null);
  });

  it('forks a failed run at its failed call onto fixed code (another version)', async () => {
    const failed = await env.start(v1, { order: 'bad' });
    await assert.rejects(env.drive(failed).then((r) => env.client.result(r.id)), WorkflowFailedError);
    const history = await env.client.history(failed.id);
    const at = history.find((s) => s.name === 'price' && s.status === 'failed')!.seq;
    ran.length = 0;
    const fork = await env.client.fork(failed.id, { fromCall: at, version: '2' });
    const done = await env.drive(fork.id);
    assert.equal(done.status, 'completed');
    assert.equal(done.output, 'r-bad charged 12');
    assert.deepEqual(ran, ['v2 price bad', 'v2 charge bad']);
    assert.equal((await env.client.get(failed.id))!.status, 'failed', 'the original is untouched');
  });

  it('from call 0 (the default) runs the whole run again', async () => {
    const first = await env.start(v2, { order: 'o3' });
    await env.drive(first);
    ran.length = 0;
    const again = await env.client.fork(first.id);
    assert.equal((await env.drive(again.id)).output, 'r-o3 charged 12');
    assert.deepEqual(ran, ['v2 reserve o3', 'v2 price o3', 'v2 charge o3']);
  });

  it('forks at every call of a ctx.race: a lost wait is kept only with the race that decided it', async () => {
    const first = await env.start(racer, {});
    assert.equal((await env.drive(first)).output, 'b nap');
    const calls = await env.client.history(first.id);
    assert.deepEqual(calls.map((c) => `${c.seq} ${c.kind} ${c.name}`), ['0 step before', '1 signal go', '2 sleep nap', '3 race race', '4 step after']);
    for (let from = 0; from <= 5; from++) {
      const fork = await env.client.fork(first.id, { fromCall: from });
      const done = await env.drive(fork.id);
      assert.equal(done.status, 'completed', `from call ${from}: ${JSON.stringify(done.error)}`);
      assert.equal(done.output, 'b nap', `from call ${from}`);
    }
  });

  it('refuses bad input with a typed error and writes nothing', async () => {
    const run = await env.start(v2, { order: 'o4' });
    await env.drive(run);
    const count = async () => (await env.pool.query<{ n: number }>('select count(*)::int as n from trellis.runs')).rows[0]!.n;
    const n = await count();
    await assert.rejects(env.client.fork(run.id, { fromCall: -1 }), ValidationError);
    await assert.rejects(env.client.fork(run.id, { fromCall: 1.5 }), ValidationError);
    await assert.rejects(env.client.fork(run.id, { version: '7' }), NotFoundError);
    await assert.rejects(env.client.fork(run.id, { timeLimit: 'soon' as never }), ValidationError);
    await assert.rejects(env.client.fork('0b7e4a3c-0000-4000-8000-000000000000'), NotFoundError);
    await assert.rejects(env.client.fork({ workflow: 'checkout', key: 'nobody' }), NotFoundError);
    await assert.rejects(env.client.fork('not a uuid'), ValidationError);
    assert.equal(await count(), n);
  });
});
