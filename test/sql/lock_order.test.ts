/**
 * Lock order between run_cancel of a parent and checkpoint_apply ending its
 * child: both lock the parent and the child up front in id order, so they
 * serialise instead of deadlocking (40P01).
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, it } from 'node:test';
import type pg from 'pg';
import { useFreshDatabase } from '../helpers/database-fixture.ts';
import { backendId, lockWaiting } from '../helpers/lock-wait.ts';
import { waitFor } from '../helpers/wait.ts';

const fx = useFreshDatabase({
  poolSize: 40,
  setUp: (db) => db.pool.query(`select trellis.workflow_register('[{"name":"p","version":"1"},{"name":"c","version":"1"}]')`),
});

const sql = async (text: string, values: unknown[] = []) => (await fx.db.pool.query(text, values)).rows;
const apply = (q: pg.Pool | pg.PoolClient, ops: unknown[]) => q.query('select * from trellis.checkpoint_apply($1::jsonb)', [JSON.stringify(ops)]);
let queues = 0;

/** A parent waiting on a running child, each held under a lease. */
async function family(): Promise<{ parent: string; child: string; childToken: string }> {
  const queue = `lock${++queues}`;
  const [{ id: parent }] = await sql(`select trellis.run_start('p', '{}', $1) as id`, [JSON.stringify({ queue })]);
  const [p] = await sql(`select lease_token from trellis.run_claim('w', array[$1], '{p}', '{1}', 1, '30s')`, [queue]);
  const child = randomUUID();
  await apply(fx.db.pool, [
    { op: 'child', run: parent, token: p.lease_token, seq: 0, name: 'c', child, workflow: 'c', version: '1', input: {}, queue: `${queue}c`, close: 'cancel' },
    { op: 'wait', run: parent, token: p.lease_token, delay_ms: null, signal: 0, seen_cancel: false },
  ]);
  const [c] = await sql(`select id, lease_token from trellis.run_claim('w', array[$1], '{c}', '{1}', 1, '30s')`, [`${queue}c`]);
  assert.equal(c.id, child);
  return { parent, child, childToken: c.lease_token };
}

const blocked = (pid: number) => lockWaiting(fx.db.pool, pid);

describe('run_cancel of a parent against the end of its child', () => {
  it('serialises instead of deadlocking when the cancel queues for the parent first and the child ends behind it', async () => {
    // Old order: run_cancel locked the parent, then the child; the child's end
    // locked the child, then the parent. A third transaction holding the
    // parent lines both up behind it in that order.
    for (let round = 0; round < 4; round++) {
      const f = await family();
      const holder = await fx.db.pool.connect();
      const canceller = await fx.db.pool.connect();
      const ender = await fx.db.pool.connect();
      try {
        await holder.query('begin');
        // (By bucket and id: on Citus a row lock names one shard.)
        const [{ bucket }] = await sql('select bucket from trellis.runs where id = $1', [f.parent]);
        await holder.query('select 1 from trellis.runs where bucket = $1 and id = $2 for no key update', [bucket, f.parent]);
        const [cancelPid, endPid] = await Promise.all([canceller, ender].map(backendId)) as [number, number];
        const cancel = canceller.query('select trellis.run_cancel($1) as status', [f.parent]).then(() => 'ok', (e: { code?: string | undefined }) => e.code ?? String(e));
        await waitFor(() => blocked(cancelPid), { what: 'run_cancel to queue behind the holder' });
        const end = apply(ender, [{ op: 'complete', run: f.child, token: f.childToken, output: 1 }]).then(() => 'ok', (e: { code?: string | undefined }) => e.code ?? String(e));
        await waitFor(() => blocked(endPid), { what: 'the child end to queue' });
        await holder.query('commit');
        assert.deepEqual(await Promise.all([cancel, end]), ['ok', 'ok'], `round ${round}`);
      } finally {
        holder.release();
        canceller.release();
        ender.release();
      }
      const [p] = await sql('select status, cancel_requested_at is not null as asked from trellis.runs where id = $1', [f.parent]);
      assert.deepEqual(p, { status: 'pending', asked: true });
      const [c] = await sql('select status from trellis.runs where id = $1', [f.child]);
      assert.ok(['completed', 'running'].includes(c.status), `child is ${c.status}`);
    }
  });

  it('never fails with 40P01 over many concurrent cancels of parents while their children complete', async () => {
    const codes: string[] = [];
    for (let round = 0; round < 6; round++) {
      const families = await Promise.all(Array.from({ length: 8 }, () => family()));
      const work = families.flatMap((f) => {
        const cancel = () => sql('select trellis.run_cancel($1)', [f.parent]);
        const end = () => apply(fx.db.pool, [{ op: 'complete', run: f.child, token: f.childToken, output: 1 }]);
        return round % 2 ? [end(), cancel()] : [cancel(), end()];
      });
      for (const r of await Promise.allSettled(work)) if (r.status === 'rejected') codes.push((r.reason as { code?: string | undefined }).code ?? String(r.reason));
    }
    assert.deepEqual(codes, [], 'every cancel and every child end succeeded');
  });
});

