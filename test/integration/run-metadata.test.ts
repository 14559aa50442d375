/**
 * Metadata set after the start (decision 0041): `ctx.setMetadata` merges
 * fields into the run's metadata as a call of its history (written once,
 * however often the run replays), where `client.list({ metadata })`, the
 * bulk controls and SQL find them; `client.setMetadata` does the same for an
 * operator. Bad fields are refused before anything is recorded.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { z } from 'zod';
import { captureIo } from '../../src/cli/io.ts';
import { main } from '../../src/cli/main.ts';
import { IllegalTransitionError, NotFoundError, PayloadTooLargeError, ValidationError } from '../../src/errors.ts';
import { createTestEnv, type TestEnv } from '../../src/testing/env.ts';
import { defineWorkflow } from '../../src/workflow/define.ts';
import { defineSignal } from '../../src/workflow/signal.ts';

const shipped = defineSignal('shipped', z.object({ carrier: z.string() }));

/** An order that says how far it got in its metadata. */
const order = defineWorkflow({ name: 'md-order', input: z.object({ tenant: z.string() }) }, async (ctx, { tenant }) => {
  const seen = { ...ctx.metadata };
  await ctx.setMetadata({ stage: 'paid', tenant });
  const got = await ctx.waitForSignal(shipped);
  await ctx.setMetadata({ stage: 'shipped', carrier: got.timedOut ? null : got.payload.carrier, note: null });
  return seen;
});

const outcome = async (p: () => Promise<unknown>) => {
  try {
    await p();
    return 'set';
  } catch (error) {
    return (error as Error).constructor.name;
  }
};

/** Every way to get ctx.setMetadata wrong, each caught; then one good call. */
const misuse = defineWorkflow({ name: 'md-misuse', input: z.object({}) }, async (ctx) => {
  const out = [
    await outcome(() => ctx.setMetadata({ a: undefined })),
    await outcome(() => ctx.setMetadata({ at: new Date() } as never)),
    await outcome(() => ctx.setMetadata({ n: Number.NaN })),
    await outcome(() => ctx.setMetadata('x' as never)),
    await outcome(() => ctx.setMetadata({ traceparent: '00-1-2-01' })),
    await outcome(() => ctx.setMetadata({ big: 'x'.repeat(2_000_000) })),
    // Each fits, together they do not: the merged metadata is measured.
    await outcome(() => ctx.setMetadata({ half: 'y'.repeat(600_000) })),
    await outcome(() => ctx.setMetadata({ other: 'z'.repeat(600_000) })),
    await ctx.step('inside', () => outcome(() => ctx.setMetadata({ from: 'a step body' }))),
    await outcome(() => ctx.setMetadata({})),
  ];
  await ctx.setMetadata({ half: null, ok: true });
  return out;
});

let env: TestEnv;
before(async () => {
  env = await createTestEnv({ workflows: [order, misuse] });
});
after(() => env.close());

const ids = async (metadata: Record<string, unknown>) => (await env.client.list({ workflow: order, metadata })).runs.map((r) => r.id).sort();

describe('ctx.setMetadata', () => {
  it('merges fields into the run\'s metadata as it goes, found by list and the bulk controls; a replay writes nothing twice', async () => {
    const a = await env.client.start(order, { tenant: 'acme' }, { metadata: { source: 'web', note: 'rush' } });
    const b = await env.client.start(order, { tenant: 'globex' });
    await env.waitFor(a, 'waiting', { timeout: '20s' });
    await env.waitFor(b, 'waiting', { timeout: '20s' });
    assert.deepEqual((await env.client.get(a.id))?.metadata, { source: 'web', note: 'rush', stage: 'paid', tenant: 'acme' });
    assert.deepEqual(await ids({ stage: 'paid' }), [a.id, b.id].sort());
    assert.deepEqual(await ids({ stage: 'paid', tenant: 'acme' }), [a.id]);
    // The signal wakes the run: it replays its first call, then sets the second.
    await env.client.signal(a.id, shipped, { carrier: 'dhl' });
    const seen = await a.result({ timeout: '20s' });
    assert.deepEqual(seen, { source: 'web', note: 'rush', stage: 'paid', tenant: 'acme' },
      'ctx.metadata is the metadata the execution found (the replay\'s: with the first call\'s fields)');
    assert.deepEqual((await env.client.get(a.id))?.metadata, { source: 'web', stage: 'shipped', tenant: 'acme', carrier: 'dhl' });
    assert.deepEqual(await ids({ stage: 'shipped' }), [a.id]);
    const { rows } = await env.pool.query(`select seq, output from trellis.steps where run_id = $1 and kind = 'metadata' order by seq`, [a.id]);
    assert.deepEqual(rows, [{ seq: 0, output: { stage: 'paid', tenant: 'acme' } }, { seq: 2, output: { stage: 'shipped', carrier: 'dhl', note: null } }]);
    // A bulk control filters on what the runs set.
    const cancelled = await env.client.cancelMany({ metadata: { stage: 'paid', tenant: 'globex' } });
    assert.deepEqual(cancelled.changed, [b.id]);
  });

  it('refuses fields that are not JSON, reserved, too large or set from a step body, recording nothing', async () => {
    const m = await env.client.start(misuse, {});
    assert.deepEqual(await m.result({ timeout: '20s' }), [
      'ValidationError', 'ValidationError', 'ValidationError', 'ValidationError', 'ValidationError', 'PayloadTooLargeError',
      'set', 'PayloadTooLargeError', 'ValidationError', 'set',
    ]);
    assert.deepEqual((await env.client.get(m.id))?.metadata, { ok: true });
    const { rows } = await env.pool.query(`select output from trellis.steps where run_id = $1 and kind = 'metadata' order by seq`, [m.id]);
    assert.deepEqual(rows.map((r) => Object.keys(r.output).sort()), [['half'], ['half', 'ok']], 'only the two calls that were made');
  });
});

