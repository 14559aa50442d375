/**
 * The delivery order in SQL (docs/decisions/0010-delivery-order.md):
 * checkpoint_apply stores a step op's `delivered` number with the call,
 * never changes it once the call completed or failed, refuses it on a call
 * that has no result yet, and run_claim returns it in the history where set.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { useFreshDatabase } from '../helpers/database-fixture.ts';

const fx = useFreshDatabase({
  setUp: (db) => db.pool.query('select trellis.workflow_register($1)', [JSON.stringify([{ name: 'w', version: '1', queue: 'delivered' }])]),
});

interface Claimed {
  id: string;
  lease_token: string;
  history: Record<string, unknown>[] | null;
}

async function claim(): Promise<Claimed> {
  const { rows } = await fx.db.pool.query<Claimed>(
    `select * from trellis.run_claim('w1', array['delivered'], array['w'], array['1'], 1, '30 seconds')`);
  assert.equal(rows.length, 1);
  return rows[0] as Claimed;
}

const apply = (ops: object[]) => fx.db.pool.query('select * from trellis.checkpoint_apply($1::jsonb)', [JSON.stringify(ops)]);

describe('checkpoint_apply delivered', () => {
  it('stores the delivery number of a result, keeps it when the op is repeated, and run_claim returns it where set', async () => {
    const { rows } = await fx.db.pool.query(`select trellis.run_start('w', '{}') as id`);
    const id = rows[0].id as string;
    const first = await claim();
    const step = (seq: number, status: string, extra: object = {}) =>
      ({ op: 'step', run: id, token: first.lease_token, seq, name: `s${seq}`, kind: 'step', status, attempts: 1, ...extra });
    await apply([step(0, 'running')]); // a batch holds one op per call (the committer drops a superseded marker)
    await apply([
      step(1, 'completed', { output: 'b', delivered: 1 }),
      step(0, 'completed', { output: 'a', delivered: 2 }),
      step(2, 'failed', { error: { message: 'no' }, delivered: 3 }),
      step(3, 'waiting', { output: { until: null } }),
    ]);
    await apply([step(1, 'completed', { output: 'again', delivered: 9 })]); // a result is final
    const stored = await fx.db.pool.query(`select seq, delivered from trellis.steps where run_id = $1 order by seq`, [id]);
    assert.deepEqual(stored.rows, [{ seq: 0, delivered: 2 }, { seq: 1, delivered: 1 }, { seq: 2, delivered: 3 }, { seq: 3, delivered: null }]);

    await fx.db.pool.query('select trellis.run_release($1, $2)', [id, first.lease_token]);
    const again = await claim();
    assert.deepEqual(again.history?.map((h) => [h.seq, h.delivered]), [[0, 2], [1, 1], [2, 3], [3, undefined]]);
    assert.ok(again.history && !('delivered' in (again.history[3] as object)), 'no key where no number is stored');
    await fx.db.pool.query(`select trellis.run_complete($1, $2, 'null')`, [id, again.lease_token]);
  });

  it('refuses a delivery number on a call without a result, or below 1, with TR001, writing nothing', async () => {
    const { rows } = await fx.db.pool.query(`select trellis.run_start('w', '{}') as id`);
    const id = rows[0].id as string;
    const held = await claim();
    const op = (status: string, delivered: number) =>
      ({ op: 'step', run: id, token: held.lease_token, seq: 0, name: 's', kind: 'step', status, attempts: 1, delivered });
    for (const bad of [op('running', 1), op('waiting', 1), op('retrying', 1), op('completed', 0)]) {
      await assert.rejects(apply([bad]), (e: { code?: string | undefined }) => e.code === 'TR001', JSON.stringify(bad));
    }
    const n = await fx.db.pool.query('select count(*)::int as n from trellis.steps where run_id = $1', [id]);
    assert.equal(n.rows[0].n, 0);
    await fx.db.pool.query(`select trellis.run_complete($1, $2, 'null')`, [id, held.lease_token]);
  });
});
