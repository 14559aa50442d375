/**
 * Edges of run_fork, run_start_many, the purge and the schedule ticker found
 * by an audit of the SQL core (6 December): a fork waiting on its
 * original's keyed child, a purge that left a parent link behind, two
 * batches deadlocking on their keys, cancel_previous cancelling for a tick
 * it did not start, a refused buffered tick stopping its schedule. Each
 * failed before its fix.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, it } from 'node:test';
import { useFreshDatabase } from '../helpers/database-fixture.ts';

const fx = useFreshDatabase({
  poolSize: 6,
  virtualClock: true,
  setUp: (db) => db.pool.query(`select trellis.workflow_register($1)`, [JSON.stringify([
    { name: 'p', version: '1', queue: 'qp' },
    { name: 'c', version: '1', queue: 'qc' },
    { name: 'm', version: '1', queue: 'qm' },
    { name: 's', version: '1', queue: 'qs' },
  ])]),
});
const sql = async (text: string, values: unknown[] = []) => (await fx.db.pool.query(text, values)).rows;
const one = async (text: string, values: unknown[] = []) => (await sql(text, values))[0];
const apply = (ops: unknown) => sql('select * from trellis.checkpoint_apply($1)', [JSON.stringify(ops)]);
let tokenCache: string | undefined;
const roleToken = async () => (tokenCache ??= (await one(`select trellis.role_acquire('trellis.schedules', 'audit', '1 hour') as t`)).t as string);
const claim = async (queue: string, wf: string) =>
  one(`select id, lease_token as token, attempt from trellis.run_claim('w', array[$1], array[$2], '{1}', 1, '30 seconds')`, [queue, wf]);

describe('edges of fork, batch starts, purge and schedules', () => {
  it('a fork that re-makes its original\'s keyed child call is woken by that child\'s end, as the original (its parent) is (decision 0039)', async () => {
    const orig = await one(`select trellis.run_start('p', '{"n":1}', '{"queue":"f1"}') as id`);
    const o = await claim('f1', 'p');
    assert.equal(o.id, orig.id);
    await apply([
      { op: 'step', run: o.id, token: o.token, seq: 0, name: 'a', kind: 'step', status: 'completed', output: 'A', delivered: 1 },
      { op: 'child', run: o.id, token: o.token, seq: 1, name: 'kid', child: randomUUID(), workflow: 'c', input: {}, key: 'kid-f1', queue: 'f1c' },
      { op: 'wait', run: o.id, token: o.token },
    ]);
    const fork = (await one(`select trellis.run_fork($1, 1) as id`, [o.id])).id;
    const f = await claim('f1', 'p');
    assert.equal(f.id, fork);
    // The fork's code makes call 1 live, as docs/sql-api.md says: the same keyed child.
    await apply([
      { op: 'child', run: f.id, token: f.token, seq: 1, name: 'kid', child: randomUUID(), workflow: 'c', input: {}, key: 'kid-f1', queue: 'f1c' },
      { op: 'wait', run: f.id, token: f.token },
    ]);
    const kid = await claim('f1c', 'c');
    await apply([{ op: 'complete', run: kid.id, token: kid.token, output: 'K' }]);
    const status = async (id: string) => (await one('select status from trellis.runs where id = $1', [id])).status as string;
    assert.equal(await status(o.id), 'pending', 'the original is woken (the parent link)');
    assert.equal(await status(fork), 'pending', 'the fork is woken (its watch), not left to a timer');
    assert.equal((await sql('select 1 from trellis.run_watches where run_id = $1', [kid.id])).length, 0, 'the watch ended with the child');
    const again = await one(`select id, children from trellis.run_claim('w', '{f1}', '{p}', '{1}', 10, '30 seconds') where id = $1`, [fork]);
    assert.ok(again, 'the fork is claimed again');
    assert.equal(Object.values(again.children as Record<string, { status: string }>)[0]?.status, 'completed', 'with the child\'s end');
  });

  it('a purge: a run left for later (its child held) keeps no parent link to a run the same purge deleted', async () => {
    const p = await one(`select trellis.run_start('p', '{}', '{"queue":"f2"}') as id`);
    const pc = await claim('f2', 'p');
    const cId = randomUUID();
    const gId = randomUUID();
    await apply([
      { op: 'child', run: p.id, token: pc.token, seq: 0, name: 'kid', child: cId, workflow: 'p', input: {}, queue: 'f2c' },
      { op: 'wait', run: p.id, token: pc.token },
    ]);
    const c = await claim('f2c', 'p');
    assert.equal(c.id, cId);
    await apply([
      { op: 'child', run: cId, token: c.token, seq: 0, name: 'g', child: gId, workflow: 'p', input: {}, queue: 'f2g', close: 'abandon' },
      { op: 'complete', run: cId, token: c.token, output: 'C' },
    ]);
    const p2 = await claim('f2', 'p');
    await apply([
      { op: 'step', run: p.id, token: p2.token, seq: 0, name: 'kid', kind: 'child', status: 'completed', output: 'C', delivered: 1 },
      { op: 'complete', run: p.id, token: p2.token, output: 'P' },
    ]);
    // Another transaction holds grandchild G (e.g. its checkpoint) while the purge runs.
    const holder = await fx.db.pool.connect();
    try {
      await holder.query('begin');
      // (By bucket and id: on Citus a row lock names one shard.)
      const { bucket } = await one('select bucket from trellis.runs where id = $1', [gId]);
      await holder.query(`select 1 from trellis.runs where bucket = $1 and id = $2 for no key update`, [bucket, gId]);
      const purged = (await one(`select trellis.run_purge('0 seconds', 1000, 'p') as n`)).n;
      await holder.query('commit');
      // (Two reads: on a Citus cluster runs joins runs only on its bucket.)
      const left = await sql(`select r.id, r.parent_run_id from trellis.runs r where r.id = any($1)`, [[p.id, cId, gId]]);
      const present = new Set((await sql(`select id from trellis.runs where id = any($1)`, [left.map((r) => r.parent_run_id).filter(Boolean)])).map((r) => r.id));
      for (const r of left) r.parent_exists = present.has(r.parent_run_id);
      const cRow = left.find((r) => r.id === cId);
      assert.equal(purged, 1, 'P purged, C left for later');
      assert.ok(cRow, 'C is left');
      assert.ok(cRow.parent_run_id === null || cRow.parent_exists, `C's parent link points at purged run ${cRow.parent_run_id}`);
    } finally {
      holder.release();
    }
  });

  it('run_start_many: two concurrent batches of the same keys in another order do not deadlock (40P01)', async () => {
    const items = Array.from({ length: 400 }, (_, i) => ({ input: i, options: { key: `dl-${i}` } }));
    const errors: string[] = [];
    for (let round = 0; round < 3; round++) {
      await sql(`delete from trellis.runs where workflow = 'm'`);
      const a = JSON.stringify(items.map((x) => ({ ...x, options: { key: `${x.options.key}-${round}` } })));
      const b = JSON.stringify([...items].reverse().map((x) => ({ ...x, options: { key: `${x.options.key}-${round}` } })));
      const results = await Promise.allSettled([
        sql(`select count(*) from trellis.run_start_many('m', $1)`, [a]),
        sql(`select count(*) from trellis.run_start_many('m', $1)`, [b]),
      ]);
      for (const r of results) if (r.status === 'rejected') errors.push(`${(r.reason as { code?: string | undefined }).code}: ${(r.reason as Error).message}`);
    }
    assert.deepEqual(errors, []);
  });

  it('schedule_fire: cancel_previous does not cancel the last run for a tick whose start is refused', async () => {
    const token = await roleToken();
    await sql(`select trellis.schedule_set('cp', $1)`, [JSON.stringify({ cron: '* * * * *', workflow: 's', input: { a: 1 }, overlap: 'cancel_previous' })]);
    const read = async () => one(`select next_at, next_from from trellis.schedules where name = 'cp'`);
    let r = await read();
    await sql(`select trellis.schedule_fire($1, $2)`, [token, JSON.stringify([{ name: 'cp', next_at: r.next_at, next_from: r.next_from,
      ticks: ['2026-01-01T00:00:00Z'], skipped: 0, next: '2026-01-01T00:01:00Z' }])]);
    const first = (await one(`select last_run_id from trellis.schedules where name = 'cp'`)).last_run_id;
    // The newest version no longer takes the schedule's input: the next tick is refused.
    await sql(`select trellis.workflow_register($1)`, [JSON.stringify([{ name: 's', version: '2', queue: 'qs', input_schema: { type: 'object', required: ['b'] } }])]);
    r = await read();
    await sql(`select trellis.schedule_fire($1, $2)`, [token, JSON.stringify([{ name: 'cp', next_at: r.next_at, next_from: r.next_from,
      ticks: ['2026-01-01T00:01:00Z'], skipped: 0, next: '2026-01-01T00:02:00Z' }])]);
    const s = await one(`select last_error from trellis.schedules where name = 'cp'`);
    assert.match(s.last_error, /not started/);
    const prev = await one(`select status, error->>'message' as why from trellis.runs where id = $1`, [first]);
    assert.equal(prev.status, 'pending', `previous run ${prev.status}: ${prev.why} (no run superseded it)`);
  });

  it('schedule_tick: a refused buffered tick does not stop a schedule whose next tick is still to compute', async () => {
    await sql(`select trellis.workflow_register($1)`, [JSON.stringify([{ name: 'b', version: '1', queue: 'qb' }])]);
    const token = await roleToken();
    await sql(`select trellis.schedule_set('bo', $1)`, [JSON.stringify({ cron: '* * * * *', workflow: 'b', input: { a: 1 }, overlap: 'buffer_one' })]);
    const fire = async (tick: string, next: string) => {
      const r = await one(`select next_at, next_from from trellis.schedules where name = 'bo'`);
      await sql(`select trellis.schedule_fire($1, $2)`, [token, JSON.stringify([{ name: 'bo', next_at: r.next_at, next_from: r.next_from, ticks: [tick], skipped: 0, next }])]);
    };
    await fire('2026-01-01T00:00:00Z', '2026-01-01T00:01:00Z');
    await fire('2026-01-01T00:01:00Z', '2026-01-01T00:02:00Z');
    assert.ok((await one(`select buffered_at from trellis.schedules where name = 'bo'`)).buffered_at, 'a tick is buffered');
    await sql(`select trellis.schedule_pause('bo')`);
    await sql(`select trellis.schedule_resume('bo')`); // next_at null: the ticker is to compute it
    await sql(`select trellis.workflow_register($1)`, [JSON.stringify([{ name: 'b', version: '2', queue: 'qb', input_schema: { type: 'object', required: ['b'] } }])]);
    for (const r of await sql(`select id from trellis.runs where workflow = 'b' and status = 'pending'`)) await sql(`select trellis.run_cancel($1, 'done')`, [r.id]);
    await sql(`select count(*) from trellis.schedule_tick($1, 10)`, [token]); // the buffered tick is refused here
    // Then a version that takes the input again is deployed: the schedule should come back by itself.
    await sql(`select trellis.workflow_register($1)`, [JSON.stringify([{ name: 'b', version: '3', queue: 'qb' }])]);
    const due = await sql(`select name from trellis.schedule_tick($1, 10) where name = 'bo'`, [token]);
    const row = await one(`select next_at, next_from, last_error from trellis.schedules where name = 'bo'`);
    assert.equal(due.length, 1, `bo is never handed to the ticker again: next_at ${row.next_at}, next_from ${row.next_from}, last_error ${row.last_error}`);
  });
});
