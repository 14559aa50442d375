/**
 * F7: worker processes whose clocks are 5 minutes fast and 5 minutes slow
 * (every Date in the process shifted), running durable sleeps and steps
 * longer than a heartbeat period. Trellis reads time from the database
 * (trellis.now() in SQL; ctx.now() from the claim's database time; leases
 * measured with a monotonic clock), so: timers early 0, leases stolen early
 * 0 (no run claimed twice: no process died), ctx.now() off the database
 * clock by more than a few seconds 0. Quick: 60 runs; full: 600.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { scale } from './harness/harness.ts';
import { assertClean, checkInvariants } from './harness/invariants.ts';
import { useHarness } from './harness/fixture.ts';

const RUNS = scale(60, 600);
const SKEW_MS = 5 * 60_000;

const fx = useHarness({ LEASE_MS: '2000', POLL_MS: '250' });

describe('F7: worker clocks skewed by ±5 minutes', () => {
  it('fires no timer early, steals no lease and records database time', async () => {
    await Promise.all([fx.h.spawn({ CLOCK_SKEW_MS: String(SKEW_MS) }), fx.h.spawn({ CLOCK_SKEW_MS: String(-SKEW_MS) })]);
    await fx.h.startMany('fh-timer', RUNS / 2, () => ({ ms: 1500 }));
    await fx.h.startMany('fh-steps', RUNS / 2, (n) => ({ n, ms: 1000 }));
    await fx.h.waitAllEnded({ timeout: scale(120_000, 600_000) });
    const report = await checkInvariants(fx.db.pool);
    const { rows: [f] } = await fx.db.pool.query(`select
        (select count(*) from trellis.runs where workflow = 'fh-steps' and attempt > 1)::int as stolen,
        (select count(*) from trellis.runs where workflow = 'fh-timer'
           and abs(extract(epoch from ((output->>'now')::timestamptz - finished_at))) > 5)::int as wrong_now,
        (select count(*) from public.effects where step = 'before'
           and abs(abs(extract(epoch from (to_timestamp((info->>'wall')::float8 / 1000) - at))) - 300) < 10)::int as skewed`);
    console.log(`# F7 ${scale('quick', 'full')}: ${RUNS} runs on workers at +5 min and -5 min (skew seen in ${f.skewed} of ${RUNS / 2} timer runs' ` +
      `step bodies); timers early ${report.timersEarly}, leases stolen early ${f.stolen}, ctx.now() off the database ${f.wrong_now}`);
    assert.ok(f.skewed > 0, 'the skew was in effect in the step bodies');
    assert.equal(f.stolen, 0, 'leases stolen early');
    assert.equal(f.wrong_now, 0, 'ctx.now() follows the database clock');
    assertClean(report, 'F7');
    assert.deepEqual(fx.h.crashed(), [], 'no worker process died');
  });
});
