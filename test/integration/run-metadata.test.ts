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
import { waitFor } from '../helpers/wait.ts';

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
    // An indexed field PostgreSQL could not index (its checkpoint failed at every claim, re-running the steps before it).
    await outcome(() => ctx.setMetadata({ foreign_id: 'f'.repeat(3_000) })),
    await outcome(() => ctx.setMetadata({ foreign_id: { nested: 'x' } })),
    await outcome(() => ctx.setMetadata({})),
  ];
  await ctx.setMetadata({ half: null, ok: true });
  return out;
});

/**
 * Calls whose size is refused, under replays (mode a: a refused call before
 * a recorded one; b: the refusal's cause removed by an operator before the
 * replay; c: a field the run set, removed by an operator, not counted again
 * on the replay).
 */
const sizes = defineWorkflow({ name: 'md-sizes', input: z.object({ mode: z.enum(['a', 'b', 'c']) }) }, async (ctx, { mode }) => {
  const out: string[] = [];
  const attempt = async (fields: Record<string, unknown>) => out.push(await outcome(() => ctx.setMetadata(fields)));
  if (mode === 'a') {
    await attempt({ big: 'x'.repeat(500_000) });
    await attempt({ small: 1 });
    await ctx.waitForSignal('go');
  } else if (mode === 'b') {
    await ctx.waitForSignal('go');
    await attempt({ big: 'x'.repeat(500_000) });
    await ctx.waitForSignal('again');
  } else {
    await attempt({ a: 'x'.repeat(600_000) });
    await ctx.waitForSignal('go');
    await attempt({ b: 'y'.repeat(600_000) });
  }
  return out;
});

let env: TestEnv;
before(async () => {
  env = await createTestEnv({ workflows: [order, misuse, sizes] });
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

  it('refuses fields that are not JSON, reserved, too large or set from a step body, changing nothing', async () => {
    const m = await env.client.start(misuse, {});
    assert.deepEqual(await m.result({ timeout: '20s' }), [
      'ValidationError', 'ValidationError', 'ValidationError', 'ValidationError', 'ValidationError', 'PayloadTooLargeError',
      'set', 'PayloadTooLargeError', 'ValidationError', 'ValidationError', 'ValidationError', 'set',
    ]);
    assert.deepEqual((await env.client.get(m.id))?.metadata, { ok: true });
    const { rows } = await env.pool.query(`select status, output from trellis.steps where run_id = $1 and kind = 'metadata' order by seq`, [m.id]);
    // Refused for what the code gave: nothing recorded; refused for the size: a failed call (a replay refuses it again).
    assert.deepEqual(rows.map((r) => [r.status, r.output && Object.keys(r.output).sort()]),
      [['failed', null], ['completed', ['half']], ['failed', null], ['completed', ['half', 'ok']]]);
  });
});

