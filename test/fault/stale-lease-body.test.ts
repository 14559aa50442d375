/**
 * Found by the fault harness (F4): a worker process stopped (SIGSTOP) while
 * a run's checkpoint was on its way, whose lease another process took over
 * meanwhile, ran the run's next step body when it was continued: the
 * checkpoint's answer arrived before anything told it the lease was gone,
 * so a step another process had already completed ran again. A step body
 * must not begin once the worker's own view of the lease has run out.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { freshDatabase, type TestDatabase } from '../helpers/db.ts';
import { waitFor } from '../helpers/wait.ts';
import { Harness } from './harness/harness.ts';

let db: TestDatabase;
let h: Harness;
before(async () => {
  db = await freshDatabase();
  h = new Harness(db.url, db.pool, { env: { LEASE_MS: '2000', POLL_MS: '250' } });
  await h.setUp();
});
after(async () => {
  for (const w of h?.workers ?? []) if (w.alive()) w.child.kill('SIGCONT');
  await h?.close();
  await db?.close();
});

describe('a worker continued after its lease was taken over', () => {
  it('does not begin the next step body of the run it lost', async () => {
    const a = await h.spawn();
    const [run] = await h.startMany('fh-steps', 1, () => ({ n: 1, ms: 700 }));
    await waitFor(async () => (await db.pool.query(`select 1 from public.effects where run_id = $1 and step = 'one'`, [run])).rowCount,
      { what: "step one's body on A" });
    // Its attempt-started marker is written beside the body, not before it:
    // wait until it is committed, so the checkpoint held below is step
    // one's completion (a held marker would leave step one unrecorded, and
    // B would rightly run it again).
    await waitFor(async () => (await db.pool.query(`select 1 from trellis.steps where run_id = $1 and name = 'one' and status = 'running'`, [run])).rowCount,
      { what: "step one's running marker" });
    // Hold step one's checkpoint: lock the run's row until A's checkpoint_apply waits for it.
    const locker = new pg.Client({ connectionString: db.url });
    await locker.connect();
    await locker.query('begin');
    await locker.query('select 1 from trellis.runs where id = $1 for update', [run]);
    await waitFor(async () => (await db.pool.query(`select 1 from pg_stat_activity where datname = current_database()
        and wait_event_type = 'Lock' and query like '%checkpoint_apply%'`)).rowCount, { what: "A's checkpoint waiting on the lock" });
    a.child.kill('SIGSTOP');
    await locker.query('commit'); // A's checkpoint commits on the server; A is stopped and does not see the answer
    await locker.end();
    // Another process takes the run over once the lease expires and completes it.
    const b = await h.spawn();
    await waitFor(async () => (await db.pool.query(`select 1 from trellis.runs where id = $1 and status = 'completed'`, [run])).rowCount,
      { what: 'B to complete the run', timeout: 30_000 });
    b.child.kill('SIGTERM');
    await b.exited;
    const { rows: [cont] } = await db.pool.query<{ at: Date }>('select clock_timestamp() as at');
    a.child.kill('SIGCONT');
    // A has handled what was waiting for it once it sends a new statement (its next poll; B is gone), then stops gracefully.
    await waitFor(async () => (await db.pool.query(`select 1 from pg_stat_activity where datname = current_database()
        and application_name like 'trellis-worker%' and query_start > $1`, [cont!.at])).rowCount, { what: 'A to run again' });
    a.child.kill('SIGTERM');
    await a.exited;
    const { rows } = await db.pool.query<{ step: string; worker: string }>(
      'select step, worker from public.effects where run_id = $1 order by at', [run]);
    assert.deepEqual(rows.filter((r) => r.worker === a.id).map((r) => r.step), ['one'], 'A ran no body after it lost the lease');
    assert.deepEqual(rows.filter((r) => r.worker === b.id).map((r) => r.step), ['two', 'three']);
  });
});
