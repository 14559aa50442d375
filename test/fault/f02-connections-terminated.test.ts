/**
 * F2: the worker processes' connections (pool and LISTEN) terminated with
 * pg_terminate_backend at random intervals under a mixed load (three-step
 * runs, durable sleeps, signals sent repeatedly). Quick: 300 runs, every
 * 0.5-1.5 s; full: 3,000 runs, every 5-10 s (the issue's figure). The
 * effects ledger's own connections are spared. Invariants: runs lost 0,
 * failed 0, completed steps run again 0, timers early or twice 0, signals
 * consumed twice or lost 0.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { between, scale, sleep } from './harness/harness.ts';
import { assertClean, checkInvariants } from './harness/invariants.ts';
import { runMixedLoad } from './harness/load.ts';
import { useHarness } from './harness/fixture.ts';

const RUNS = scale(300, 3000);

const fx = useHarness({ LEASE_MS: '5000', POLL_MS: '250' });

describe('F2: worker connections terminated at random', () => {
  it(`loses no run and fails none (${RUNS} runs)`, async () => {
    await Promise.all([fx.h.spawn(), fx.h.spawn(), fx.h.spawn()]);
    let stop = false;
    let rounds = 0;
    let terminated = 0;
    const killer = (async () => {
      while (!stop) {
        await sleep(scale(between(500, 1500), between(5000, 10_000)));
        if (stop) break;
        const { rows } = await fx.db.pool.query(`select count(*)::int as n from (
          select pg_terminate_backend(pid) from pg_stat_activity
           where datname = current_database() and application_name like 'trellis-worker%') t`);
        rounds++;
        terminated += rows[0].n;
      }
    })();
    const started = Date.now();
    let load;
    try {
      load = await runMixedLoad(fx.h, { steps: RUNS * 0.6, timers: RUNS * 0.2, signals: RUNS * 0.2, rate: scale(40, 30), sleepMs: 1000 });
      await fx.h.waitAllEnded({ timeout: scale(120_000, 600_000) });
    } finally {
      stop = true;
      await killer;
    }
    const report = await checkInvariants(fx.db.pool);
    console.log(`# F2 ${scale('quick', 'full')}: ${RUNS} runs in ${((Date.now() - started) / 1000).toFixed(1)} s, ` +
      `${rounds} rounds, ${terminated} worker connections terminated, ${load.sends} signal sends ` +
      `(${load.repeatsDropped} repeats dropped); report ${JSON.stringify(report)}`);
    assert.equal(report.runs, RUNS);
    assert.ok(terminated > 0, 'connections were terminated');
    assertClean(report, 'F2');
    assert.deepEqual(fx.h.crashed(), [], 'no worker process died');
  });
});
