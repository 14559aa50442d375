/**
 * client.signalWithStart end to end (decision 0043), with a worker in the
 * process: an entity run started by its first message and fed by the rest,
 * a finished run's key taken by the next message's run, repeated message
 * ids dropped, the caller's transaction, concurrent senders, and bad input
 * refused before anything is written.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { z } from 'zod';
import { ValidationError } from '../../src/errors.ts';
import { createTestEnv, type TestEnv } from '../../src/testing/env.ts';
import { defineSignal } from '../../src/workflow/signal.ts';
import { defineWorkflow } from '../../src/workflow/define.ts';
import { waitFor } from '../helpers/wait.ts';

const message = defineSignal('message', z.discriminatedUnion('type', [
  z.object({ type: z.literal('add'), sku: z.string() }),
  z.object({ type: z.literal('checkout') }),
]));

/** A cart: collects added items until checkout. */
const cart = defineWorkflow({ name: 'sws-cart', input: z.object({ customer: z.string() }), signals: [message] }, async (ctx, { customer }) => {
  const items: string[] = [];
  for (;;) {
    const got = await ctx.waitForSignal(message);
    if (got.timedOut) continue; // no timeout: never
    const { payload } = got;
    if (payload.type === 'checkout') return { customer, items };
    items.push(payload.sku);
  }
});

/** Takes one message, then holds in a step until the test lets it go, then ends: a message sent meanwhile reaches it after its last wait. */
let release: () => void = () => undefined;
let holding: Promise<void> = Promise.resolve();
const oneShot = defineWorkflow({ name: 'sws-one-shot', input: z.object({ customer: z.string() }), signals: [message] }, async (ctx, { customer }) => {
  const got = await ctx.waitForSignal(message);
  const sku = got.timedOut || got.payload.type !== 'add' ? '-' : got.payload.sku;
  await ctx.step('hold', () => holding);
  return { customer, sku };
});

let env: TestEnv;
before(async () => {
  env = await createTestEnv({ workflows: [cart, oneShot] });
});
after(() => env.close());
const count = async (table = 'runs') => (await env.pool.query<{ n: number }>(`select count(*)::int as n from trellis.${table}`)).rows[0]!.n;

