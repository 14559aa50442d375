/** The SQL contract of trellis.signal_send (sql/400_signals.sql), called directly. */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, it } from 'node:test';
import pg from 'pg';
import { useFreshDatabase } from '../helpers/database-fixture.ts';

type Made = { id: string; queue: string; token?: string | undefined };

const fx = useFreshDatabase({ setUp: (db) => db.pool.query(`select trellis.workflow_register('[{"name":"w","version":"1","queue":"default"}]')`) });

const sql = async (text: string, values: unknown[] = []) => (await fx.db.pool.query(text, values)).rows;
const send = async (id: string, name: string, payload: unknown, signalId: string | null = null) =>
  (await sql('select trellis.signal_send($1, $2, $3::jsonb, $4) as sent', [id, name, JSON.stringify(payload), signalId]))[0].sent as boolean;
const signals = (id: string) =>
  sql('select name, payload, signal_id, consumed_at from trellis.signals where run_id = $1 order by id', [id]);
const status = async (id: string) => (await sql('select status from trellis.runs where id = $1', [id]))[0].status as string;

let queues = 0;
async function pending(): Promise<Made> {
  const queue = `s${++queues}`;
  const [{ id }] = await sql('select trellis.run_start($1, $2, $3) as id', ['w', '{}', JSON.stringify({ queue })]);
  return { id, queue };
}
async function running(): Promise<Made> {
  const made = await pending();
  const [claimed] = await sql(`select lease_token from trellis.run_claim('w1', array[$1], '{w}', '{1}', 1, '1 minute')`, [made.queue]);
  return { ...made, token: claimed.lease_token };
}
const apply = (made: Made, op: Record<string, unknown>) =>
  sql('select * from trellis.checkpoint_apply($1)', [JSON.stringify([{ run: made.id, token: made.token, execution: 1, ...op }])]);
async function waiting(): Promise<Made> {
  const made = await running();
  await apply(made, { op: 'wait', delay_ms: null, signal: 0 });
  return made;
}
async function finished(how: 'completed' | 'failed' | 'cancelled'): Promise<Made> {
  if (how === 'cancelled') {
    const made = await pending();
    await sql('select trellis.run_cancel($1)', [made.id]);
    return made;
  }
  const made = await running();
  await apply(made, how === 'completed' ? { op: 'complete', output: 1 } : { op: 'fail', error: { message: 'boom' } });
  return made;
}

