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

  it('run_request: received, read, the reply (kept on the signal row past continue-as-new) and lost (read in a discarded execution, unanswered)', async () => {
    const r = await held();
    const look = async (id: string) => (await sql(`select status, received, read, reply, replied_at is not null as replied, lost from trellis.run_request($1, $2)`, [r.id, id]))[0];
    assert.deepEqual(await look('q-1'), { status: 'running', received: false, read: false, reply: null, replied: false, lost: false });
    assert.equal(await sql(`select trellis.signal_send($1, 'ask', '{"n":1}', 'q-1') as sent`, [r.id]).then((x) => x[0].sent), true);
    await sql(`select trellis.signal_send($1, 'ask', '{"n":2}', 'q-2')`, [r.id]);
    assert.deepEqual(await look('q-1'), { status: 'running', received: true, read: false, reply: null, replied: false, lost: false });
    const [s1, s2] = (await sql(`select id from trellis.signals where run_id = $1 order by id`, [r.id])).map((x) => x.id as number);
    // Both read; q-1 answered, q-2 not (yet).
    await apply([
      { op: 'step', run: r.id, token: r.token, seq: 0, name: 'ask', kind: 'signal', status: 'completed', output: { timedOut: false, payload: { n: 1 }, signalId: 'q-1' }, signal: s1 },
      { op: 'step', run: r.id, token: r.token, seq: 1, name: 'ask', kind: 'signal', status: 'completed', output: { timedOut: false, payload: { n: 2 }, signalId: 'q-2' }, signal: s2 },
      value(r, 2, 'reply:q-1', { value: 2 }),
    ]);
    assert.deepEqual(await look('q-1'), { status: 'running', received: true, read: true, reply: { value: 2 }, replied: true, lost: false });
    assert.deepEqual(await look('q-2'), { status: 'running', received: true, read: true, reply: null, replied: false, lost: false }, 'read, its wait in the history: an answer may come');
    const [row] = await sql(`select reply, replied_at is not null as replied from trellis.signals where run_id = $1 and signal_id = 'q-1'`, [r.id]);
    assert.deepEqual(row, { reply: { value: 2 }, replied: true }, 'the reply is kept on the request\'s signal row');
    // Continue as new without the history: the value reply:q-1 and q-2's wait are gone; q-1's answer is on its signal.
    await apply([{ op: 'continue', run: r.id, token: r.token, input: {}, keep: false }]);
    assert.deepEqual(await sql(`select * from trellis.run_value($1, 'reply:q-1')`, [r.id]).then((x) => x[0].value), null, 'the value went with the history');
    assert.deepEqual(await look('q-1'), { status: 'pending', received: true, read: true, reply: { value: 2 }, replied: true, lost: false });
    assert.deepEqual(await look('q-2'), { status: 'pending', received: true, read: true, reply: null, replied: false, lost: true });
    // A reply by id to a request no signal carried is read from the value.
    const [again] = await sql(`select id, lease_token from trellis.run_claim('w1', array[$1], '{w}', '{1}', 1, '30 seconds')`, [`v${queues}`]);
    await apply([value({ id: r.id, token: again.lease_token }, 0, 'reply:by-id', { value: 'no signal' }, { execution: 2 })]);
    assert.deepEqual(await look('by-id'), { status: 'running', received: false, read: false, reply: { value: 'no signal' }, replied: true, lost: false });
    // run_scrub removes the answers kept on signal rows, as it removes their payloads.
    await apply([{ op: 'complete', run: r.id, token: again.lease_token, output: null }]);
    await sql('select trellis.run_scrub($1)', [r.id]);
    assert.deepEqual(await sql(`select signal_id, reply from trellis.signals where run_id = $1 order by id`, [r.id]),
      [{ signal_id: 'q-1', reply: null }, { signal_id: 'q-2', reply: null }]);
    assert.deepEqual(await sql(`select * from trellis.run_request(gen_random_uuid(), 'q-1')`), []);
    for (const bad of ['', 'x'.repeat(123), null]) {
      await assert.rejects(sql(`select * from trellis.run_request($1, $2)`, [r.id, bad]), (e: { code?: string | undefined }) => e.code === 'TR001');
    }
  });
});
