/**
 * The SQL contract of trellis.signal_with_start (sql/400_signals.sql,
 * decision 0043): the key's unfinished run is signalled, else a run is
 * started with the key and signalled in the same transaction; a finished
 * holder gives its key up; a repeated signal id is dropped, also after the
 * key's run finished; bad input writes nothing; concurrent calls for one key
 * start one run; a holder that finishes while the call waits for its lock
 * makes the call start a new run instead of failing.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import pg from 'pg';
import { z } from 'zod';
import { inputShape } from '../../src/workflow/input-shape.ts';
import { useFreshDatabase } from '../helpers/database-fixture.ts';
import { backendId, lockWaitersOf } from '../helpers/lock-wait.ts';
import { waitFor } from '../helpers/wait.ts';

const fx = useFreshDatabase({
  setUp: (db) => db.pool.query('select trellis.workflow_register($1)', [JSON.stringify([
    { name: 'cart', version: '1', queue: 'default', input_schema: inputShape(z.object({ customer: z.string() })) },
    { name: 'strict', version: '1', queue: 'default', signals: { add: { type: 'object', properties: { sku: { type: 'string' } }, required: ['sku'] } } },
  ])]),
});

const sql = async (text: string, values: unknown[] = []) => (await fx.db.pool.query(text, values)).rows;
type Outcome = { run_id: string; started: boolean; delivered: boolean };
const sws = async (key: string | null, payload: unknown, o: { signalId?: string; workflow?: string; signal?: string; options?: Record<string, unknown>; input?: unknown } = {}) =>
  (await sql('select * from trellis.signal_with_start($1, $2::jsonb, $3::jsonb, $4, $5::jsonb, $6)', [
    o.workflow ?? 'cart', JSON.stringify(o.input ?? { customer: 'c' }), JSON.stringify({ ...(key === null ? {} : { key }), ...o.options }),
    o.signal ?? 'add', JSON.stringify(payload), o.signalId ?? null,
  ]))[0] as Outcome;
const runsOf = (key: string) =>
  sql(`select id, status, key, former_key from trellis.runs where workflow = 'cart' and (key = $1 or former_key = $1) order by created_at, id`, [key]);
const signalsOf = async (id: string) =>
  (await sql('select payload, signal_id from trellis.signals where run_id = $1 order by id', [id])).map((r) => r.payload);
const counts = async () => (await sql(`select (select count(*) from trellis.runs)::int as runs, (select count(*) from trellis.signals)::int as signals,
                                              (select count(*) from trellis.events)::int as events`))[0];

async function complete(id: string): Promise<void> {
  const [{ queue }] = await sql('select queue from trellis.runs where id = $1', [id]);
  const [claimed] = await sql(`select id, lease_token from trellis.run_claim('w1', array[$1], '{cart}', '{1}', 100, '1 minute') where id = $2`, [queue, id]);
  assert.ok(claimed, 'claimed the run');
  await sql('select * from trellis.checkpoint_apply($1)', [JSON.stringify([{ op: 'complete', run: id, token: claimed.lease_token, execution: 1, output: 1 }])]);
}

describe('a signal id is the key\'s (_key_received): signal_with_start and request_send', () => {
  it('a repeat of an id an earlier run of the key received is dropped, naming that run, even after the key changed hands twice', async () => {
    const a = await sws('kr', { sku: 'a' }, { signalId: 'm-a' });
    await complete(a.run_id);
    const b = await sws('kr', { sku: 'b' }, { signalId: 'm-b' });
    assert.equal(b.started, true);
    await complete(b.run_id);
    const c = await sws('kr', { sku: 'c' }, { signalId: 'm-c' });
    assert.equal(c.started, true);
    // The key's holder is c; a and b gave it up.
    assert.deepEqual(await sws('kr', { sku: 'a' }, { signalId: 'm-a' }), { run_id: a.run_id, started: false, delivered: false });
    assert.deepEqual(await sws('kr', { sku: 'b' }, { signalId: 'm-b' }), { run_id: b.run_id, started: false, delivered: false });
    assert.deepEqual(await signalsOf(c.run_id), [{ sku: 'c' }], 'nothing reached the key\'s current run');
    // request_send: the same look, then the holder.
    const send = async (id: string, key = 'kr') => (await sql(`select run_id, delivered from trellis.request_send('cart', $1, 'add', '{"sku":"r"}', $2)`, [key, id]))[0];
    assert.deepEqual(await send('m-a'), { run_id: a.run_id, delivered: false });
    assert.deepEqual(await send('m-c'), { run_id: c.run_id, delivered: false });
    assert.deepEqual(await send('r-1'), { run_id: c.run_id, delivered: true });
    assert.deepEqual(await signalsOf(c.run_id), [{ sku: 'c' }, { sku: 'r' }]);
    await assert.rejects(send('r-2', 'no-such-key'), (e: { code?: string | undefined }) => e.code === 'TR002');
    // Ids no request can carry (ctx.reply records nothing for such a message): refused, nothing sent, as run_request refuses them.
    const before = (await signalsOf(c.run_id)).length;
    for (const [key, id] of [['kr', ''], ['kr', 'x'.repeat(123)], ['', 'r-3'], [null, 'r-3'], ['kr', "req'1; x"], ['kr', 'ends with space '], ['kr', 'tab\there'], ['kr', 'ünï']] as const) {
      await assert.rejects(sql(`select * from trellis.request_send('cart', $1, 'add', '{}', $2)`, [key, id]), (e: { code?: string | undefined; message?: string }) =>
        e.code === 'TR001' && (key !== 'kr' || /a request id is 1-122 letters/.test(e.message ?? '')), `${key} ${id}`);
      if (key === 'kr') {
        await assert.rejects(sql(`select * from trellis.run_request($1, $2)`, [c.run_id, id]), (e: { code?: string | undefined }) => e.code === 'TR001', `run_request ${id}`);
      }
    }
    assert.equal((await signalsOf(c.run_id)).length, before, 'nothing sent');
    await complete(c.run_id);
    await assert.rejects(send('r-4'), (e: { code?: string | undefined }) => e.code === 'TR004', 'the holder has ended');
    assert.deepEqual(await send('r-1'), { run_id: c.run_id, delivered: false }, 'a repeat after the end is the ended run\'s');
  });
});

describe('trellis.signal_with_start', () => {
  it('starts a run with the key and buffers the signal for it when no run holds the key', async () => {
    const out = await sws('k1', { sku: 'a' });
    assert.equal(out.started, true);
    assert.equal(out.delivered, true);
    const runs = await runsOf('k1');
    assert.deepEqual(runs.map((r) => [r.id, r.status, r.key]), [[out.run_id, 'pending', 'k1']]);
    assert.deepEqual(await signalsOf(out.run_id), [{ sku: 'a' }]);
    const events = await sql(`select kind from trellis.events where run_id = $1`, [out.run_id]);
    assert.deepEqual(events.map((e) => e.kind), ['started']);
  });

  it('signals the key\'s unfinished run and starts nothing; a waiting run is woken', async () => {
    const first = await sws('k2', { sku: 'a' });
    const second = await sws('k2', { sku: 'b' });
    assert.deepEqual(second, { run_id: first.run_id, started: false, delivered: true });
    // Waiting: claimed, then parked without a timer.
    const [claimed] = await sql(`select lease_token from trellis.run_claim('w1', array['default'], '{cart}', '{1}', 100, '1 minute') where id = $1`, [first.run_id]);
    const [{ seen }] = await sql('select max(id)::int as seen from trellis.signals where run_id = $1', [first.run_id]);
    await sql('select * from trellis.checkpoint_apply($1)', [JSON.stringify([{ op: 'wait', run: first.run_id, token: claimed.lease_token, execution: 1, deadline: null, signal: seen }])]);
    assert.equal((await runsOf('k2'))[0].status, 'waiting');
    const third = await sws('k2', { sku: 'c' });
    assert.equal(third.started, false);
    assert.equal((await runsOf('k2'))[0].status, 'pending');
    assert.deepEqual(await signalsOf(first.run_id), [{ sku: 'a' }, { sku: 'b' }, { sku: 'c' }]);
    assert.equal((await runsOf('k2')).length, 1);
  });

  it('starts a new run when the key\'s run has finished: the old run keeps the key as former_key', async () => {
    const first = await sws('k3', { sku: 'a' });
    await complete(first.run_id);
    const second = await sws('k3', { sku: 'b' });
    assert.equal(second.started, true);
    assert.notEqual(second.run_id, first.run_id);
    const runs = await runsOf('k3');
    assert.deepEqual(runs.map((r) => [r.id, r.status, r.key, r.former_key]),
      [[first.run_id, 'completed', null, 'k3'], [second.run_id, 'pending', 'k3', null]]);
    assert.deepEqual(await signalsOf(second.run_id), [{ sku: 'b' }]);
    const cancelled = await sws('k3b', 1);
    await sql('select trellis.run_cancel($1)', [cancelled.run_id]);
    assert.equal((await sws('k3b', 2)).started, true);
  });

  it('drops a repeated signal id, also after the key\'s run finished (nothing is started)', async () => {
    const first = await sws('k4', { sku: 'a' }, { signalId: 'm1' });
    assert.deepEqual(await sws('k4', { sku: 'a' }, { signalId: 'm1' }), { run_id: first.run_id, started: false, delivered: false });
    await complete(first.run_id);
    const before = await counts();
    assert.deepEqual(await sws('k4', { sku: 'a' }, { signalId: 'm1' }), { run_id: first.run_id, started: false, delivered: false });
    assert.deepEqual(await counts(), before);
    // Another id starts the key's next run.
    const next = await sws('k4', { sku: 'b' }, { signalId: 'm2' });
    assert.equal(next.started, true);
    assert.deepEqual(await signalsOf(next.run_id), [{ sku: 'b' }]);
  });

  it('refuses bad input with a typed error and writes nothing', async () => {
    await sws('held', { sku: 'x' });
    const before = await counts();
    const cases: [() => Promise<unknown>, string, RegExp][] = [
      [() => sws(null, 1), 'TR001', /needs a key/],
      [() => sws('', 1), 'TR001', /key must be 1-512/],
      [() => sws('k5', 1, { options: { key_policy: 'reuse' } }), 'TR001', /no key_policy/],
      [() => sws('k5', 1, { options: { bogus: 1 } }), 'TR001', /unknown run_start option/],
      [() => sws('k5', 1, { workflow: 'nope' }), 'TR002', /unknown workflow/],
      [() => sws('k5', 1, { workflow: "x'; drop table trellis.runs; --" }), 'TR001', /invalid workflow name/],
      [() => sws('k5', 1, { signal: "it's" }), 'TR001', /invalid signal name/],
      [() => sws('k5', 1, { signalId: '' }), 'TR001', /signal_id must be 1-512/],
      [() => sws('k5', 1, { input: { customer: 7 } }), 'TR001', /does not match its schema/],
      // The key's run is there: its input is checked all the same, and the signal is not buffered.
      [() => sws('held', 1, { input: { customer: 7 } }), 'TR001', /does not match its schema/],
      [() => sws('k5', { sku: 1 }, { workflow: 'strict', input: {} }), 'TR001', /payload of signal add does not match/],
      [() => sws('k5', 1, { workflow: 'strict', signal: 'remove', input: {} }), 'TR001', /does not wait for signal remove/],
    ];
    for (const [call, code, message] of cases) await assert.rejects(call(), (e: { code?: string; message?: string }) => e.code === code && message.test(e.message ?? ''));
    const [{ value }] = await sql(`select coalesce((select value from trellis.settings where key = 'max_payload_bytes'), '1048576') as value`);
    await sql(`select trellis.setting_set('max_payload_bytes', '100')`);
    try {
      await assert.rejects(sws('k5', 'x'.repeat(200)), { code: 'TR005' });
      await assert.rejects(sws('held', 'x'.repeat(200)), { code: 'TR005' });
    } finally {
      await sql(`select trellis.setting_set('max_payload_bytes', $1)`, [JSON.stringify(value)]);
    }
    assert.deepEqual(await counts(), before);
  });

  it('concurrent calls for one key start one run, and every signal reaches it', async () => {
    const n = 8;
    const pools = Array.from({ length: n }, () => new pg.Pool({ connectionString: fx.db.url, max: 1 }));
    try {
      const outs = await Promise.all(pools.map(async (pool, i) => (await pool.query(
        `select * from trellis.signal_with_start('cart', '{"customer":"c"}', '{"key":"race"}', 'add', $1::jsonb)`, [JSON.stringify(i)])).rows[0] as Outcome));
      assert.equal(outs.filter((o) => o.started).length, 1);
      assert.equal(new Set(outs.map((o) => o.run_id)).size, 1);
      assert.ok(outs.every((o) => o.delivered));
      const payloads = (await signalsOf(outs[0]!.run_id)) as number[];
      assert.deepEqual([...payloads].sort((a, b) => a - b), Array.from({ length: n }, (_, i) => i));
      assert.equal((await runsOf('race')).length, 1);
    } finally {
      await Promise.all(pools.map((p) => p.end()));
    }
  });

  it('a holder that finishes while the call waits for its lock: the call starts a new run', async () => {
    const first = await sws('k6', 1);
    const [claimed] = await sql(`select lease_token from trellis.run_claim('w1', array['default'], '{cart}', '{1}', 100, '1 minute') where id = $1`, [first.run_id]);
    const holder = new pg.Client({ connectionString: fx.db.url });
    await holder.connect();
    const holderId = await backendId(holder);
    try {
      // A row lock alone (no new row version, so the start's look at the
      // key does not wait): the call finds the run unfinished and waits
      // for this lock; the run then completes under it.
      const [{ bucket }] = await sql('select bucket from trellis.runs where id = $1', [first.run_id]);
      await holder.query('begin');
      // By bucket and id (a cluster locks rows only so).
      await holder.query('select 1 from trellis.runs where bucket = $2 and id = $1 for share', [first.run_id, bucket]);
      const call = sws('k6', 2);
      call.catch(() => {});
      await waitFor(async () => (await lockWaitersOf(fx.db.pool, holderId)) > 0, { what: 'the call to wait for the holder\'s lock' });
      await holder.query('select * from trellis.checkpoint_apply($1)', [JSON.stringify([{ op: 'complete', run: first.run_id, token: claimed.lease_token, execution: 1, output: 1 }])]);
      await holder.query('commit');
      const out = await call;
      assert.equal(out.started, true);
      assert.notEqual(out.run_id, first.run_id);
      assert.deepEqual(await signalsOf(out.run_id), [2]);
      assert.deepEqual(await signalsOf(first.run_id), [1]);
    } finally {
      await holder.end();
    }
  });
});

describe('messages a run never read (_late_messages)', () => {
  /** A keyed run started by signal_with_start and claimed; `read` consumes its first message, as its code would. */
  async function claimed(key: string, o: { read?: boolean; before?: unknown } = {}) {
    const first = await sws(key, { sku: 'first' });
    if (o.before !== undefined) await sws(key, o.before);
    const [c] = await sql(`select id, lease_token from trellis.run_claim('w1', array['default'], '{cart}', '{1}', 100, '1 minute') where id = $1`, [first.run_id]);
    assert.ok(c, 'claimed');
    const r = { id: first.run_id as string, token: c.lease_token as string };
    if (o.read !== false) {
      const [{ id }] = await sql(`select min(id)::int as id from trellis.signals where run_id = $1`, [r.id]);
      await sql('select * from trellis.checkpoint_apply($1)', [JSON.stringify([{ op: 'step', run: r.id, token: r.token, execution: 1, seq: 0,
        name: 'add', kind: 'signal', status: 'completed', output: { timedOut: false, payload: { sku: 'first' } }, signal: id, attempts: 1, ms: 0 }])]);
    }
    return r;
  }
  const end = (r: { id: string; token: string }, op: Record<string, unknown>) =>
    sql('select * from trellis.checkpoint_apply($1)', [JSON.stringify([{ run: r.id, token: r.token, execution: 1, ...op }])]);

  it('a run that completes without reading them hands them to the key\'s next run, started with the oldest one\'s start', async () => {
    const r = await claimed('late-1');
    // Sent while the run executes: buffered for it, with the start they came with.
    const late = [await sws('late-1', { sku: 'a' }, { input: { customer: 'ada' } }), await sws('late-1', { sku: 'b' }, { input: { customer: 'bo' } })];
    assert.ok(late.every((o) => o.run_id === r.id && !o.started && o.delivered));
    await end(r, { op: 'complete', output: 1 });
    const runs = await runsOf('late-1');
    assert.deepEqual(runs.map((x) => [x.status, x.key, x.former_key]), [['completed', null, 'late-1'], ['pending', 'late-1', null]]);
    const next = runs[1]!.id as string;
    assert.deepEqual(await signalsOf(next), [{ sku: 'a' }, { sku: 'b' }]);
    assert.deepEqual(await signalsOf(r.id), [{ sku: 'first' }]);
    const [{ input }] = await sql('select input from trellis.runs where id = $1', [next]);
    assert.deepEqual(input, { customer: 'ada' });
    // The start kept with a signal never asks for the coalesced NOTIFY (a checkpoint takes no gate lock).
    await sws('late-1', { sku: 'c' }, { options: { coalesce_notify: true } });
    const [{ start }] = await sql(`select start from trellis.signals where run_id = $1 and start is not null order by id desc limit 1`, [next]);
    assert.equal(start.options.coalesce_notify, undefined);
  });

  it('also a message the run was handed and left unread, and through run_complete / run_fail; a run that read none, a cancel and plain signals keep theirs', async () => {
    // Buffered before the claim (so handed to the execution), left unread when the run returned.
    const seen = await claimed('late-2', { before: { sku: 'handed' } });
    await sql(`select trellis.run_complete($1, $2, '1')`, [seen.id, seen.token]);
    const two = await runsOf('late-2');
    assert.equal(two.length, 2);
    assert.deepEqual(await signalsOf(two[1]!.id), [{ sku: 'handed' }]);

    const failed = await claimed('late-3');
    await sws('late-3', { sku: 'x' });
    await sql(`select trellis.run_fail($1, $2, '{"name": "Error", "message": "no"}')`, [failed.id, failed.token]);
    assert.equal((await runsOf('late-3')).length, 2);

    // A run that read none of its messages (its code ignores them) starts no other.
    const ignorer = await claimed('late-4', { read: false });
    await sws('late-4', { sku: 'z' });
    await end(ignorer, { op: 'complete', output: 1 });
    assert.equal((await runsOf('late-4')).length, 1);

    // A plain signal has no start: it stays.
    const plain = await claimed('late-5');
    await sql(`select trellis.signal_send($1, 'add', '{"sku": "p"}')`, [plain.id]);
    await end(plain, { op: 'complete', output: 1 });
    assert.equal((await runsOf('late-5')).length, 1);

    // A cancelled run (the code saw CancelledError, or an operator ended it) keeps them.
    const cancelled = await claimed('late-6');
    await sws('late-6', { sku: 'c' });
    await end(cancelled, { op: 'cancelled', error: { name: 'CancelledError', message: 'stop' } });
    assert.equal((await runsOf('late-6')).length, 1);
  });

  it('the next run hands on what it did not read only if it read some: a chain ends with a run that reads none', async () => {
    const r = await claimed('late-9');
    for (const sku of ['a', 'b', 'c']) await sws('late-9', { sku });
    await end(r, { op: 'complete', output: 1 });
    // The next run reads one (a), leaves b and c: they go on.
    const [, second] = await runsOf('late-9');
    const [c2] = await sql(`select lease_token from trellis.run_claim('w1', array['default'], '{cart}', '{1}', 100, '1 minute') where id = $1`, [second!.id]);
    const [{ id: a }] = await sql(`select min(id)::int as id from trellis.signals where run_id = $1`, [second!.id]);
    await sql('select * from trellis.checkpoint_apply($1)', [JSON.stringify([
      { op: 'step', run: second!.id, token: c2.lease_token, execution: 1, seq: 0, name: 'add', kind: 'signal', status: 'completed',
        output: { timedOut: false, payload: { sku: 'a' } }, signal: a, attempts: 1, ms: 0 },
      { op: 'complete', run: second!.id, token: c2.lease_token, execution: 1, output: 1 }])]);
    const [, , third] = await runsOf('late-9');
    assert.deepEqual(await signalsOf(third!.id), [{ sku: 'b' }, { sku: 'c' }]);
    // The third reads none: b and c stay with it.
    const [c3] = await sql(`select lease_token from trellis.run_claim('w1', array['default'], '{cart}', '{1}', 100, '1 minute') where id = $1`, [third!.id]);
    await sql('select * from trellis.checkpoint_apply($1)', [JSON.stringify([{ op: 'complete', run: third!.id, token: c3.lease_token, execution: 1, output: 1 }])]);
    assert.equal((await runsOf('late-9')).length, 3);
  });

  it('a start that cannot be made leaves them where they are and the checkpoint goes through', async () => {
    const r = await claimed('late-7');
    await sws('late-7', { sku: 'd' }, { options: { run_at: new Date(Date.now() + 3_600_000).toISOString(), deadline: new Date(Date.now() + 7_200_000).toISOString() } });
    // By the end the start's deadline has passed (moved into the past here): run_start refuses it.
    await sql(`update trellis.signals set start = jsonb_set(start, '{options,deadline}', to_jsonb('2000-01-01T00:00:00Z'::text)) where run_id = $1 and start is not null`, [r.id]);
    await end(r, { op: 'complete', output: 1 });
    const runs = await runsOf('late-7');
    assert.deepEqual(runs.map((x) => x.status), ['completed']);
    assert.deepEqual(await signalsOf(r.id), [{ sku: 'first' }, { sku: 'd' }]);
  });

  it('run_scrub removes the start a signal came with', async () => {
    const r = await claimed('late-8', { read: false });
    await sws('late-8', { sku: 'e' }, { input: { customer: 'private' } });
    await end(r, { op: 'complete', output: 1 });
    await sql('select trellis.run_scrub($1)', [r.id]);
    const [{ n }] = await sql('select count(*)::int as n from trellis.signals where run_id = $1 and start is not null', [r.id]);
    assert.equal(n, 0);
  });
});