describe('client.setMetadata', () => {
  it('merges an operator\'s fields into any run, by id or key, in the caller\'s transaction; the run\'s own calls merge on top', async () => {
    const run = await env.client.start(order, { tenant: 'initech' }, { key: 'order-77' });
    await env.waitFor(run, 'waiting', { timeout: '20s' });
    assert.deepEqual(await env.client.setMetadata({ workflow: order, key: 'order-77' }, { reviewedBy: 'ada', tenant: null }),
      { stage: 'paid', reviewedBy: 'ada' });
    const tx = await env.pool.connect();
    try {
      await tx.query('begin');
      await env.client.setMetadata(run.id, { ticket: 'OPS-1' }, { tx });
      await tx.query('rollback');
    } finally {
      tx.release();
    }
    assert.deepEqual((await env.client.get(run.id))?.metadata, { stage: 'paid', reviewedBy: 'ada' }, 'rolled back with the caller');
    await env.client.signal(run.id, shipped, { carrier: 'ups' });
    await run.result({ timeout: '20s' });
    assert.deepEqual((await env.client.get(run.id))?.metadata, { stage: 'shipped', reviewedBy: 'ada', carrier: 'ups' });
    assert.deepEqual(await env.client.setMetadata(run.id, { archived: true }), { stage: 'shipped', reviewedBy: 'ada', carrier: 'ups', archived: true },
      'a finished run too');
  });

  it('refuses bad fields, unknown runs and scrubbed runs, changing nothing', async () => {
    const run = await env.client.start(order, { tenant: 'x' }, { metadata: { k: 1 } });
    await env.waitFor(run, 'waiting', { timeout: '20s' });
    for (const bad of [null, [], 'x', { a: undefined }, { f: () => 1 }, { '': 1 }, { tracestate: 'x' }] as never[]) {
      await assert.rejects(env.client.setMetadata(run.id, bad), ValidationError, JSON.stringify(bad));
    }
    await assert.rejects(env.client.setMetadata(run.id, { big: 'x'.repeat(1_100_000) }), PayloadTooLargeError);
    await assert.rejects(env.client.setMetadata(randomUUID(), { a: 1 }), NotFoundError);
    await assert.rejects(env.client.setMetadata('not-a-uuid', { a: 1 }), ValidationError);
    assert.deepEqual((await env.client.get(run.id))?.metadata, { k: 1, stage: 'paid', tenant: 'x' });
    await env.client.cancel(run.id);
    await env.waitFor(run, 'cancelled', { timeout: '20s' });
    await env.client.scrub(run.id);
    await assert.rejects(env.client.setMetadata(run.id, { a: 1 }), IllegalTransitionError);
  });

  it('trellis metadata merges fields by id or by workflow and key and prints the result; bad input exits 2, an unknown run 3, a scrubbed one 4', async () => {
    const run = await env.client.start(order, { tenant: 'cli' }, { key: 'order-cli' });
    await env.waitFor(run, 'waiting', { timeout: '20s' });
    const cli = async (...args: string[]) => {
      const io = captureIo({ DATABASE_URL: env.url });
      const code = await main(args, io);
      return { code, out: io.stdout, err: io.stderr };
    };
    const byId = await cli('metadata', run.id, '{"ticket":"OPS-2","stage":null}');
    assert.equal(byId.code, 0, byId.err);
    assert.deepEqual(JSON.parse(byId.out), { tenant: 'cli', ticket: 'OPS-2' });
    const byKey = await cli('metadata', '--workflow', 'md-order', '--key', 'order-cli', '{"reviewedBy":"ada"}');
    assert.equal(byKey.code, 0, byKey.err);
    assert.deepEqual(JSON.parse(byKey.out), { tenant: 'cli', ticket: 'OPS-2', reviewedBy: 'ada' });
    for (const bad of [[run.id], [run.id, '[1]'], [run.id, '{bad'], [run.id, '{"traceparent":"x"}'], ['not-a-uuid', '{}']]) {
      assert.equal((await cli('metadata', ...bad)).code, 2, bad.join(' '));
    }
    assert.equal((await cli('metadata', randomUUID(), '{"a":1}')).code, 3);
    await env.client.cancel(run.id);
    await env.waitFor(run, 'cancelled', { timeout: '20s' });
    await env.client.scrub(run.id);
    assert.equal((await cli('metadata', run.id, '{"a":1}')).code, 4);
    assert.deepEqual((await env.client.get(run.id))?.metadata, {});
  });
});
