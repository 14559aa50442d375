/**
 * F1: worker processes SIGKILLed at random under a stream of three-step
 * runs started at a steady rate below capacity (so a delay is recovery, not
 * queueing); a new process, started just before, replaces each one. Quick: 900 runs at 60/s, 4
 * kills; full (npm run test:faults): 10,000 runs at 50/s, 50 kills. Invariants: runs lost 0,
 * failed 0, completed steps run again 0; the recovery time of every run a
 * dead process held is printed (bound: lease + poll + 1 s).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { waitFor } from '../helpers/wait.ts';
import { between, scale, sleep } from './harness/harness.ts';
import { assertClean, checkInvariants } from './harness/invariants.ts';
import { type Kill, recoveryTimes } from './harness/recovery.ts';
import { useHarness } from './harness/fixture.ts';

const RUNS = scale(900, 10_000);
const KILLS = scale(4, 50);
const LEASE_MS = 2000;
const POLL_MS = 250;
const RATE = scale(60, 50);

const fx = useHarness({ LEASE_MS: String(LEASE_MS), POLL_MS: String(POLL_MS), CONCURRENCY: '50' });

describe('F1: worker processes SIGKILLed at random', () => {
  it(`loses no run, fails none and runs no completed step again (${RUNS} runs, up to ${KILLS} kills)`, async () => {
    await Promise.all([fx.h.spawn(), fx.h.spawn(), fx.h.spawn()]);
    const started = Date.now();
    const starting = fx.h.startPaced('fh-steps', RUNS, (n) => ({ n, ms: 20 }), RATE);
    const kills: Kill[] = [];
    let done = false;
    const ended = starting.then(() => fx.h.waitAllEnded({ timeout: scale(120_000, 900_000) })).finally(() => (done = true));
    // The first kill as soon as a worker holds a run (whatever the machine's speed), the rest at random.
    const holder = await waitFor(async () => {
      const { rows } = await fx.db.pool.query<{ owner: string }>(`select lease_owner as owner from trellis.runs where status = 'running' limit 1`);
      return fx.h.live().find((w) => w.id === rows[0]?.owner);
    }, { what: 'a worker holding a run', timeout: 60_000 });
    kills.push(await fx.h.kill(holder));
    await fx.h.spawn();
    while (!done && kills.length < KILLS) {
      // The replacement starts first (during the pause), so its start-up
      // (CPU on a small machine) is not counted in the recovery of the
      // victim's runs, and a slow start-up does not space the kills out.
      const live = fx.h.live();
      await Promise.all([sleep(scale(between(1000, 2000), between(2000, 4500))), fx.h.spawn()]);
      if (done) break;
      kills.push(await fx.h.kill(live[between(0, live.length - 1)]!));
    }
    await ended;
    const seconds = (Date.now() - started) / 1000;
    const report = await checkInvariants(fx.db.pool);
    const recovery = await recoveryTimes(fx.db.pool, kills);
    const bound = LEASE_MS + POLL_MS + 1000;
    const over = recovery.filter((ms) => ms > bound).length;
    console.log(`# F1 ${scale('quick', 'full')}: ${RUNS} runs in ${seconds.toFixed(1)} s, ${kills.length} SIGKILLs, ` +
      `${recovery.length} runs held by a killed process; recovery max ${recovery[0] ?? 0} ms, ` +
      `over lease+poll+1s (${bound} ms): ${over}; report ${JSON.stringify(report)}`);
    assert.ok(kills.length >= 1, 'at least one worker process was killed');
    assert.equal(report.runs, RUNS);
    assertClean(report, 'F1');
    assert.ok(recovery.every(Number.isFinite), 'every run a killed process held moved again');
  });
});
