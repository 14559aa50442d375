/**
 * Poison runs that crash their worker (issue 10, F10): a lease that keeps
 * expiring without checkpoint progress parks the run (paused, the dead
 * letter) with a LeaseExpiredError after max_lease_expiries (default 5);
 * progress sets the count back; a step's attempt-started marker is not
 * progress, its saved progress is when it changed; a run that heartbeats is never parked. Time is the virtual
 * clock: each "crash" is a claim whose lease is let run out.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { useFreshDatabase } from '../helpers/database-fixture.ts';

const fx = useFreshDatabase({
  virtualClock: true,
  setUp: () => sql('select trellis.workflow_register($1)', [JSON.stringify([{ name: 'p', version: '1', queue: 'default' }])]),
});
const sql = (text: string, params: unknown[] = []) => fx.db.pool.query(text, params);

async function start(queue: string): Promise<string> {
  const { rows } = await sql(`select trellis.run_start('p', '{}', $1) as id`, [JSON.stringify({ queue })]);
  return rows[0].id;
}

/** Claim from `queue` with a 1 s lease; the claim first sweeps expired leases. */
async function claim(queue: string, worker = 'w'): Promise<{ id: string; lease_token: string; attempt: number } | undefined> {
  const { rows } = await sql(`select * from trellis.run_claim($1, $2, '{p}', '{1}', 10, '1 second')`, [worker, [queue]]);
  return rows[0];
}

/** A worker that claims the run and dies: its lease runs out. */
async function crashOnce(queue: string, mark?: (id: string, token: string, seq: number) => Promise<unknown>, seq = 0) {
  const got = await claim(queue);
  assert.ok(got, `claimed from ${queue}`);
  if (mark) await mark(got.id, got.lease_token, seq);
  await sql(`select trellis.clock_advance('2 seconds')`);
  return got;
}

async function run(id: string) {
  const { rows } = await sql('select status, attempt, lease_expiries, error from trellis.runs where id = $1', [id]);
  return rows[0];
}

const marker = (id: string, token: string, seq: number) =>
  sql(`select trellis.step_record($1, $2, $3, 'poison', 'running')`, [id, token, seq]);