describe('a purge of a finished parent against the end of its abandoned child', () => {
  it('passes over the parent while another transaction holds the child, instead of waiting on it (no 40P01)', async () => {
    // Ids in the order child < its cancel-child < parent (the parent's is random, so almost surely after both):
    // the child's end locks the child, then waits on the cancel-child that a third transaction holds.
    const child = '00000000-0000-4000-8000-000000000001';
    const grandchild = '00000000-0000-4000-8000-000000000002';
    const [{ id: parent }] = await sql(`select trellis.run_start('p', '{}', '{"queue": "purge-lock"}') as id`);
    assert.ok(parent > grandchild);
    const [p] = await sql(`select lease_token from trellis.run_claim('w', '{purge-lock}', '{p}', '{1}', 1, '30s')`);
    await apply(fx.db.pool, [
      { op: 'child', run: parent, token: p.lease_token, seq: 0, name: 'c', child, workflow: 'c', version: '1', input: {}, queue: 'purge-lock-c', close: 'abandon' },
      { op: 'complete', run: parent, token: p.lease_token, output: 1 },
    ]);
    const [c] = await sql(`select id, lease_token from trellis.run_claim('w', '{purge-lock-c}', '{c}', '{1}', 1, '30s')`);
    assert.equal(c.id, child);
    await apply(fx.db.pool, [{ op: 'child', run: child, token: c.lease_token, seq: 0, name: 'g', child: grandchild, workflow: 'c', version: '1',
      input: {}, queue: 'purge-lock-g', close: 'cancel' }]);
    const holder = await fx.db.pool.connect();
    const ender = await fx.db.pool.connect();
    const purger = await fx.db.pool.connect();
    try {
      await holder.query('begin');
      const [{ bucket }] = await sql('select bucket from trellis.runs where id = $1', [grandchild]);
      await holder.query('select 1 from trellis.runs where bucket = $1 and id = $2 for no key update', [bucket, grandchild]);
      const endPid = await backendId(ender);
      const end = apply(ender, [{ op: 'complete', run: child, token: c.lease_token, output: 1 }]).then(() => 'ok', (e: { code?: string | undefined }) => e.code ?? String(e));
      await waitFor(() => blocked(endPid), { what: 'the child\'s end to hold the child and wait on its cancel-child' });
      // Bounded: a purge that waits on the held child would end with 57014 here.
      await purger.query(`set statement_timeout = '20s'`);
      const [{ n }] = (await purger.query(`select trellis.run_purge('0 seconds', 1000) as n`)).rows;
      assert.equal(n, 0, 'the parent is passed over while its child is held');
      assert.equal((await sql('select count(*)::int as n from trellis.runs where id = $1', [parent]))[0].n, 1);
      await holder.query('commit');
      assert.equal(await end, 'ok');
    } finally {
      holder.release();
      ender.release();
      purger.release();
    }
    // Once nobody holds the child, the parent is purged and the child loses its link.
    assert.ok((await sql(`select trellis.run_purge('0 seconds', 1000) as n`))[0].n >= 1);
    assert.equal((await sql('select count(*)::int as n from trellis.runs where id = $1', [parent]))[0].n, 0);
    const left = await sql('select parent_run_id from trellis.runs where id = $1', [child]);
    assert.ok(left.length === 0 || left[0].parent_run_id === null);
  });
});
