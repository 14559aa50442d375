/**
 * One payload measure in TypeScript and SQL: the bytes of the JSON text.
 * Small numbers take several times more room as binary jsonb than as text,
 * so a value measured one way and refused the other way used to re-run
 * forever.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { z } from 'zod';
import { WorkflowFailedError } from '../../src/errors.ts';
import { defineWorkflow } from '../../src/workflow/define.ts';
import { useEngine } from '../helpers/engine.ts';

const LIMIT = 2000;
const zeros = defineWorkflow({ name: 'zeros', input: z.object({ n: z.number(), step: z.boolean() }) }, async (ctx, { n, step }) =>
  step ? ctx.step('make', () => new Array(n).fill(0)) : new Array(n).fill(0));

/** Fails with an error larger than the limit, in a step (no retries) or in the workflow. */
const boom = defineWorkflow({ name: 'boom', input: z.object({ step: z.boolean() }) }, async (ctx, { step }) => {
  const fail = () => {
    throw new Error('e'.repeat(3000));
  };
  if (step) await ctx.step('explode', fail, { retry: { maxAttempts: 1 } });
  return fail();
});

const fx = useEngine({ workflows: [zeros, boom] }, { setUp: (db) => db.pool.query(`select trellis.setting_set('max_payload_bytes', $1::text::jsonb)`, [String(LIMIT)]) });

describe('payload size', () => {
  it('accepts a step result and output under the limit as text though far over it as binary jsonb', async () => {
    const { rows: [m] } = await fx.db.pool.query('select octet_length($1::jsonb::text) as text, pg_column_size($1::jsonb) as binary',
      [JSON.stringify(new Array(500).fill(0))]);
    assert.ok(m.text <= LIMIT && m.binary > LIMIT, `text ${m.text} bytes, binary ${m.binary} bytes`);
    const run = await fx.engine.client.start(zeros, { n: 500, step: true });
    assert.equal((await run.result({ timeout: '5s' })).length, 500);
    assert.equal((await fx.engine.client.history(run.id))[0]?.status, 'completed');
  });

  it('fails a run whose output is over the limit as stored text with payload_too_large within seconds, without re-running', async () => {
    // 800 zeros: 1601 bytes as compact JSON, 2400 as jsonb text: over the limit.
    const started = performance.now();
    const run = await fx.engine.client.start(zeros, { n: 800, step: false });
    await assert.rejects(run.result({ timeout: '5s' }), WorkflowFailedError);
    assert.ok(performance.now() - started < 5000);
    const row = await fx.engine.client.get(run.id);
    assert.equal((row?.error as { code?: string | undefined }).code, 'payload_too_large');
    assert.match((row?.error as { message: string }).message, /2400 bytes, over the limit of 2000/);
    assert.equal(row?.attempt, 1, 'it ran once');
  });

  it('records a failure whose error is larger than the limit: the run fails once, its error whole', async () => {
    for (const step of [false, true]) {
      const run = await fx.engine.client.start(boom, { step });
      await assert.rejects(run.result({ timeout: '10s' }), WorkflowFailedError);
      const row = await fx.engine.client.get(run.id);
      assert.equal(row?.attempt, 1, 'it ran once');
      assert.match((row?.error as { message: string }).message, /e{3000}/);
      if (step) assert.deepEqual((await fx.engine.client.history(run.id)).map((s) => [s.status, (s.error as { message: string }).message.length]), [['failed', 3000]]);
    }
  });

  it('fails a step whose result is over the limit for good (no retries), with the payload error as its cause', async () => {
    const run = await fx.engine.client.start(zeros, { n: 800, step: true });
    await assert.rejects(run.result({ timeout: '5s' }), WorkflowFailedError);
    const [step] = await fx.engine.client.history(run.id);
    assert.deepEqual([step?.status, step?.attempts, (step?.error as { code?: string | undefined }).code], ['failed', 1, 'payload_too_large']);
  });
});