describe('lease expiries without progress', () => {
  it('parks a run whose lease expired 5 times in a row, with a LeaseExpiredError and its paused event', async () => {
    const id = await start('crash');
    for (let i = 0; i < 5; i++) await crashOnce('crash');
    assert.equal(await claim('crash'), undefined, 'the sweep of the sixth claim parks the run instead of claiming it');
    const r = await run(id);
    assert.equal(r.status, 'paused');
    assert.equal(r.attempt, 5);
    assert.equal(r.lease_expiries, 5);
    assert.deepEqual(r.error, {
      name: 'LeaseExpiredError',
      message: 'lease expired 5 times without progress: the step may crash its worker',
      details: { expiries: 5, max_lease_expiries: 5 },
    });
    const { rows: events } = await sql(`select kind, body from trellis.events where run_id = $1 and kind in ('released', 'paused') order by id`, [id]);
    assert.deepEqual(events.map((e) => [e.kind, e.body.reason, e.body.expiries]), [
      ['released', 'lease expired', 1], ['released', 'lease expired', 2], ['released', 'lease expired', 3],
      ['released', 'lease expired', 4], ['paused', 'lease expired', 5],
    ]);
    assert.deepEqual([events[4].body.from, events[4].body.to], ['running', 'paused']);
  });

  it('does not count a step\'s attempt-started marker as progress', async () => {
    const id = await start('markers');
    for (let i = 0; i < 5; i++) await crashOnce('markers', marker);
    assert.equal(await claim('markers'), undefined);
    assert.equal((await run(id)).status, 'paused');
  });

  it('starts the count again after checkpoint progress', async () => {
    const id = await start('progress');
    for (let i = 0; i < 4; i++) await crashOnce('progress');
    assert.equal((await run(id)).lease_expiries, 3, 'the fourth expiry is swept by the next claim');
    const got = await claim('progress');
    assert.ok(got);
    assert.equal((await run(id)).lease_expiries, 4);
    await sql(`select trellis.step_record($1, $2, 0, 'first', 'completed', '{"ok":true}')`, [got.id, got.lease_token]);
    assert.equal((await run(id)).lease_expiries, 0, 'a step result sets the count back to 0');
    // That lease expires too (the worker died after its step): expiry 1 of a new series.
    await sql(`select trellis.clock_advance('2 seconds')`);
    for (let i = 0; i < 3; i++) await crashOnce('progress', marker, 1);
    const again = await claim('progress');
    assert.ok(again, 'four expiries since the progress (eight in all) leave the run claimable');
    assert.equal((await run(id)).lease_expiries, 4);
    await sql('select trellis.run_complete($1, $2, $3)', [again.id, again.lease_token, '"done"']);
    assert.equal((await run(id)).status, 'completed');
  });

  it('counts a step\'s saved progress as progress only when it changed (step.saveProgress)', async () => {
    const id = await start('saved');
    const progress = (n: number) => (got: string, token: string, seq: number) =>
      sql(`select trellis.step_record($1, $2, $3, 'long', 'running', $4)`, [got, token, seq, JSON.stringify({ progress: { row: n } })]);
    // Each worker gets further before it dies: never parked.
    for (let i = 1; i <= 8; i++) await crashOnce('saved', progress(i * 100));
    const got = await claim('saved');
    assert.ok(got, 'eight expiries, each after new progress, leave the run claimable');
    assert.equal((await run(id)).lease_expiries, 1, 'only the expiry since the last save counts');
    // The same progress saved again (a marker carrying it, a step stuck at one row) is not progress.
    await progress(800)(got.id, got.lease_token, 0);
    await sql(`select trellis.clock_advance('2 seconds')`);
    for (let i = 0; i < 3; i++) await crashOnce('saved', progress(800));
    assert.equal(await claim('saved'), undefined, 'five expiries without a change park it');
    assert.equal((await run(id)).status, 'paused');
  });

  it('never parks a run that heartbeats, and a release is progress too', async () => {
    const id = await start('healthy');
    const got = await claim('healthy');
    assert.ok(got);
    for (let i = 0; i < 30; i++) {
      await sql(`select trellis.run_heartbeat($1, $2, '1 second')`, [got.id, got.lease_token]);
      await sql(`select trellis.clock_advance('600 milliseconds')`);
      assert.equal(await claim('healthy', 'other'), undefined);
    }
    const r = await run(id);
    assert.deepEqual([r.status, r.lease_expiries, r.attempt], ['running', 0, 1]);
    // Killed twice, then released by a worker that lived: back to 0.
    await sql(`select trellis.clock_advance('2 seconds')`);
    await crashOnce('healthy');
    const third = await claim('healthy');
    assert.ok(third);
    assert.equal((await run(id)).lease_expiries, 2);
    await sql('select trellis.run_release($1, $2)', [third.id, third.lease_token]);
    const r2 = await run(id);
    assert.deepEqual([r2.status, r2.lease_expiries], ['pending', 0]);
  });

  it('follows the setting max_lease_expiries and refuses bad values with TR001, changing nothing', async () => {
    await sql(`select trellis.setting_set('max_lease_expiries', '2')`);
    try {
      const id = await start('two');
      for (let i = 0; i < 2; i++) await crashOnce('two');
      assert.equal(await claim('two'), undefined);
      const r = await run(id);
      assert.equal(r.status, 'paused');
      assert.equal(r.error.message, 'lease expired 2 times without progress: the step may crash its worker');
      for (const bad of ['0', '-1', '1.5', '"5"', 'true', 'null', '99999999999']) {
        await assert.rejects(sql(`select trellis.setting_set('max_lease_expiries', $1::jsonb)`, [bad]),
          (e: { code?: string | undefined; message?: string | undefined }) => e.code === 'TR001' && /max_lease_expiries must be a positive integer/.test(e.message ?? ''), bad);
      }
      await assert.rejects(sql(`select trellis.setting_set('max_lease_expiries', null)`), { code: 'TR001' });
      const { rows } = await sql(`select value from trellis.settings where key = 'max_lease_expiries'`);
      assert.equal(rows[0].value, 2);
    } finally {
      await sql(`delete from trellis.settings where key = 'max_lease_expiries'`);
    }
  });

  it('counts a lease given back by run_release_owned (a worker restarted under the same id) as an expiry', async () => {
    const id = await start('stable');
    for (let i = 1; i <= 5; i++) {
      assert.ok(await claim('stable', 'stable-id'), `claim ${i}`);
      const { rows } = await sql(`select trellis.run_release_owned('stable-id', '{}') as n`);
      assert.equal(rows[0].n, 1);
    }
    const r = await run(id);
    assert.deepEqual([r.status, r.lease_expiries, r.error.name], ['paused', 5, 'LeaseExpiredError']);
    const { rows: events } = await sql(`select kind, body->>'reason' as reason from trellis.events where run_id = $1 and kind in ('released', 'paused') order by id`, [id]);
    assert.deepEqual(events.at(-1), { kind: 'paused', reason: 'lease unknown to its worker' });
    assert.equal(events.length, 5);
  });

  it('parks a resumed run again at its next expiry without progress, as pauseAfter does a failing step', async () => {
    const id = await start('resume');
    for (let i = 0; i < 5; i++) await crashOnce('resume');
    assert.equal(await claim('resume'), undefined);
    await sql('select trellis.run_resume($1)', [id]);
    await crashOnce('resume');
    assert.equal(await claim('resume'), undefined);
    const r = await run(id);
    assert.deepEqual([r.status, r.lease_expiries, r.attempt], ['paused', 6, 6]);
  });
});

describe('lease expiries on the distributed path (sql/160_buckets.sql, one node)', () => {
  it('parks a run whose leases keep expiring when row locks go one bucket at a time', async () => {
    await sql(`select trellis.setting_set('distributed', 'true')`);
    await sql(`select trellis.setting_set('max_lease_expiries', '2')`);
    try {
      const id = await start('dist');
      for (let i = 0; i < 2; i++) await crashOnce('dist');
      assert.equal(await claim('dist'), undefined);
      const r = await run(id);
      assert.deepEqual([r.status, r.lease_expiries, r.error.name], ['paused', 2, 'LeaseExpiredError']);
    } finally {
      await sql(`select trellis.setting_set('distributed', 'false')`);
      await sql(`delete from trellis.settings where key = 'max_lease_expiries'`);
    }
  });
});
