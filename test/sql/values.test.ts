/**
 * A run's values (sql/410_values.sql, decision 0033): calls of kind 'value'
 * written by checkpoint_apply under the run's lease, read by run_value and
 * run_values (the newest call of a key wins, across executions), and
 * announced on trellis:run_value only while a session watches.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { useFreshDatabase } from '../helpers/database-fixture.ts';
import { sentinelListener } from '../helpers/sentinel.ts';

const fx = useFreshDatabase({ setUp: (db) => db.pool.query(`select trellis.workflow_register('[{"name":"w","version":"1","queue":"default"}]')`) });
const sql = async (text: string, values: unknown[] = []) => (await fx.db.pool.query(text, values)).rows;
let queues = 0;

/** A run held by a worker, in a queue of its own. */
async function held(): Promise<{ id: string; token: string }> {
  const queue = `v${++queues}`;
  await sql('select trellis.run_start($1, $2, $3)', ['w', '{}', JSON.stringify({ queue })]);
  const [row] = await sql(`select id, lease_token from trellis.run_claim('w1', array[$1], '{w}', '{1}', 1, '30 seconds')`, [queue]);
  return { id: row.id, token: row.lease_token };
}

const value = (run: { id: string; token: string }, seq: number, key: string, output: unknown, extra: object = {}) =>
  ({ op: 'step', run: run.id, token: run.token, seq, name: key, kind: 'value', status: 'completed', output, ...extra });
const apply = (ops: object[]) => sql('select * from trellis.checkpoint_apply($1)', [JSON.stringify(ops)]);

describe('run values', () => {
  it('run_value and run_values read the newest call of each key; a key not set reads as null with the status', async () => {
    const r = await held();
    assert.deepEqual(await sql(`select status, value, set_at from trellis.run_value($1, 'k')`, [r.id]),
      [{ status: 'running', value: null, set_at: null }]);
    await apply([value(r, 0, 'k', 'first'), value(r, 1, 'other', null), value(r, 2, 'k', { n: 2 })]);
    const [k] = await sql(`select status, value, set_at is not null as set from trellis.run_value($1, 'k')`, [r.id]);
    assert.deepEqual(k, { status: 'running', value: { n: 2 }, set: true });
    assert.deepEqual(await sql(`select key, value from trellis.run_values($1)`, [r.id]), [{ key: 'k', value: { n: 2 } }, { key: 'other', value: null }]);
    // A value set to JSON null is 'null'::jsonb, not SQL null (which means: not set).
    assert.deepEqual(await sql(`select value is null as missing, jsonb_typeof(value) as t from trellis.run_value($1, 'other')`, [r.id]),
      [{ missing: false, t: 'null' }]);
    assert.deepEqual(await sql(`select key, jsonb_typeof(value) as t from trellis.run_values($1) where key = 'other'`, [r.id]),
      [{ key: 'other', t: 'null' }]);
    // A later execution (continue-as-new keeping the history) sets k again from call 0.
    await apply([{ op: 'continue', run: r.id, token: r.token, input: {}, keep: true }]);
    const [again] = await sql(`select id, lease_token from trellis.run_claim('w1', array[$1], '{w}', '{1}', 1, '30 seconds')`, [`v${queues}`]);
    assert.equal(again.id, r.id);
    await apply([value({ id: r.id, token: again.lease_token }, 0, 'k', 'from execution 2', { execution: 2 })]);
    assert.deepEqual(await sql(`select value from trellis.run_value($1, 'k')`, [r.id]), [{ value: 'from execution 2' }]);
    assert.deepEqual(await sql(`select * from trellis.run_value(gen_random_uuid(), 'k')`), []);
  });

  it('a value is fenced by the lease, recorded once, and checked as any call (name, payload limit)', async () => {
    const r = await held();
    const stale = await apply([value({ id: r.id, token: '00000000-0000-4000-8000-000000000000' }, 0, 'k', 'forged')]);
    assert.equal(stale.length, 1, 'a stale token is refused');
    await apply([value(r, 0, 'k', 'kept')]);
    await apply([value(r, 0, 'k', 'overwritten?')]);
    assert.deepEqual(await sql(`select value from trellis.run_value($1, 'k')`, [r.id]), [{ value: 'kept' }], 'a completed call is never overwritten');
    await assert.rejects(apply([value(r, 1, 'bad"name', 1)]), (e: { code?: string | undefined }) => e.code === 'TR001');
    await sql(`select trellis.setting_set('max_payload_bytes', '100')`);
    try {
      await assert.rejects(apply([value(r, 1, 'big', 'x'.repeat(200))]), (e: { code?: string | undefined }) => e.code === 'TR005');
    } finally {
      await sql(`select trellis.setting_set('max_payload_bytes', '1048576')`);
    }
    assert.deepEqual(await sql(`select seq, name from trellis.steps where run_id = $1 order by seq`, [r.id]), [{ seq: 0, name: 'k' }]);
  });

  it('trellis:run_value is sent only while a session watches', async () => {
    const l = await sentinelListener(fx.db.url, 'trellis:run_value');
    try {
      const a = await held();
      await apply([value(a, 0, 'k', 1)]);
      assert.deepEqual(await l.until(), [], 'unwatched: no NOTIFY');
      await l.client.query('select trellis.run_finished_watch()');
      const b = await held();
      const c = await held();
      await apply([value(b, 0, 'k', 1), value(b, 1, 'j', 2), value(c, 0, 'k', 3),
        { op: 'step', run: c.id, token: c.token, seq: 1, name: 's', kind: 'step', status: 'completed', output: 1 }]);
      const d = await held();
      await apply([{ op: 'step', run: d.id, token: d.token, seq: 0, name: 's', kind: 'step', status: 'completed', output: 1 }]);
      const heard = await l.until();
      assert.equal(heard.length, 1, 'one NOTIFY for the checkpoint');
      assert.deepEqual(heard[0]!.split(',').sort(), [b.id, c.id].sort(), 'naming each run that set a value, once');
    } finally {
      await l.close();
    }
  });
});
