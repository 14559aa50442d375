/**
 * Step progress (step.saveProgress / step.progress): details a step saves
 * reach its next attempt — after a failed attempt, and after the run was
 * parked and resumed — fenced by the lease; many saves between two flushes
 * are one write of the newest; bad saves are refused and save nothing.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { z } from 'zod';
import { captureIo } from '../../src/cli/io.ts';
import { main } from '../../src/cli/main.ts';
import { createTestEnv, type TestEnv } from '../../src/testing/env.ts';
import type { StepContext } from '../../src/workflow/context.ts';
import { defineWorkflow } from '../../src/workflow/define.ts';

/** Items each attempt processed, by run id (attempt → items). */
const processed = new Map<string, number[][]>();

/** Processes items 0..n-1, saving progress after each; the first attempt fails after `failAt` items. */
const batch = defineWorkflow({ name: 'sp-batch', input: z.object({ n: z.number(), failAt: z.number() }) }, async (ctx, { n, failAt }) => {
  return ctx.step('process', async (step) => {
    const seen = (processed.get(ctx.runId) ?? []);
    processed.set(ctx.runId, seen);
    const mine: number[] = [];
    seen.push(mine);
    const from = (step.progress as { next: number } | undefined)?.next ?? 0;
    for (let i = from; i < n; i++) {
      if (step.attempt === 1 && i === failAt) throw new Error(`worker hiccup at item ${i}`);
      mine.push(i);
      await step.saveProgress({ next: i + 1 });
    }
    return { from, progress: step.progress };
  }, { retry: { maxAttempts: 3, initialDelay: 10 } });
});

/** Fails its step once with pauseAfter 1 (parked), then resumes where it got to. */
const parked = defineWorkflow({ name: 'sp-parked', input: z.object({}), pauseAfter: 1 }, async (ctx) => {
  return ctx.step('work', async (step) => {
    if (step.attempt === 1) {
      await step.saveProgress({ page: 7 });
      throw new Error('upstream down');
    }
    return step.progress;
  });
});

/** Many saves without awaiting each: all resolve, the newest is what is kept. */
const burst = defineWorkflow({ name: 'sp-burst', input: z.object({}) }, async (ctx) => {
  await ctx.step('burst', async (step) => {
    // 25,000 saves replacing each other in the committer's queue (settled as one flat list: a
    // chain of 20,000 or more closures overflowed the stack when settled, found by an audit).
    await Promise.all(Array.from({ length: 25_000 }, (_, i) => step.saveProgress({ i })));
    return step.progress;
  });
  // The step's record: completed, its output what the body returned.
  return 'done';
});

let kept: StepContext | undefined;
const outcome = async (p: () => Promise<unknown>) => {
  try {
    await p();
    return 'saved';
  } catch (error) {
    return (error as Error).constructor.name;
  }
};

/** Every way to get saveProgress wrong. */
const misuse = defineWorkflow({ name: 'sp-misuse', input: z.object({}) }, async (ctx) => {
  const inside = await ctx.step('inside', async (step) => {
    kept = step;
    return [
      await outcome(() => step.saveProgress(() => 1)),
      await outcome(() => step.saveProgress(10n)),
      await outcome(() => step.saveProgress('x'.repeat(2_000_000))),
      await outcome(() => step.saveProgress({ ok: true })),
      JSON.stringify(step.progress),
    ];
  });
  const late = await outcome(() => kept!.saveProgress({ late: true }));
  const inTx = await ctx.transaction('tx', async (step) => [await outcome(() => step.saveProgress({ a: 1 })), String(step.progress)]);
  return { inside, late, inTx };
});

let env: TestEnv;
before(async () => {
  env = await createTestEnv({ workflows: [batch, parked, burst, misuse] });
});
after(() => env.close());

describe('step progress', () => {
  it('a retry starts where the failed attempt got to: step.progress holds its newest save', async () => {
    const run = await env.client.start(batch, { n: 6, failAt: 4 });
    assert.deepEqual(await run.result({ timeout: '20s' }), { from: 4, progress: { next: 6 } });
    assert.deepEqual(processed.get(run.id), [[0, 1, 2, 3], [4, 5]], 'no item processed twice');
    const { rows } = await env.pool.query(`select status, attempts from trellis.steps where run_id = $1 and name = 'process'`, [run.id]);
    assert.deepEqual(rows, [{ status: 'completed', attempts: 2 }]);
  });

  it('the progress survives the run being parked and resumed by an operator', async () => {
    const run = await env.client.start(parked, {});
    await env.waitFor(run, 'paused', { timeout: '20s' });
    const { rows: [marker] } = await env.pool.query(`select status, output from trellis.steps where run_id = $1 and name = 'work'`, [run.id]);
    assert.deepEqual([marker.status, marker.output.progress], ['retrying', { page: 7 }], 'the park record keeps the progress');
    const io = captureIo({ DATABASE_URL: env.url });
    assert.equal(await main(['show', run.id], io), 0, io.stderr);
    assert.match(io.stdout, /work +retrying .*upstream down; progress \{"page":7\}/, 'trellis show prints it');
    await env.client.resume(run.id);
    assert.deepEqual(await run.result({ timeout: '20s' }), { page: 7 });
  });

  it('many saves at once all resolve, and the newest is kept', async () => {
    const run = await env.client.start(burst, {});
    // (A save replaced in the queue by a newer one settles with it: each of the 25,000 resolves.)
    assert.equal(await run.result({ timeout: '20s' }), 'done');
    const { rows: [step] } = await env.pool.query(`select status, output from trellis.steps where run_id = $1 and name = 'burst'`, [run.id]);
    assert.deepEqual([step.status, step.output], ['completed', { i: 24_999 }]);
  });

  it('refuses what is not JSON, too large, after the attempt ended or in a transaction, saving nothing', async () => {
    const run = await env.client.start(misuse, {});
    assert.deepEqual(await run.result({ timeout: '20s' }), {
      inside: ['ValidationError', 'ValidationError', 'PayloadTooLargeError', 'saved', '{"ok":true}'],
      late: 'ValidationError',
      inTx: ['ValidationError', 'undefined'],
    });
  });
});
