/**
 * F10: poison steps among healthy runs. fh-poison's step throws, hangs past
 * its 500 ms timeout, returns a value JSON cannot store (a BigInt), or
 * crashes its worker process (SIGKILL of itself); pauseAfter 3 parks the
 * run (the dead letter). Figures: the most attempts any poison run made,
 * how each ended, and the healthy runs' throughput with poison beside them
 * against without (the issue asks for at least 80%; printed, not asserted:
 * this machine is shared; the crash poison starts after that batch). A step
 * that crashes its process records no failed attempt, so pauseAfter cannot
 * bound it: its lease expires instead, and after max_lease_expiries (default
 * 5) expiries in a row without checkpoint progress run_claim parks the run
 * with a LeaseExpiredError (sql/250_recovery.sql). Quick: 150 healthy runs, 3 poison runs of each
 * kind (1 crash); full: 1,000 healthy, 20 of each (5 crash).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { scale, sleep } from './harness/harness.ts';
import { assertClean, checkInvariants } from './harness/invariants.ts';
import { useHarness } from './harness/fixture.ts';

const HEALTHY = scale(150, 1000);
const EACH = scale(3, 20);
const CRASHES = scale(1, 5);

const fx = useHarness({ LEASE_MS: '2000', POLL_MS: '250' });

/** Seconds until every fh-steps run started since `since` completed. */
async function healthyBatch(offset: number): Promise<number> {
  const t0 = Date.now();
  await fx.h.startMany('fh-steps', HEALTHY, (n) => ({ n: offset + n }));
  for (;;) {
    const { rows } = await fx.db.pool.query(`select count(*)::int as n from trellis.runs where workflow = 'fh-steps' and status <> 'completed'`);
    if (rows[0].n === 0) return (Date.now() - t0) / 1000;
    await sleep(500);
    await sleep(100);
  }
}

describe('F10: poison steps', () => {
  it('bounds their attempts, parks them, and keeps healthy runs going', async () => {
    await Promise.all([fx.h.spawn(), fx.h.spawn()]);
    const alone = await healthyBatch(0);
    // Keep two workers up while crash poison kills them.
    let watching = true;
    let respawned = 0;
    const keeper = (async () => {
      while (watching) {
        if (fx.h.workers.filter((w) => w.alive()).length < 2) {
          respawned++;
          // A new process may claim the crashing run and die before it is ready.
          await fx.h.spawn().catch(() => undefined);
        }
        await sleep(100);
      }
    })();
    const poisonKinds = ['throw', 'hang', 'unstorable'] as const;
    for (const kind of poisonKinds) await fx.h.startMany('fh-poison', EACH, () => ({ kind }));
    const beside = await healthyBatch(HEALTHY);
    await fx.h.waitAllEnded({ pausedEnds: true, timeout: 60_000, what: 'the throw, hang and unstorable poison runs to end' });
    // Each crash costs a lease (2 s here): five of them park the run.
    await fx.h.startMany('fh-poison', CRASHES, () => ({ kind: 'crash' }));
    try {
      await fx.h.waitAllEnded({ pausedEnds: true, timeout: scale(60_000, 600_000) });
    } finally {
      watching = false;
      await keeper;
      const { rows: open } = await fx.db.pool.query(`select input->>'kind' as kind, status, attempt, failures,
        (select count(*) from public.effects e where e.run_id = r.id)::int as bodies,
        (select json_agg(json_build_object('status', s.status, 'attempts', s.attempts)) from trellis.steps s where s.run_id = r.id) as steps
        from trellis.runs r where workflow = 'fh-poison' and status not in ('paused', 'failed')`);
      if (open.length) console.log(`# F10 runs not parked: ${JSON.stringify(open).slice(0, 1500)}`);
    }

    const { rows } = await fx.db.pool.query<{ kind: string; status: string; runs: number; most: number; bodies: number }>(`
      select r.input->>'kind' as kind, r.status, count(*)::int as runs,
             max((select max(e.attempt) from public.effects e where e.run_id = r.id))::int as most,
             max((select count(*) from public.effects e where e.run_id = r.id))::int as bodies
        from trellis.runs r where r.workflow = 'fh-poison' group by 1, 2 order by 1, 2`);
    const ratio = alone / beside;
    console.log(`# F10 ${scale('quick', 'full')}: ${HEALTHY} healthy runs in ${alone.toFixed(1)} s alone, ${beside.toFixed(1)} s beside ` +
      `${EACH * 3} throw/hang/unstorable poison runs (throughput ${(100 * ratio).toFixed(0)}%); ${respawned} workers restarted after crashes; ` +
      rows.map((r) => `${r.kind}: ${r.runs} ${r.status}, highest attempt ${r.most}, most bodies run ${r.bodies}`).join('; '));
    for (const r of rows.filter((x) => x.kind !== 'crash')) {
      assert.ok(['paused', 'failed'].includes(r.status), `${r.kind} runs end parked or failed, not ${r.status}`);
      assert.ok(r.most <= 3, `${r.kind}: attempts bounded by pauseAfter (${r.most})`);
    }
    // The crash poison: parked (the dead letter) after 5 leases expired
    // without progress, its body run at most once per lease.
    const { rows: crashed } = await fx.db.pool.query<{ status: string; attempt: number; expiries: number; error: { name: string; message: string }; bodies: number }>(`
      select r.status, r.attempt, r.lease_expiries as expiries, r.error,
             (select count(*) from public.effects e where e.run_id = r.id)::int as bodies
        from trellis.runs r where r.workflow = 'fh-poison' and r.input->>'kind' = 'crash'`);
    assert.equal(crashed.length, CRASHES);
    for (const c of crashed) {
      assert.equal(c.status, 'paused', 'a crash poison run is parked');
      assert.equal(c.error?.name, 'LeaseExpiredError');
      assert.equal(c.error?.message, 'lease expired 5 times without progress: the step may crash its worker');
      assert.equal(c.expiries, 5);
      assert.ok(c.attempt <= 5 && c.bodies <= 5, `claimed at most 5 times (attempt ${c.attempt}, ${c.bodies} bodies run)`);
    }
    const { rows: parkedEvents } = await fx.db.pool.query(`select count(*)::int as n from trellis.events e join trellis.runs r on r.id = e.run_id
      where r.input->>'kind' = 'crash' and e.kind = 'paused' and e.body->>'reason' = 'lease expired'`);
    assert.equal(parkedEvents[0].n, CRASHES, 'one paused event per crash poison run');
    // No healthy run was parked by the crashes around it.
    const { rows: healthy } = await fx.db.pool.query(`select count(*)::int as n from trellis.runs where workflow = 'fh-steps' and status <> 'completed'`);
    assert.equal(healthy[0].n, 0);
    assert.equal(rows.reduce((n, r) => n + r.runs, 0), EACH * 3 + CRASHES);
    assertClean(await checkInvariants(fx.db.pool, { mayFail: ['fh-poison'], mayPause: ['fh-poison'] }), 'F10');
  });
});