describe('ctx.setMetadata refused for its size, under replays', () => {
  const calls = async (id: string) => (await env.pool.query(`select seq, status from trellis.steps where run_id = $1 and kind = 'metadata' order by seq`, [id])).rows;

  it('a refused call is recorded as failed, so a replay refuses it again and the calls after it keep their places', async () => {
    const run = await env.client.start(sizes, { mode: 'a' }, { metadata: { pad: 'p'.repeat(600_000) } });
    await env.waitFor(run, 'waiting', { timeout: '20s' });
    await env.client.signal(run.id, 'go', null);
    assert.deepEqual(await run.result({ timeout: '20s' }), ['PayloadTooLargeError', 'set']);
    assert.deepEqual(await calls(run.id), [{ seq: 0, status: 'failed' }, { seq: 1, status: 'completed' }]);
    const meta = (await env.client.get(run.id))?.metadata as Record<string, unknown>;
    assert.deepEqual(Object.keys(meta).sort(), ['pad', 'small']);
  });

  it('a replay refuses it again though an operator removed what made it too large', async () => {
    const run = await env.client.start(sizes, { mode: 'b' });
    await env.waitFor(run, 'waiting', { timeout: '20s' });
    await env.client.setMetadata(run.id, { pad: 'p'.repeat(600_000) });
    await env.client.signal(run.id, 'go', null);
    await waitFor(async () => (await calls(run.id)).length === 1, { what: 'the refused call recorded' });
    await env.waitFor(run, 'waiting', { timeout: '20s' });
    await env.client.setMetadata(run.id, { pad: null });
    await env.client.signal(run.id, 'again', null);
    assert.deepEqual(await run.result({ timeout: '20s' }), ['PayloadTooLargeError']);
  });

  it('the size is measured on the run\'s metadata as claimed: a field the run set and an operator removed is not counted again', async () => {
    const run = await env.client.start(sizes, { mode: 'c' });
    await env.waitFor(run, 'waiting', { timeout: '20s' });
    await env.client.setMetadata(run.id, { a: null });
    await env.client.signal(run.id, 'go', null);
    assert.deepEqual(await run.result({ timeout: '20s' }), ['set', 'set']);
    assert.deepEqual(Object.keys((await env.client.get(run.id))?.metadata as object), ['b']);
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

  it('refuses a foreign_id PostgreSQL could not index (over 512 characters, or an object) from every writer with a typed error, changing nothing', async () => {
    const long = 'f'.repeat(3_200);
    const before = await env.pool.query('select count(*)::int as n from trellis.runs');
    await assert.rejects(env.client.start(order, { tenant: 'x' }, { metadata: { foreign_id: long } }), ValidationError);
    await assert.rejects(env.client.start(order, { tenant: 'x' }, { metadata: { foreign_id: [1] } }), ValidationError);
    const sqlCode = async (text: string, values: unknown[]) => env.pool.query(text, values).then(() => 'ok', (e: { code?: string; message: string }) => `${e.code}: ${e.message}`);
    assert.match(await sqlCode(`select trellis.run_start('md-order', '{"tenant":"x"}', jsonb_build_object('metadata', jsonb_build_object('foreign_id', $1::text)))`, [long]),
      /^TR001: the foreign_id of metadata must be a string of at most 512 characters/);
    assert.deepEqual((await env.pool.query('select count(*)::int as n from trellis.runs')).rows, before.rows, 'nothing started');
    const run = await env.client.start(order, { tenant: 'x' }, { metadata: { foreign_id: '😀'.repeat(512) } });
    await env.waitFor(run, 'waiting', { timeout: '20s' });
    await assert.rejects(env.client.setMetadata(run.id, { foreign_id: long }), ValidationError);
    assert.match(await sqlCode(`select trellis.run_set_metadata($1, jsonb_build_object('foreign_id', $2::text))`, [run.id, long]), /^TR001: the foreign_id of a metadata patch/);
    assert.match(await sqlCode(`select trellis.run_set_metadata($1, '{"foreign_id": {"a": 1}}')`, [run.id]), /^TR001: the foreign_id of a metadata patch/);
    assert.equal((await env.client.get(run.id))?.metadata.foreign_id, '😀'.repeat(512), 'unchanged: 512 characters (of 2 UTF-16 units each) are taken');
    await env.client.setMetadata(run.id, { foreign_id: 12345 });
    assert.equal((await env.client.get(run.id))?.metadata.foreign_id, 12345);
    await env.client.cancel(run.id);
    // Checked as it is written: an undefined foreign_id is dropped (an optional id), a Date stored as its ISO text.
    const optional = await env.client.start(order, { tenant: 'y' }, { metadata: { foreign_id: undefined, source: 'web' } });
    assert.deepEqual((await env.client.get(optional.id))?.metadata, { source: 'web' });
    const dated = await env.client.start(order, { tenant: 'y' }, { metadata: { foreign_id: new Date(0) } as never });
    assert.equal((await env.client.get(dated.id))?.metadata.foreign_id, '1970-01-01T00:00:00.000Z');
    for (const r of [optional, dated]) await env.client.cancel(r.id);
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
    // trellis show: the metadata as it is, and each metadata call's patch.
    const shown = await cli('show', run.id);
    assert.match(shown.out, /^metadata {2}\{"tenant":"cli","ticket":"OPS-2","reviewedBy":"ada"\}$/m);
    assert.match(shown.out, /metadata +metadata +completed .*set \{"stage":"paid","tenant":"cli"\}/);
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
