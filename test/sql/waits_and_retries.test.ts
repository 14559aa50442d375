/**
 * The SQL side of waits across executions, cancellation during a backoff or a
 * pause, retry from the failed call, and payload sizes measured as JSON text.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, it } from 'node:test';
import { jsonbTextBytes } from '../../src/protocol/serialize.ts';
import { useFreshDatabase } from '../helpers/database-fixture.ts';

const fx = useFreshDatabase({
  setUp: (db) => db.pool.query(`select trellis.workflow_register('[{"name":"w","version":"1"},{"name":"c","version":"1"}]')`),
});

const sql = async (text: string, values: unknown[] = []) => (await fx.db.pool.query(text, values)).rows;
const apply = (ops: unknown[]) => sql('select * from trellis.checkpoint_apply($1::jsonb)', [JSON.stringify(ops)]);
let queues = 0;

type Held = { id: string; token: string; queue: string };
async function held(workflow = 'w', queue = `wr${++queues}`): Promise<Held> {
  const [{ id }] = await sql('select trellis.run_start($1, $2, $3) as id', [workflow, '{}', JSON.stringify({ queue })]);
  return reclaim(id, queue, workflow);
}
async function reclaim(id: string, queue: string, workflow = 'w'): Promise<Held> {
  const [row] = await sql(`select id, lease_token from trellis.run_claim('t', array[$1], array[$2], '{1}', 1, '30s')`, [queue, workflow]);
  assert.equal(row?.id, id, 'claimed the run');
  return { id, token: row.lease_token, queue };
}
const status = async (id: string) =>
  (await sql(`select status, run_at <= now() + interval '5 seconds' as due, error from trellis.runs where id = $1`, [id]))[0];
const step = (h: Held, seq: number, name: string, s: string, extra: Record<string, unknown> = {}) =>
  ({ op: 'step', run: h.id, token: h.token, seq, name, kind: 'step', status: s, attempts: 1, ...extra });

describe('waiting child calls of an execution kept by continue-as-new', () => {
  it('wake no one: neither the wait op nor the child finishing makes the new execution pending', async () => {
    const h = await held();
    const child = randomUUID();
    await apply([
      { op: 'child', run: h.id, token: h.token, seq: 0, name: 'c', child, workflow: 'c', version: '1', input: {}, queue: `${h.queue}c` },
      { op: 'continue', run: h.id, token: h.token, input: {}, keep: true },
    ]);
    const e2 = await reclaim(h.id, h.queue);
    await apply([{ op: 'wait', run: h.id, token: e2.token, delay_ms: null, signal: 0, seen_cancel: false }]);
    assert.equal((await status(h.id)).status, 'waiting');

    const [c] = await sql(`select lease_token from trellis.run_claim('t', array[$1], '{c}', '{1}', 1, '30s')`, [`${h.queue}c`]);
    await apply([{ op: 'complete', run: child, token: c.lease_token, output: 'done' }]);
    assert.equal((await status(h.id)).status, 'waiting', 'the old execution\'s child does not wake the new one');

    // A second parking after the child finished does not spin either.
    await sql('select trellis.signal_send($1, $2, $3)', [h.id, 'go', '1']);
    const e3 = await reclaim(h.id, h.queue);
    const [{ max }] = await sql('select max(id)::int as max from trellis.signals where run_id = $1', [h.id]);
    await apply([{ op: 'wait', run: h.id, token: e3.token, delay_ms: null, signal: max, seen_cancel: false }]);
    assert.equal((await status(h.id)).status, 'waiting');
  });
});

describe('the wait op\'s timer', () => {
  it('parks until the deadline it names (engine time), not a delay from the commit', async () => {
    const h = await held();
    const at = new Date(Date.now() + 3_600_000);
    await apply([{ op: 'wait', run: h.id, token: h.token, deadline: at.toISOString(), signal: 0, seen_cancel: false }]);
    const [r] = await sql('select status, run_at from trellis.runs where id = $1', [h.id]);
    assert.equal(r.status, 'waiting');
    assert.equal(r.run_at.getTime(), at.getTime());
  });

  it('a deadline the engine\'s clock passed while the execution ran makes the run due now and wakes its queue', async () => {
    const h = await held();
    const listener = await fx.db.pool.connect();
    try {
      await listener.query(`listen "trellis:run_ready"`);
      const woke = new Promise<string | undefined>((resolve) => listener.once('notification', (n) => resolve(n.payload)));
      await apply([{ op: 'wait', run: h.id, token: h.token, deadline: new Date(Date.now() - 60_000).toISOString(), signal: 0, seen_cancel: false }]);
      const r = await status(h.id);
      assert.equal(r.status, 'pending');
      assert.equal(r.due, true);
      assert.equal(await woke, h.queue);
    } finally {
      await listener.query(`unlisten *`);
      listener.release();
    }
  });

  it('takes delay_ms from an older worker: from now, and no delay and no deadline is no timer', async () => {
    const a = await held();
    const b = await held();
    await apply([
      { op: 'wait', run: a.id, token: a.token, delay_ms: 3_600_000, signal: 0, seen_cancel: false },
      { op: 'wait', run: b.id, token: b.token, signal: 0, seen_cancel: false },
    ]);
    const rows = await sql(`select id, status, run_at between now() + interval '59 minutes' and now() + interval '61 minutes' as in_an_hour,
                                   run_at = 'infinity' as never from trellis.runs where id = any ($1) order by id = $2 desc`, [[a.id, b.id], a.id]);
    assert.deepEqual(rows.map((r) => [r.status, r.in_an_hour, r.never]), [['waiting', true, false], ['waiting', false, true]]);
  });
});

describe('release and pause with a cancel request pending', () => {
  it('a release (retry backoff) is due now when a cancel arrived during the execution, keeping the cancel reason', async () => {
    const h = await held();
    await sql(`select trellis.run_cancel($1, 'stop it')`, [h.id]);
    await apply([step(h, 0, 's', 'retrying'), { op: 'release', run: h.id, token: h.token, delay_ms: 3_600_000, error: { message: 'flaky' }, failure: false }]);
    const r = await status(h.id);
    assert.equal(r.status, 'pending');
    assert.equal(r.due, true, 'due now, not after the hour of backoff');
    assert.equal(r.error.message, 'stop it');
  });

  it('a pause (dead letter or requested) is not parked but due now when a cancel is pending', async () => {
    const h = await held();
    await sql(`select trellis.run_pause($1)`, [h.id]);
    await sql(`select trellis.run_cancel($1)`, [h.id]);
    await apply([{ op: 'pause', run: h.id, token: h.token, error: { message: 'failed twice' } }]);
    const r = await status(h.id);
    assert.deepEqual([r.status, r.due], ['pending', true]);
  });

  it('a wait is not parked paused but due now when a cancel it did not see came with a pause request', async () => {
    // Pause then cancel, both while the execution ran: the run ended paused
    // with the cancel requested, and stayed so until someone acted again.
    const h = await held();
    await sql(`select trellis.run_pause($1)`, [h.id]);
    await sql(`select trellis.run_cancel($1, 'stop it')`, [h.id]);
    await apply([{ op: 'wait', run: h.id, token: h.token, deadline: null, signal: 0, seen_cancel: false }]);
    const [r] = await sql(`select status, run_at <= now() as due, pause_requested_at is null as unpaused, error->>'message' as reason from trellis.runs where id = $1`, [h.id]);
    assert.deepEqual(r, { status: 'pending', due: true, unpaused: true, reason: 'stop it' });
    // One that saw the cancel (its cleanup waits) is parked by the pause.
    const s = await held();
    await sql(`select trellis.run_cancel($1)`, [s.id]);
    await sql(`select trellis.run_pause($1)`, [s.id]);
    await apply([{ op: 'wait', run: s.id, token: s.token, deadline: null, signal: 0, seen_cancel: true }]);
    assert.equal((await status(s.id)).status, 'paused');
  });

  it('a release (retry backoff) parks the run when a pause was requested while the attempt ran, keeping the backoff', async () => {
    const h = await held();
    await sql(`select trellis.run_pause($1)`, [h.id]);
    await apply([step(h, 0, 's', 'retrying'), { op: 'release', run: h.id, token: h.token, delay_ms: 3_600_000, error: { message: 'flaky' }, failure: false }]);
    const [r] = await sql(`select status, run_at > now() + interval '59 minutes' as backoff, pause_requested_at is null as applied from trellis.runs where id = $1`, [h.id]);
    assert.deepEqual(r, { status: 'paused', backoff: true, applied: true });
    // Resumed, it is due when the backoff ends, not at once.
    assert.equal((await sql(`select trellis.run_resume($1) as s`, [h.id]))[0].s, 'pending');
    assert.deepEqual(await status(h.id), { status: 'pending', due: false, error: { message: 'flaky' } });
  });

  it('an end clears a pause request nothing will carry out: completed, failed or cancelled, no finished run reads as pausing', async () => {
    const ends = [
      (h: Held) => ({ op: 'complete', run: h.id, token: h.token, output: 1 }),
      (h: Held) => ({ op: 'fail', run: h.id, token: h.token, error: { message: 'boom' } }),
      (h: Held) => ({ op: 'cancelled', run: h.id, token: h.token, error: { message: 'cancelled' } }),
    ];
    for (const end of ends) {
      const h = await held();
      await sql(`select trellis.run_pause($1)`, [h.id]);
      await apply([end(h)]);
      const [r] = await sql(`select status, pause_requested_at from trellis.runs where id = $1`, [h.id]);
      assert.equal(r.pause_requested_at, null, `${r.status} run keeps no pause request`);
    }
    // A pending run never started, paused and then cancelled, likewise.
    const [{ id }] = await sql(`select trellis.run_start('w', '{}') as id`);
    await sql(`select trellis.run_cancel($1)`, [id]);
    assert.equal((await sql(`select pause_requested_at from trellis.runs where id = $1`, [id]))[0].pause_requested_at, null);
  });

  it('keeps the backoff when the execution already saw the cancel (a retry inside non-cancellable cleanup)', async () => {
    const h = await held();
    await sql(`select trellis.run_cancel($1)`, [h.id]);
    await apply([{ op: 'release', run: h.id, token: h.token, delay_ms: 3_600_000, failure: false, seen_cancel: true }]);
    const r = await status(h.id);
    assert.deepEqual([r.status, r.due], ['pending', false]);
  });
});

describe('a release of a run its worker never executed (begun false)', () => {
  const attempt = async (id: string) => (await sql('select attempt from trellis.runs where id = $1', [id]))[0].attempt;

  it('takes the claim\'s attempt back; a release of an execution keeps it; a stale one changes nothing', async () => {
    let h = await held();
    assert.equal(await attempt(h.id), 1);
    const givenBack = { op: 'release', run: h.id, token: h.token, delay_ms: 0, failure: false, begun: false };
    assert.deepEqual(await apply([givenBack]), []);
    assert.deepEqual([(await status(h.id)).status, await attempt(h.id)], ['pending', 0]);
    assert.deepEqual(await apply([givenBack]), [{ run_id: h.id, token: h.token }], 'refused as stale the second time');
    assert.equal(await attempt(h.id), 0, 'and not taken back twice');
    h = await reclaim(h.id, h.queue);
    assert.equal(await attempt(h.id), 1, 'the next claim is attempt 1 again');
    await apply([{ op: 'release', run: h.id, token: h.token, delay_ms: 0, failure: false }]);
    h = await reclaim(h.id, h.queue);
    assert.equal(await attempt(h.id), 2, 'a release of an execution counts its attempt');
  });
});

describe('run_retry', () => {
  it('forgets the first failed call and every later one, and gives back the signals those calls consumed', async () => {
    const h = await held();
    await sql('select trellis.signal_send($1, $2, $3)', [h.id, 'ack', '"yes"']);
    const [{ id: signal }] = await sql('select id from trellis.signals where run_id = $1', [h.id]);
    await apply([
      step(h, 0, 'charge', 'completed', { output: 'charged' }),
      step(h, 1, 'ship', 'failed', { error: { message: 'no stock' } }),
      { ...step(h, 2, 'ack', 'completed', { output: { timedOut: false, payload: 'yes' }, signal }), kind: 'signal' },
      step(h, 3, 'refund', 'completed', { output: 'refunded' }),
      { op: 'fail', run: h.id, token: h.token, error: { message: 'no stock' } },
    ]);
    assert.equal((await sql('select consumed_at is not null as used from trellis.signals where id = $1', [signal]))[0].used, true);
    assert.equal((await sql('select trellis.run_retry($1) as s', [h.id]))[0].s, 'pending');
    const left = await sql('select seq, name, status from trellis.steps where run_id = $1 order by seq', [h.id]);
    assert.deepEqual(left, [{ seq: 0, name: 'charge', status: 'completed' }]);
    const [g] = await sql('select consumed_at, consumed_seq from trellis.signals where id = $1', [signal]);
    assert.deepEqual(g, { consumed_at: null, consumed_seq: null }, 'the forgotten wait\'s signal is buffered again');
  });
});

describe('payload sizes', () => {
  it('are the bytes of the JSON text in every check, not the binary jsonb size', async () => {
    const zeros = JSON.stringify(new Array(500).fill(0)); // text "[0, 0, …]" 1500 bytes; jsonb binary > 4000
    const [{ text, binary }] = await sql('select octet_length($1::jsonb::text) as text, pg_column_size($1::jsonb) as binary', [zeros]);
    assert.ok(text < 2000 && binary > 2000, `text ${text}, binary ${binary}`);
    await sql(`select trellis.setting_set('max_payload_bytes', '2000')`);
    try {
      const h = await held();
      await sql('select trellis.signal_send($1, $2, $3)', [h.id, 'big', zeros]);
      await apply([step(h, 0, 's', 'completed', { output: new Array(500).fill(0) }), { op: 'complete', run: h.id, token: h.token, output: new Array(500).fill(0) }]);
      assert.equal((await status(h.id)).status, 'completed');
      const tooBig = JSON.stringify(new Array(700).fill(0)); // 2100 bytes of text
      const h2 = await held();
      await assert.rejects(sql('select trellis.signal_send($1, $2, $3)', [h2.id, 'big', tooBig]), { code: 'TR005' });
      await assert.rejects(apply([{ op: 'complete', run: h2.id, token: h2.token, output: new Array(700).fill(0) }]), { code: 'TR005' });
      assert.equal((await status(h2.id)).status, 'running');
    } finally {
      await sql(`select trellis.setting_set('max_payload_bytes', '1048576')`);
    }
  });

  it('match what workers measure (jsonbTextBytes) for spaces, escapes, unicode and exponent numbers', async () => {
    const values: unknown[] = [
      [0, 0, 0], { a: 1, b: [1, 2, { c: 'x:y,z' }] }, 'a"b\\c\n\t\u0001é😀', 1e21, 1.5e-7, -2.5e30, 1e-7, 123.456,
      1e300, 5e-324, { 'k,:': ['e+5', 1e22, -1e-10, true, false, null] }, [], {}, '', 0.000001, [1.2345e21, 9.87e-15],
    ];
    for (const value of values) {
      const text = JSON.stringify(value);
      const [{ n }] = await sql('select octet_length($1::jsonb::text) as n', [text]);
      assert.equal(jsonbTextBytes(text), n, text);
    }
  });
});