describe('client.signalWithStart', () => {
  it('the first message starts the key\'s run, the next ones reach it, and its result has them all', async () => {
    const first = await env.client.signalWithStart(cart, { customer: 'ada' }, message, { type: 'add', sku: 'a-1' }, { key: 'cart-ada' });
    assert.equal(first.started, true);
    assert.equal(first.delivered, true);
    const second = await env.client.signalWithStart(cart, { customer: 'ada' }, message, { type: 'add', sku: 'b-2' }, { key: 'cart-ada' });
    assert.deepEqual([second.id, second.started, second.delivered], [first.id, false, true]);
    const done = await env.client.signalWithStart(cart, { customer: 'ada' }, message, { type: 'checkout' }, { key: 'cart-ada' });
    assert.equal(done.id, first.id);
    assert.deepEqual(await done.result({ timeout: '20s' }), { customer: 'ada', items: ['a-1', 'b-2'] });
    // The run has finished: the next message starts the key's next run.
    const next = await env.client.signalWithStart(cart, { customer: 'ada' }, message, { type: 'add', sku: 'c-3' }, { key: 'cart-ada' });
    assert.equal(next.started, true);
    assert.notEqual(next.id, first.id);
    assert.equal((await env.client.get(first.id))?.formerKey, 'cart-ada');
    assert.equal((await env.client.get({ workflow: cart, key: 'cart-ada' }))?.id, next.id);
    await env.client.signal(next.id, message, { type: 'checkout' });
    assert.deepEqual(await next.result({ timeout: '20s' }), { customer: 'ada', items: ['c-3'] });
  });

  it('a repeated signalId is dropped, also once the key\'s run has finished (nothing is started)', async () => {
    const first = await env.client.signalWithStart(cart, { customer: 'bo' }, message, { type: 'add', sku: 'x' }, { key: 'cart-bo', signalId: 'm-1' });
    const again = await env.client.signalWithStart(cart, { customer: 'bo' }, message, { type: 'add', sku: 'x' }, { key: 'cart-bo', signalId: 'm-1' });
    assert.deepEqual([again.id, again.started, again.delivered], [first.id, false, false]);
    await env.client.signalWithStart(cart, { customer: 'bo' }, message, { type: 'checkout' }, { key: 'cart-bo', signalId: 'm-2' });
    assert.deepEqual(await first.result({ timeout: '20s' }), { customer: 'bo', items: ['x'] });
    const runs = await count();
    const late = await env.client.signalWithStart(cart, { customer: 'bo' }, message, { type: 'checkout' }, { key: 'cart-bo', signalId: 'm-2' });
    assert.deepEqual([late.id, late.started, late.delivered], [first.id, false, false]);
    assert.equal(await count(), runs);
  });

  it('runs in the caller\'s transaction: rolled back, there is neither run nor signal', async () => {
    const [runs, signals] = [await count(), await count('signals')];
    const c = await env.pool.connect();
    try {
      await c.query('begin');
      const out = await env.client.signalWithStart(cart, { customer: 'cy' }, message, { type: 'add', sku: 'y' }, { key: 'cart-cy', tx: c });
      assert.equal(out.started, true);
      await c.query('rollback');
    } finally {
      c.release();
    }
    assert.deepEqual([await count(), await count('signals')], [runs, signals]);
    assert.equal(await env.client.get({ workflow: cart, key: 'cart-cy' }), undefined);
  });

  it('concurrent senders for one key start one run, and every message reaches it', async () => {
    const skus = Array.from({ length: 12 }, (_, i) => `s-${i}`);
    const outs = await Promise.all(skus.map((sku) =>
      env.client.signalWithStart(cart, { customer: 'dee' }, message, { type: 'add', sku }, { key: 'cart-dee' })));
    assert.equal(outs.filter((o) => o.started).length, 1);
    assert.equal(new Set(outs.map((o) => o.id)).size, 1);
    await env.client.signal(outs[0]!.id, message, { type: 'checkout' });
    const result = await outs[0]!.result({ timeout: '20s' }) as { items: string[] };
    assert.deepEqual([...result.items].sort(), [...skus].sort());
  });

  it('refuses bad input with ValidationError before anything is written, whether or not the key has a run', async () => {
    const held = await env.client.signalWithStart(cart, { customer: 'eve' }, message, { type: 'add', sku: 'z' }, { key: 'cart-eve' });
    const [runs, signals] = [await count(), await count('signals')];
    const client = env.client as unknown as { signalWithStart: (...a: unknown[]) => Promise<unknown> };
    for (const [args, pattern] of [
      [[cart, { customer: 'eve' }, message, { type: 'add', sku: 'z' }, {}], /needs a key/],
      [[cart, { customer: 'eve' }, message, { type: 'add', sku: 'z' }, undefined], /needs options with a key/],
      [[cart, { customer: 'eve' }, message, { type: 'add', sku: 'z' }, { key: 'cart-eve', keyPolicy: 'reuse' }], /no keyPolicy/],
      [[cart, { customer: 'eve' }, message, { type: 'add', sku: 'z' }, { key: 'cart-eve', bogus: 1 }], /unknown start option "bogus"/],
      [[cart, { customer: 'eve' }, message, { type: 'add', sku: 'z' }, { key: 'cart-eve', signalId: '' }], /signalId must be/],
      [[cart, { customer: 7 }, message, { type: 'add', sku: 'z' }, { key: 'cart-eve' }], /input of sws-cart/],
      [[cart, { customer: 'eve' }, message, { type: 'remove' }, { key: 'cart-eve' }], /payload of signal message/],
      [[cart, { customer: 'eve' }, message, { type: 'remove' }, { key: 'cart-new' }], /payload of signal message/],
      [[cart, { customer: 'eve' }, "it's", 1, { key: 'cart-eve' }], /signal/],
      [['sws-cart', { customer: 7 }, 'message', { type: 'add', sku: 'z' }, { key: 'cart-eve' }], /does not match its schema/],
      [['sws-cart', { customer: 'eve' }, 'other', 1, { key: 'cart-new' }], /does not wait for signal other/],
    ] as const) {
      await assert.rejects(client.signalWithStart(...args), (e: unknown) => e instanceof ValidationError && pattern.test(e.message));
    }
    assert.deepEqual([await count(), await count('signals')], [runs, signals]);
    await env.client.signal(held.id, message, { type: 'checkout' });
    assert.deepEqual(await held.result({ timeout: '20s' }), { customer: 'eve', items: ['z'] });
  });

  it('a message that reaches the run after its last wait goes to the key\'s next run, started with it, when the run ends', async () => {
    holding = new Promise((resolve) => (release = resolve));
    const first = await env.client.signalWithStart(oneShot, { customer: 'fay' }, message, { type: 'add', sku: 'one' }, { key: 'shot-fay' });
    assert.equal(first.started, true);
    // The run took its message and holds in its step: its last wait is behind it.
    await waitFor(async () => (await env.pool.query(`select 1 from trellis.steps where run_id = $1 and name = 'hold' and status = 'running'`, [first.id])).rowCount === 1,
      { what: 'the run to hold in its step' });
    const late = await env.client.signalWithStart(oneShot, { customer: 'fay' }, message, { type: 'add', sku: 'two' }, { key: 'shot-fay' });
    assert.deepEqual([late.id, late.started, late.delivered], [first.id, false, true]);
    release();
    assert.deepEqual(await first.result({ timeout: '20s' }), { customer: 'fay', sku: 'one' });
    // The late message started the key's next run, which read it.
    const next = await waitFor(async () => (await env.client.get({ workflow: oneShot, key: 'shot-fay' }))?.id !== first.id
      && (await env.client.get({ workflow: oneShot, key: 'shot-fay' })), { what: 'the key\'s next run' });
    if (!next) throw new Error('no next run');
    holding = Promise.resolve();
    assert.deepEqual(await env.client.result(next.id, { timeout: '20s' }), { customer: 'fay', sku: 'two' });
    const { rows } = await env.pool.query(`select count(*)::int as n from trellis.signals s join trellis.runs r on r.id = s.run_id
                                             where r.workflow = 'sws-one-shot' and s.consumed_at is null`);
    assert.equal(rows[0].n, 0, 'no message left unread');
  });
});
