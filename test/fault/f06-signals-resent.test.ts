/**
 * F6: signals sent 1-5 times with one id (repeats racing each other and the
 * run's next signal) to runs waiting for two signals, while the worker
 * processes' connections are terminated every 1-2 s. Quick: 100 runs; full:
 * 1,000. Invariants: signals consumed twice 0, lost 0 (every run got
 * payloads [1, 2] once each), runs failed 0.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { between, scale, sleep } from './harness/harness.ts';
import { assertClean, checkInvariants } from './harness/invariants.ts';
import { runMixedLoad } from './harness/load.ts';
import { useHarness } from './harness/fixture.ts';

const RUNS = scale(100, 1000);

const fx = useHarness({ LEASE_MS: '5000', POLL_MS: '250' });

describe('F6: signals resent with one id', () => {
  it(`consumes each signal once and loses none (${RUNS} runs)`, async () => {
    await Promise.all([fx.h.spawn(), fx.h.spawn()]);
    let stop = false;
    let terminated = 0;
    const killer = (async () => {
      while (!stop) {
        await sleep(between(1000, 2000));
        if (stop) break;
        const { rows } = await fx.db.pool.query(`select count(*)::int as n from (select pg_terminate_backend(pid) from pg_stat_activity
          where datname = current_database() and application_name like 'trellis-worker%') t`);
        terminated += rows[0].n;
      }
    })();
    let load;
    try {
      load = await runMixedLoad(fx.h, { steps: 0, timers: 0, signals: RUNS, rate: scale(40, 40) });
      await fx.h.waitAllEnded({ timeout: scale(120_000, 600_000) });
    } finally {
      stop = true;
      await killer;
    }
    const report = await checkInvariants(fx.db.pool);
    const { rows: [got] } = await fx.db.pool.query(`select count(*)::int as n from trellis.runs where output->'got' = '[1,2]'`);
    console.log(`# F6 ${scale('quick', 'full')}: ${RUNS} runs, ${load.sends} sends for ${RUNS * 2} signals ` +
      `(${load.repeatsDropped} repeats dropped), ${terminated} worker connections terminated; runs that got [1,2]: ${got.n}; ` +
      `consumed twice ${report.signalsConsumedTwice}, lost ${report.signalsLost}`);
    assert.equal(got.n, RUNS);
    assert.equal(load.sends - load.repeatsDropped, RUNS * 2, 'every signal stored once');
    assertClean(report, 'F6');
    assert.deepEqual(fx.h.crashed(), [], 'no worker process died');
  });
});
