/**
 * F13: workflow code changed under running runs. Worker processes with
 * version 1 of the code record the first step of each run and park it on a
 * durable sleep; they are stopped and processes with version 2 take over.
 * fh-change-x's version 2 renames the recorded first step (replay must
 * refuse: non-determinism); fh-change-y's version 2 changes only what comes
 * after its recorded calls (it must go on). Quick: 20 + 20 runs; full:
 * 200 + 200. Figures: non-determinism detected (x runs failed with it) and
 * false positives (y runs failed).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { waitFor } from '../helpers/wait.ts';
import { scale } from './harness/harness.ts';
import { assertClean, checkInvariants } from './harness/invariants.ts';
import { useHarness } from './harness/fixture.ts';

const EACH = scale(20, 200);
// Long enough for every run to be asleep at once before the code changes
// (at 2 s the full mode's first runs woke and ended on version 1 while the
// last ones were still starting).
const SLEEP_MS = scale(2000, 20_000);

const fx = useHarness({ LEASE_MS: '5000', POLL_MS: '250' });

describe('F13: workflow code changed under running runs', () => {
  it('detects every incompatible change and refuses no compatible one', async () => {
    const old = await Promise.all([fx.h.spawn({ CODE_VERSION: '1' }), fx.h.spawn({ CODE_VERSION: '1' })]);
    await fx.h.startMany('fh-change-x', EACH, () => ({ ms: SLEEP_MS }));
    await fx.h.startMany('fh-change-y', EACH, () => ({ ms: SLEEP_MS }));
    await waitFor(async () => (await fx.db.pool.query(`select count(*)::int as n from trellis.runs where status = 'waiting'`)).rows[0].n === 2 * EACH,
      { what: 'every run asleep after its first step', timeout: 60_000 });
    for (const w of old) w.child.kill('SIGTERM');
    await Promise.all(old.map((w) => w.exited));
    await Promise.all([fx.h.spawn({ CODE_VERSION: '2' }), fx.h.spawn({ CODE_VERSION: '2' })]);
    await fx.h.waitAllEnded({ timeout: scale(60_000, 300_000) });

    const { rows } = await fx.db.pool.query<{ workflow: string; status: string; output: unknown; error: { name?: string | undefined; message?: string | undefined } | null }>(
      'select workflow, status, output, error from trellis.runs');
    const x = rows.filter((r) => r.workflow === 'fh-change-x');
    const y = rows.filter((r) => r.workflow === 'fh-change-y');
    const detected = x.filter((r) => r.status === 'failed' && /determinis/i.test(JSON.stringify(r.error))).length;
    const falsePositives = y.filter((r) => r.status !== 'completed').length;
    console.log(`# F13 ${scale('quick', 'full')}: non-determinism detected ${detected}/${EACH} (${(100 * detected / EACH).toFixed(0)}%), ` +
      `false positives ${falsePositives}/${EACH}; x error: ${JSON.stringify(x[0]?.error).slice(0, 200)}`);
    assert.equal(detected, EACH, 'every run whose recorded call changed is refused');
    assert.equal(falsePositives, 0);
    assert.ok(y.every((r) => r.output === 'y2'), 'the y runs finished on version 2');
    assertClean(await checkInvariants(fx.db.pool, { mayFail: ['fh-change-x'] }), 'F13');
  });
});
