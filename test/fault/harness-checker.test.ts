/**
 * The fault harness itself: worker processes run every kind of harness
 * workflow to the end with nothing broken, and the invariant checker counts
 * each kind of broken promise planted in the tables afterwards (a checker
 * that saw nothing would pass every scenario).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { assertClean, checkInvariants } from './harness/invariants.ts';
import { useHarness } from './harness/fixture.ts';

const fx = useHarness({ LEASE_MS: '2000', POLL_MS: '200' });

describe('the fault harness and its invariant checker', () => {
  it('finds nothing wrong after a clean run of every workflow, then counts every planted violation', async () => {
    await fx.h.spawn();
    const steps = await fx.h.startMany('fh-steps', 3, (n) => ({ n }));
    const [timer] = await fx.h.startMany('fh-timer', 1, () => ({ ms: 300 }));
    const [signal] = await fx.h.startMany('fh-signal', 1, () => ({ waits: 2 }));
    for (let k = 1; k <= 2; k++) await fx.h.client.signal(signal!, 'go', { k }, { id: `s-${k}` });
    await fx.h.waitAllEnded({ timeout: 60_000 });
    const clean = await checkInvariants(fx.db.pool, { exactlyOnce: true });
    assertClean(clean, 'clean run');
    assert.equal(clean.runs, 5);

    const q = (sql: string, params: unknown[]) => fx.db.pool.query(sql, params);
    // A completed step's body ran again after its checkpoint committed.
    await q(`insert into public.effects (exec, run_id, workflow, step, attempt, pid)
             values (gen_random_uuid(), $1, 'fh-steps', 'two', 2, 1)`, [steps[0]]);
    // The step after a sleep began before the sleep was over, and again after it completed.
    await q(`update public.effects a set at = b.at from public.effects b
              where a.run_id = $1 and a.step = 'after' and b.run_id = $1 and b.step = 'before'`, [timer]);
    await q(`insert into public.effects (exec, run_id, workflow, step, attempt, pid, at)
             values (gen_random_uuid(), $1, 'fh-timer', 'after', 1, 1, clock_timestamp() + interval '1 hour')`, [timer]);
    // A step written by a process after another one began it again.
    await q(`insert into public.effects (exec, run_id, workflow, step, attempt, pid, at)
             select gen_random_uuid(), run_id, 'fh-steps', 'one', 2, 1, finished_at - interval '1 ms'
               from trellis.steps where run_id = $1 and name = 'one'`, [steps[0]]);
    // A body whose ledger row was written late (its `at` after the completion) though it can
    // have begun before it (`at_earliest`): run again, but not after the completion.
    await q(`insert into public.effects (exec, run_id, workflow, step, attempt, pid, at, at_earliest)
             select gen_random_uuid(), run_id, 'fh-steps', 'three', 2, 1, finished_at + interval '1 second', finished_at - interval '1 ms'
               from trellis.steps where run_id = $1 and name = 'three'`, [steps[1]]);
    // One signal's payload came to both waits.
    await q(`update trellis.runs set output = '{"got":[1,1]}' where id = $1`, [signal]);
    // A run of a workflow that may not fail, failed; another wrong output.
    await q(`update trellis.runs set status = 'failed' where id = $1`, [steps[1]]);
    await q(`update trellis.runs set output = '{"v":0}' where id = $1`, [steps[2]]);

    const report = await checkInvariants(fx.db.pool, { exactlyOnce: true });
    assert.deepEqual(report, {
      runs: 5, notEnded: 0, failedWrongly: 1, wrongOutput: 1,
      completedStepsRerun: 2, bodiesRunAgain: 4, notExactlyOnce: 4, staleWrites: 1,
      timersEarly: 1, timersFiredTwice: 1, signalsConsumedTwice: 1, signalsLost: 0,
    });
    assert.throws(() => assertClean(report, 'planted'), /invariants broken/);
  });
});
