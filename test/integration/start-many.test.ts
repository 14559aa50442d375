/**
 * client.startMany end to end: many runs of one workflow in one statement,
 * each with its own options, run by a worker; inside the caller's
 * transaction; bad input refused naming the item, with nothing started.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { z } from 'zod';
import { ValidationError } from '../../src/errors.ts';
import { createTestEnv, type TestEnv } from '../../src/testing/env.ts';
import { defineWorkflow } from '../../src/workflow/define.ts';

const double = defineWorkflow({ name: 'double', input: z.object({ n: z.number() }) }, async (ctx, { n }) => ctx.step('double', () => n * 2));

let env: TestEnv;
before(async () => {
  env = await createTestEnv({ workflows: [double] });
});
after(() => env.close());
const count = async () => (await env.pool.query<{ n: number }>('select count(*)::int as n from trellis.runs')).rows[0]!.n;

describe('client.startMany', () => {
  it('starts every item, in order, each with its own options, and the worker runs them', async () => {
    const handles = await env.client.startMany(double, [
      { input: { n: 1 } },
      { input: { n: 2 }, key: 'two', priority: 3 },
      { input: { n: 3 }, metadata: { source: 'import' }, timeLimit: '1 hour' },
    ]);
    assert.equal(handles.length, 3);
    assert.deepEqual(await Promise.all(handles.map((h) => h.result({ timeout: '20s' }))), [2, 4, 6]);
    const runs = await Promise.all(handles.map((h) => env.client.get(h.id)));
    assert.deepEqual(runs.map((r) => [r!.key, r!.priority, r!.metadata, r!.deadline !== null]),
      [[null, 0, {}, false], ['two', 3, {}, false], [null, 0, { source: 'import' }, true]]);
    // A repeated key gives the existing run.
    const [again] = await env.client.startMany(double, [{ input: { n: 9 }, key: 'two' }]);
    assert.equal(again!.id, handles[1]!.id);
    assert.deepEqual(await env.client.startMany(double, []), []);
  });

  it('commits or rolls back with the caller\'s transaction', async () => {
    const before = await count();
    const c = await env.pool.connect();
    try {
      await c.query('begin');
      await env.client.startMany(double, [{ input: { n: 5 } }, { input: { n: 6 } }], { tx: c });
      await c.query('rollback');
      assert.equal(await count(), before);
    } finally {
      c.release();
    }
  });

  it('refuses bad input naming the item, and starts nothing', async () => {
    const before = await count();
    const bad: [unknown, RegExp][] = [
      [[{ input: { n: 1 } }, { input: { n: 'x' } }], /^run 2: input of double/],
      [[{ input: { n: 1 }, timelimit: '1h' }], /^run 1: unknown start option "timelimit"/],
      [[{ input: { n: 1 }, runAt: '2027-02-30' }], /^run 1: runAt "2027-02-30" is not a date/],
      [[null], /^run 1: a run is an object/],
      [Array.from({ length: 1001 }, (_, n) => ({ input: { n } })), /at most 1000 runs/],
      ['not an array', /takes an array/],
    ];
    for (const [runs, message] of bad) {
      await assert.rejects(env.client.startMany(double, runs as never), (e: unknown) => {
        assert.ok(e instanceof ValidationError, String(e));
        assert.match((e as Error).message, message);
        return true;
      });
    }
    await assert.rejects(env.client.startMany(double, [{ input: { n: 1 } }], { tx: undefined, bogus: 1 } as never), ValidationError);
    // By name: SQL checks the input shape and names the item.
    await assert.rejects(env.client.startMany('double', [{ input: { n: 1 } }, { input: {} }]), (e: unknown) =>
      e instanceof ValidationError && /^run 2: input of double version 1 does not match its schema/.test((e as Error).message));
    assert.equal(await count(), before);
  });
});
