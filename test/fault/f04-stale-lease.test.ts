/**
 * F4: a lease expiring under a worker that is still running. A worker
 * process is SIGSTOPped in the middle of slow steps for three leases, so
 * another process takes its runs over, then SIGCONTed; and runs whose step
 * blocks its process's event loop for three leases on the first attempt.
 * The stale worker finishes its step bodies afterwards and tries to write:
 * every such write must be refused (the checker's staleWrites: a step
 * written by a process after another execution of it began). Quick: 1
 * stop, 3 blocked runs; full: 5 stops, 20 blocked runs.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { freshDatabase, type TestDatabase } from '../helpers/db.ts';
import { waitFor } from '../helpers/wait.ts';
import { Harness, scale, sleep } from './harness/harness.ts';
import { assertClean, checkInvariants } from './harness/invariants.ts';

const LEASE_MS = 2000;
const STOPS = scale(1, 5);
const BLOCKED = scale(3, 20);

let db: TestDatabase;
let h: Harness;
before(async () => {
  db = await freshDatabase();
  h = new Harness(db.url, db.pool, { env: { LEASE_MS: String(LEASE_MS), POLL_MS: '250', CONCURRENCY: '20' } });
  await h.setUp();
});
after(async () => {
  for (const w of h?.workers ?? []) if (w.alive()) w.child.kill('SIGCONT');
  await h?.close();
  await db?.close();
});

describe('F4: a lease expiring under a worker still running', () => {
  it('accepts no write from the worker that lost the lease (SIGSTOP, a blocked event loop)', async () => {
    const [a, b] = await Promise.all([h.spawn(), h.spawn()]);
    let takenOver = 0;
    for (let round = 0; round < STOPS; round++) {
      const victim = round % 2 === 0 ? a! : b!;
      const other = victim === a ? b! : a!;
      // The other process is stopped while the victim claims these runs
      // (else it could take all 20 and the victim none: a full run once
      // waited its whole minute for that), and continued once the victim is
      // inside their bodies, to take them over.
      other.child.kill('SIGSTOP');
      await h.startMany('fh-steps', 20, (n) => ({ n, ms: 1500 }));
      // Wait until the victim is inside step bodies it has not checkpointed.
      const held = await waitFor(async () => {
        const { rows } = await db.pool.query<{ id: string }>(`select r.id from trellis.runs r
          where r.lease_owner = $1 and r.status = 'running'
            and exists (select 1 from public.effects e where e.run_id = r.id and e.pid = $2
                          and not exists (select 1 from trellis.steps s where s.run_id = r.id and s.name = e.step and s.status = 'completed'))`,
        [victim.id, victim.pid]);
        return rows.length ? rows.map((r) => r.id) : undefined;
      }, { what: 'the victim inside a step body', timeout: 60_000 });
      other.child.kill('SIGCONT');
      const { rows: [stopAt] } = await db.pool.query('select clock_timestamp() as at');
      victim.child.kill('SIGSTOP');
      await sleep(3 * LEASE_MS);
      const { rows: [contAt] } = await db.pool.query('select clock_timestamp() as at');
      if (process.env.F4_DEBUG) console.log(`# stop ${victim.pid} at ${stopAt.at.toISOString()}, cont at ${contAt.at.toISOString()}`);
      const { rows: moved } = await db.pool.query<{ id: string }>(
        `select id from trellis.runs where id = any($1::uuid[]) and coalesce(lease_owner, '') <> $2`, [held, victim.id]);
      takenOver += moved.length;
      victim.child.kill('SIGCONT');
      await h.waitAllEnded({ timeout: 60_000 });
    }

    // A step that blocks the event loop of its process (a third one) for three leases.
    // The other two processes are stopped while the blocker claims these
    // runs (else they could take all of them and nothing would block), and
    // continued once it is inside a blocking body, to take its runs over.
    const c = await h.spawn({ BLOCKER: '1' });
    a!.child.kill('SIGSTOP');
    b!.child.kill('SIGSTOP');
    const blocked = await h.startMany('fh-steps', BLOCKED, (n) => ({ n, block: 3 * LEASE_MS }));
    await waitFor(async () => {
      const { rows } = await db.pool.query(`select 1 from public.effects where run_id = any($1::uuid[]) and step = 'two' and pid = $2 limit 1`,
        [blocked, c.pid]);
      return rows.length > 0 || undefined;
    }, { what: 'the blocker inside a blocking step body', timeout: 60_000 });
    a!.child.kill('SIGCONT');
    b!.child.kill('SIGCONT');
    await h.waitAllEnded({ timeout: scale(120_000, 300_000) });
    const { rows: [loop] } = await db.pool.query<{ n: number }>(`select count(distinct r.id)::int as n from trellis.runs r
      join public.effects e on e.run_id = r.id and e.step = 'two' and e.pid = $2
      where r.id = any($1::uuid[]) and r.attempt > 1`, [blocked, c.pid]);

    const report = await checkInvariants(db.pool);
    console.log(`# F4 ${scale('quick', 'full')}: ${STOPS} SIGSTOPs of ${3 * LEASE_MS} ms (lease ${LEASE_MS} ms), ${takenOver} runs taken over, ` +
      `${BLOCKED} runs blocking their event loop ${3 * LEASE_MS} ms, ${loop!.n} taken over from the blocked process; ` +
      `stale writes accepted ${report.staleWrites}; report ${JSON.stringify(report)}`);
    if (report.completedStepsRerun && process.env.F4_DEBUG) {
      const { rows } = await db.pool.query(`select distinct e.run_id from public.effects e join trellis.steps s
        on s.run_id = e.run_id and s.name = e.step and s.status = 'completed' and e.at > s.finished_at`);
      for (const { run_id } of rows.slice(0, 3)) {
        console.log('# run', run_id, JSON.stringify((await db.pool.query('select attempt, status from trellis.runs where id = $1', [run_id])).rows));
        console.log('# effects', JSON.stringify((await db.pool.query('select step, attempt, pid, at, at_earliest from public.effects where run_id = $1 order by at', [run_id])).rows));
        console.log('# steps', JSON.stringify((await db.pool.query('select seq, name, status, attempts, output, started_at, finished_at from trellis.steps where run_id = $1 order by seq', [run_id])).rows));
      }
    }
    assert.ok(takenOver > 0, 'runs of a stopped worker were taken over');
    assert.ok(loop!.n > 0, 'runs of a blocked worker were taken over');
    assert.equal(report.staleWrites, 0, 'stale writes accepted');
    assertClean(report, 'F4');
  });
});
