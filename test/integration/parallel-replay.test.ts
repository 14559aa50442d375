/**
 * Replaying Promise.all branches of sequential steps on real Postgres: the
 * call numbers follow the order in which results reached the workflow code,
 * so a replay must hand recorded results back in that order (delivery order,
 * docs/decisions/0010-delivery-order.md). Each workflow runs 3 branches of 3
 * steps whose durations make the branches finish out of creation order; the
 * last step of the third branch fails once with a short retry, so the next
 * claim replays the run from the top with most of the history recorded.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { z } from 'zod';
import { defineWorkflow } from '../../src/workflow/define.ts';
import { useEngine } from '../helpers/engine.ts';

/** Milliseconds of step s of branch i: branch 1 passes branch 0 at once, branch 2 soon after. */
const DURATIONS = [[150, 10, 10], [10, 60, 10], [40, 10, 50]];
const bodies = new Map<string, number>();

function grid(name: string, stepName: (branch: number, step: number) => string) {
  return defineWorkflow({ name, input: z.object({ tag: z.string() }) }, async (ctx, { tag }) =>
    Promise.all([0, 1, 2].map(async (i) => {
      let value = '';
      for (let s = 0; s < 3; s++) {
        const prev = value;
        value = await ctx.step(stepName(i, s), async ({ attempt }) => {
          const key = `${tag}:${i}${s}`;
          bodies.set(key, (bodies.get(key) ?? 0) + 1);
          await sleep(DURATIONS[i]?.[s] ?? 0);
          if (i === 2 && s === 2 && attempt === 1) throw new Error('transient');
          return prev ? `${prev}|${i}${s}` : `${i}${s}`;
        }, { retry: { initialDelay: 20, maxAttempts: 3, jitter: 0 } });
      }
      return value;
    })));
}

const named = grid('grid-named', (i, s) => `step-${s}-of-${i}`);
const samenames = grid('grid-same-names', (_i, s) => ['fetch', 'transform', 'save'][s] as string);

const fx = useEngine({ workflows: [named, samenames] });

const EXPECTED = ['00|01|02', '10|11|12', '20|21|22'];

async function runGrid(workflow: typeof named, tag: string) {
  const run = await fx.engine.client.start(workflow, { tag });
  assert.deepEqual(await run.result({ timeout: '20s' }), EXPECTED, 'each branch chained its own results');
  const got = await fx.engine.client.get(run.id);
  assert.ok((got?.attempt ?? 0) >= 2, 'the failed attempt forced a replay on a later claim');

  const { rows } = await fx.db.pool.query<{ seq: number; name: string; status: string; output: string; attempts: number; delivered: number | null }>(
    `select seq, name, status, output, attempts, delivered from trellis.steps where run_id = $1 order by seq`, [run.id]);
  assert.equal(rows.length, 9);
  assert.ok(rows.every((r) => r.status === 'completed' && r.delivered !== null), 'every call completed with a delivery number');
  // Which branch and step made each call, read from its output ('10|11' = branch 1, step 1).
  const made = rows.map((r) => (r.output.split('|').at(-1) as string));
  assert.deepEqual([...made].sort(), ['00', '01', '02', '10', '11', '12', '20', '21', '22']);
  assert.ok(made.indexOf('11') < made.indexOf('01'), `branch 1 passed branch 0 (call order ${made.join(' ')}), the case replay used to get wrong`);
  for (const r of rows) {
    const [i, s] = [Number(r.output.at(-2)), Number(r.output.at(-1))];
    assert.equal(r.output, (EXPECTED[i] as string).split('|').slice(0, s + 1).join('|'), `call #${r.seq} holds its own branch's chain`);
    assert.equal(r.attempts, i === 2 && s === 2 ? 2 : 1);
  }
  // Each step's result reached the code after the one before it in its branch.
  const byDelivery = [...rows].sort((a, b) => (a.delivered as number) - (b.delivered as number)).map((r) => r.output.slice(-2));
  for (const i of [0, 1, 2]) {
    const mine = byDelivery.filter((k) => k.startsWith(String(i)));
    assert.deepEqual(mine, [`${i}0`, `${i}1`, `${i}2`]);
  }
  assert.equal(new Set(rows.map((r) => r.delivered)).size, 9, 'delivery numbers are distinct');
  for (const i of [0, 1, 2]) {
    for (const s of [0, 1, 2]) assert.equal(bodies.get(`${tag}:${i}${s}`), i === 2 && s === 2 ? 2 : 1, `body ${i}.${s} runs once (the failed one twice)`);
  }
}

describe('replay of Promise.all branches of sequential steps', () => {
  it('replays 3 branches x 3 steps that finished out of creation order after a retry, with the right results and history', async () => {
    await runGrid(named, 'named');
  });

  it('hands every branch its own results when the branches use the same step names', async () => {
    await runGrid(samenames, 'same');
  });
});
