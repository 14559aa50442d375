/**
 * A signal sent a moment before a race's deadline passes (the signal and the
 * clock jump in separate statements, 0–5 ms apart, many runs at once) is the
 * winner's or stays buffered for the next wait: a race's loser never consumes
 * it. The jump also expires the leases of runs being executed, so some are
 * reclaimed half way and replayed from a history that holds the winner's
 * result but not yet the race's record (issue 9).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { z } from 'zod';
import { createTestEnv, type TestEnv } from '../../src/testing/env.ts';
import { defineWorkflow } from '../../src/workflow/define.ts';
import { adminUrl } from '../helpers/db.ts';

const go = 'go';
const deadlineRace = defineWorkflow({ name: 'race-signal-deadline', input: z.object({}) }, async (ctx) => {
  const first = await ctx.race({ signal: ctx.waitForSignal<string>(go), timer: ctx.sleep('deadline', '1 day') });
  const second = await ctx.waitForSignal<string>(go, { timeout: '1 hour' });
  return { winner: first.key, first: first.value ?? null, second };
});

const RUNS = 240;
const BATCH = 40;

let env: TestEnv;
before(async () => {
  env = await createTestEnv({ workflows: [deadlineRace], serverUrl: adminUrl(), concurrency: 50 });
});
after(() => env.close());

const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('a signal sent just before a race deadline', () => {
  it(`is consumed by the race's winner or by the next wait, never by a loser (${RUNS} runs, gaps 0-5 ms)`, async () => {
    const bad: string[] = [];
    let signalWins = 0;
    let timerWins = 0;
    for (let from = 0; from < RUNS; from += BATCH) {
      const runs = await Promise.all(Array.from({ length: BATCH }, () => env.start(deadlineRace, {})));
      await Promise.all(runs.map((r) => env.waitFor(r.id, 'waiting', { timeout: '90s' })));
      // Run i's signal goes out (i % 6) ms after the batch starts; the clock
      // jumps past every deadline at 5 ms, in its own statement.
      const sends = runs.map(async (r, i) => {
        await delay(i % 6);
        await env.signal(r, go, `payload-${r.id}`);
      });
      await delay(5);
      await env.advance('1 day 1 second');
      await Promise.all(sends);
      // Every race is decided; a second wait that got nothing times out.
      await Promise.all(runs.map((r) => env.waitFor(r.id, ['waiting', 'completed'], { timeout: '90s' })));
      await env.advance('2 hours');
      for (const r of runs) {
        const done = await env.waitFor(r.id, 'completed', { timeout: '90s' });
        const out = done.output as { winner: string; first: { payload?: string | undefined } | null; second: { timedOut: boolean; payload?: string | undefined } };
        const payload = `payload-${r.id}`;
        const history = await env.history(r.id);
        const race = history.find((s) => s.kind === 'race');
        const consumed = (await env.pool.query<{ consumed_seq: number | null }>(
          'select consumed_seq from trellis.signals where run_id = $1', [r.id])).rows;
        const waitAt0 = history.find((s) => s.seq === 0);
        const sleepAt1 = history.find((s) => s.seq === 1);
        const lost = (race?.output as { lost?: number[] | undefined } | undefined)?.lost ?? [];
        const problems: string[] = [];
        if (out.winner === 'signal') {
          signalWins++;
          if (out.first?.payload !== payload) problems.push('the winning signal wait did not get the payload');
          if (!out.second.timedOut) problems.push('the second wait got a signal nobody sent twice');
          if (consumed[0]?.consumed_seq !== 0) problems.push(`the signal was consumed by call ${consumed[0]?.consumed_seq}, not the winner`);
          if (!lost.includes(1)) problems.push('the losing timer is not recorded as lost');
          if (sleepAt1?.status === 'completed' && JSON.stringify(sleepAt1.output) !== '{"lost":true}') problems.push(`the losing timer completed: ${JSON.stringify(sleepAt1.output)}`);
        } else {
          timerWins++;
          if (out.second.payload !== payload) problems.push(`the signal was lost: the next wait got ${JSON.stringify(out.second)}`);
          if (consumed[0]?.consumed_seq !== 3) problems.push(`the signal was consumed by call ${consumed[0]?.consumed_seq}, not the next wait (#3)`);
          if (!lost.includes(0)) problems.push('the losing signal wait is not recorded as lost');
          if (waitAt0?.status === 'completed' && JSON.stringify(waitAt0.output) !== '{"lost":true}') problems.push(`the losing signal wait completed: ${JSON.stringify(waitAt0.output)}`);
        }
        if (problems.length) bad.push(`run ${r.id}: race ${JSON.stringify(race?.output)}: ${problems.join('; ')}`);
      }
    }
    assert.deepEqual(bad, [], `${bad.length} of ${RUNS} runs let a loser consume (signal won ${signalWins}, timer won ${timerWins})`);
    assert.equal(signalWins + timerWins, RUNS);
  });
});