/** The payloads NOTIFY delivered on `channel` while `fn` ran (a sentinel marks the end). */
async function notified(channel: string, fn: () => Promise<unknown>): Promise<string[]> {
  const client = new pg.Client({ connectionString: fx.db.url });
  await client.connect();
  const payloads: string[] = [];
  client.on('notification', (n) => payloads.push(n.payload ?? ''));
  try {
    await client.query(`listen "${channel}"`);
    await fn();
    const sentinel = randomUUID();
    await sql('select pg_notify($1, $2)', [channel, sentinel]);
    const deadline = Date.now() + 5000;
    while (!payloads.includes(sentinel) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
    assert.ok(payloads.includes(sentinel), 'sentinel notification received');
    return payloads.filter((p) => p !== sentinel);
  } finally {
    await client.end();
  }
}

describe('signal_send', () => {
  it('wakes a waiting run: it becomes pending now, the signal is stored, and run_ready names its queue', async () => {
    const r = await waiting();
    let sent;
    assert.deepEqual(await notified('trellis:run_ready', async () => {
      sent = await send(r.id, 'approved', { by: 'ada' });
    }), [r.queue]);
    assert.equal(sent, true);
    const [run] = await sql(`select status, abs(extract(epoch from run_at - now())) < 5 as now from trellis.runs where id = $1`, [r.id]);
    assert.deepEqual(run, { status: 'pending', now: true });
    assert.deepEqual(await signals(r.id), [{ name: 'approved', payload: { by: 'ada' }, signal_id: null, consumed_at: null }]);
  });

  for (const [what, make] of [['running', running], ['pending', pending]] as const) {
    it(`buffers a signal to a ${what} run without changing it or notifying`, async () => {
      const r = await make();
      assert.deepEqual(await notified('trellis:run_ready', async () => assert.equal(await send(r.id, 'go', 1), true)), []);
      assert.equal(await status(r.id), what);
      assert.equal((await signals(r.id)).length, 1);
    });
  }

  it('buffers a signal to a paused run, which stays paused', async () => {
    const r = await pending();
    await sql('select trellis.run_pause($1)', [r.id]);
    assert.equal(await send(r.id, 'go', null), true);
    assert.equal(await status(r.id), 'paused');
    assert.deepEqual((await signals(r.id)).map((s) => s.payload), [null]);
  });

  it('stores a signal with a repeated signal_id once and returns false for the repeat', async () => {
    const r = await waiting();
    assert.equal(await send(r.id, 'approved', { n: 1 }, 'mail-1'), true);
    assert.equal(await send(r.id, 'approved', { n: 2 }, 'mail-1'), false);
    assert.equal(await send(r.id, 'other-name', { n: 3 }, 'mail-1'), false, 'the id is per run, whatever the name');
    assert.deepEqual((await signals(r.id)).map((s) => [s.signal_id, s.payload]), [['mail-1', { n: 1 }]]);
    assert.equal(await send(r.id, 'approved', { n: 4 }, 'mail-2'), true);
    const other = await pending();
    assert.equal(await send(other.id, 'approved', {}, 'mail-1'), true, 'another run may use the same id');
  });

  it('drops a redelivery of a received signal after the run ended, without an error', async () => {
    const r = await running();
    assert.equal(await send(r.id, 'approved', { by: 'ada' }, 'mail-7'), true);
    await apply(r, { op: 'complete', output: 'done' });
    assert.equal(await send(r.id, 'approved', { by: 'ada' }, 'mail-7'), false);
    assert.equal((await signals(r.id)).length, 1);
    await assert.rejects(send(r.id, 'approved', { by: 'ada' }, 'mail-8'), { code: 'TR004' }, 'a new id is still refused');
  });

  it('raises TR002 for an unknown run', async () => {
    const id = randomUUID();
    await assert.rejects(send(id, 'approved', {}), { code: 'TR002', message: new RegExp(`run ${id} does not exist`) });
    await assert.rejects(send(id, 'approved', {}, 'mail-1'), { code: 'TR002' });
  });

  for (const how of ['completed', 'failed', 'cancelled'] as const) {
    it(`raises TR004 for a ${how} run and stores nothing`, async () => {
      const r = await finished(how);
      await assert.rejects(send(r.id, 'approved', {}), { code: 'TR004', message: new RegExp(`is ${how}`) });
      await assert.rejects(send(r.id, 'approved', {}, 'mail-1'), { code: 'TR004' });
      assert.deepEqual(await signals(r.id), []);
      assert.equal(await status(r.id), how);
    });
  }

  it('raises TR005 for a payload over max_payload_bytes and stores nothing', async () => {
    const r = await waiting();
    const client = await fx.db.pool.connect();
    try {
      await client.query('begin');
      await client.query(`select trellis.setting_set('max_payload_bytes', '100')`);
      await assert.rejects(
        client.query('select trellis.signal_send($1, $2, $3::jsonb)', [r.id, 'big', JSON.stringify({ blob: 'x'.repeat(200) })]),
        { code: 'TR005', message: /signal payload is \d+ bytes, over the limit of 100 bytes/ },
      );
    } finally {
      await client.query('rollback');
      client.release();
    }
    await assert.rejects(send(r.id, 'big', { blob: 'x'.repeat(1_100_000) }), { code: 'TR005' }, 'over the default 1 MiB');
    assert.deepEqual(await signals(r.id), []);
    assert.equal(await status(r.id), 'waiting');
  });

  for (const name of ['', ' leading', 'trailing ', `it's`, 'a"b', 'x; drop table trellis.runs', 'new\nline', 'n'.repeat(129)]) {
    it(`raises TR001 for the signal name ${JSON.stringify(name.length > 20 ? `${name.slice(0, 10)}…(${name.length})` : name)}`, async () => {
      const r = await waiting();
      await assert.rejects(send(r.id, name, {}), { code: 'TR001', message: /invalid signal name/ });
      assert.deepEqual(await signals(r.id), []);
      assert.equal(await status(r.id), 'waiting');
    });
  }

  it('raises TR001 for a null name, an empty signal_id and one over 512 characters', async () => {
    const r = await waiting();
    await assert.rejects(sql(`select trellis.signal_send($1, null, '{}')`, [r.id]), { code: 'TR001' });
    await assert.rejects(send(r.id, 'approved', {}, ''), { code: 'TR001', message: /signal_id must be 1-512 characters/ });
    await assert.rejects(send(r.id, 'approved', {}, 'i'.repeat(513)), { code: 'TR001' });
    assert.equal(await send(r.id, 'approved', {}, 'i'.repeat(512)), true, '512 characters are fine');
  });

  it('raises 22P02 for text that is not JSON, before anything is written', async () => {
    const r = await waiting();
    await assert.rejects(sql(`select trellis.signal_send($1, 'approved', $2)`, [r.id, '{not json']), { code: '22P02' });
    assert.deepEqual(await signals(r.id), []);
  });
});
