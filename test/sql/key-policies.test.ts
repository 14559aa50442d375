/**
 * The SQL contract of run_start's key_policy (decision 0036): 'return' (the
 * default) returns the key's run whatever its status; 'reuse' gives the key
 * of a finished run to a new run (the old one keeps it as former_key) and
 * returns an unfinished one; 'replace' also gives a run that has not begun
 * the new start's input, run_at, priority and metadata; 'supersede' cancels
 * an unfinished run and gives its key to the new run at once. Concurrent starts
 * leave one holder per key; bad input is refused with nothing written.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { useFreshDatabase } from '../helpers/database-fixture.ts';
import { backendId, lockWaiting } from '../helpers/lock-wait.ts';
import { waitFor } from '../helpers/wait.ts';

const fx = useFreshDatabase({
  setUp: (db) => db.pool.query('select trellis.workflow_register($1)', [JSON.stringify([
    { name: 'kp', version: '1', queue: 'kp-q' },
    { name: 'kp', version: '2', queue: 'kp-q', input_schema: { type: 'object', required: ['n'], properties: { n: { type: 'number' } } } },
  ])]),
});

const sql = async (text: string, values: unknown[] = []) => (await fx.db.pool.query(text, values)).rows;
const one = async (text: string, values: unknown[] = []) => (await sql(text, values))[0];
/** A start of version 1, into a queue of the key's own (so `finish` claims that run and no other). */
const start = async (input: unknown, options: { key?: unknown } & Record<string, unknown>): Promise<string> =>
  (await one(`select trellis.run_start('kp', $1, $2) as id`,
    [JSON.stringify(input), JSON.stringify({ version: '1', queue: `q-${String(options.key ?? 'none')}`, ...options })])).id;
const row = (id: string) => one(`select id, key, former_key, status, input, priority, metadata, run_at, attempt from trellis.runs where id = $1`, [id]);
const holders = async (key: string) => (await sql(`select id from trellis.runs where workflow = 'kp' and key = $1`, [key])).map((r) => r.id);
const bucketOf = async (id: string) => (await one('select bucket from trellis.runs where id = $1', [id])).bucket as number;
const counts = async () => one(`select (select count(*) from trellis.runs)::int as runs, (select count(*) from trellis.events)::int as events`);

/** Claim run `id` (the only due run of its queue) and end it with `op`. */
async function finish(id: string, op: 'complete' | 'fail' | 'cancel'): Promise<void> {
  if (op === 'cancel') {
    await sql('select trellis.run_cancel($1)', [id]);
    return;
  }
  const claimed = await claim((await one('select queue from trellis.runs where id = $1', [id])).queue);
  assert.equal(claimed.id, id);
  const end = op === 'complete' ? { output: 'done' } : { error: { name: 'Error', message: 'no' } };
  await sql('select * from trellis.checkpoint_apply($1)', [JSON.stringify([{ op, run: id, token: claimed.lease_token, ...end }])]);
}

const claim = (queue: string) =>
  one(`select id, lease_token, input from trellis.run_claim('w1', array[$1], '{kp}', '{1}', 1, '30 seconds')`, [queue]);

let keys = 0;
const freshKey = () => `k-${++keys}`;

describe('run_start key_policy', () => {
  it('return (the default) returns the key\'s run even once it has finished, and writes nothing', async () => {
    const key = freshKey();
    const id = await start({ n: 1 }, { key });
    await finish(id, 'complete');
    const before = await counts();
    assert.equal(await start({ n: 2 }, { key }), id);
    assert.equal(await start({ n: 2 }, { key, key_policy: 'return' }), id);
    assert.deepEqual(await counts(), before);
    assert.deepEqual((await row(id)).input, { n: 1 });
  });

  for (const end of ['complete', 'fail', 'cancel'] as const) {
    it(`reuse: a ${{ complete: 'completed', fail: 'failed', cancel: 'cancelled' }[end]} run gives its key to a new run and keeps it as former_key`, async () => {
      const key = freshKey();
      const old = await start({ n: 1 }, { key });
      await finish(old, end);
      const fresh = await start({ n: 2 }, { key, key_policy: 'reuse' });
      assert.notEqual(fresh, old);
      assert.deepEqual(await holders(key), [fresh]);
      const was = await row(old);
      assert.equal(was.key, null);
      assert.equal(was.former_key, key);
      assert.equal(was.status, end === 'complete' ? 'completed' : end === 'fail' ? 'failed' : 'cancelled');
      const now = await row(fresh);
      assert.deepEqual([now.status, now.input, now.former_key], ['pending', { n: 2 }, null]);
      // The new run holds the key as any run does: a plain start returns it.
      assert.equal(await start({ n: 3 }, { key }), fresh);
      // A run that gave its key away is not retried beside the key's new run.
      if (end === 'fail') {
        await assert.rejects(sql('select trellis.run_retry($1)', [old]), (e: any) => e.code === 'TR004' && /gave its key 'k-\d+' to a later run/.test(e.message));
        assert.equal((await row(old)).status, 'failed');
      }
    });
  }

  it('reuse returns a run that has not finished (pending, running, paused) and changes nothing', async () => {
    const key = freshKey();
    const id = await start({ n: 1 }, { key, priority: 1 });
    const before = await counts();
    assert.equal(await start({ n: 2 }, { key, key_policy: 'reuse', priority: 9 }), id);
    assert.equal((await claim(`q-${key}`)).id, id);
    assert.equal(await start({ n: 2 }, { key, key_policy: 'reuse' }), id);
    await sql('select trellis.run_pause($1)', [id]);
    assert.equal(await start({ n: 2 }, { key, key_policy: 'replace' }), id);
    assert.deepEqual(await counts(), before);
    const r = await row(id);
    assert.deepEqual([r.input, r.priority, r.key, r.former_key], [{ n: 1 }, 1, key, null]);
  });

  it('replace gives a run that has not begun the new input, run_at, priority and metadata, with a replaced event', async () => {
    const key = freshKey();
    const id = await start({ n: 1 }, { key, run_at: '2030-01-01T00:00:00Z', priority: 1, metadata: { v: 1 } });
    const runs = (await counts()).runs;
    assert.equal(await start({ n: 2 }, { key, key_policy: 'replace', run_at: '2031-06-01T00:00:00Z', priority: 5, metadata: { v: 2 } }), id);
    const r = await row(id);
    assert.deepEqual([r.input, r.priority, r.metadata, r.run_at.toISOString(), r.status, r.attempt],
      [{ n: 2 }, 5, { v: 2 }, '2031-06-01T00:00:00.000Z', 'pending', 0]);
    assert.equal((await counts()).runs, runs);
    const events = await sql(`select kind, body, attempt from trellis.events where run_id = $1 order by id`, [id]);
    assert.deepEqual(events.map((e) => e.kind), ['started', 'replaced']);
    assert.deepEqual(events[1].body, { from: 'pending', to: 'pending', execution: 1 });
    // The outbox reads it, and a filter may ask for it.
    // (Read once no transaction older than it runs: the horizon is the whole server's, other test files included.)
    const read = await waitFor(async () => {
      const rows = await sql(`select kind from trellis.events_read(null, 1000, '{"kinds": ["replaced"]}') where run_id = $1`, [id]);
      return rows.length > 0 ? rows : undefined;
    }, { what: 'the replaced event readable through events_read' });
    assert.deepEqual(read.map((e) => e.kind), ['replaced']);
    // Due now: the replaced run is claimed at once.
    assert.equal(await start({ n: 3 }, { key, key_policy: 'replace' }), id);
    const claimed = await claim(`q-${key}`);
    assert.deepEqual([claimed.id, claimed.input], [id, { n: 3 }]);
    // Begun: replace leaves it alone.
    assert.equal(await start({ n: 4 }, { key, key_policy: 'replace' }), id);
    assert.deepEqual((await row(id)).input, { n: 3 });
  });

  it('replace leaves a run that continued as new alone: pending with attempt 0 again, but begun', async () => {
    const key = freshKey();
    const id = await start({ n: 1 }, { key });
    const claimed = await claim(`q-${key}`);
    assert.equal(claimed.id, id);
    await sql('select * from trellis.checkpoint_apply($1)', [JSON.stringify([{ op: 'continue', run: id, token: claimed.lease_token, input: { n: 2 } }])]);
    const r = await one('select status, attempt, execution, input from trellis.runs where id = $1', [id]);
    assert.deepEqual([r.status, r.attempt, r.execution, r.input], ['pending', 0, 2, { n: 2 }]);
    assert.equal(await start({ n: 99 }, { key, key_policy: 'replace' }), id);
    assert.deepEqual((await row(id)).input, { n: 2 }, 'the input continue-as-new gave it is kept');
    assert.equal((await one(`select count(*)::int as n from trellis.events where run_id = $1 and kind = 'replaced'`, [id])).n, 0);
  });

  it('replace checks the new input against the version\'s shape before it replaces anything', async () => {
    const key = freshKey();
    const id = (await one(`select trellis.run_start('kp', '{"n": 1}', $1) as id`, [JSON.stringify({ version: '2', key })])).id;
    await assert.rejects(sql(`select trellis.run_start('kp', '{"n": "x"}', $1)`, [JSON.stringify({ version: '2', key, key_policy: 'replace' })]),
      { code: 'TR001' });
    assert.deepEqual((await row(id)).input, { n: 1 });
  });

  it('supersede cancels a pending, running or paused holder and gives its key to a new run at once', async () => {
    const key = freshKey();
    // Pending (never begun): cancelled at once.
    const pending = await start({ n: 1 }, { key });
    const second = await start({ n: 2 }, { key, key_policy: 'supersede' });
    assert.notEqual(second, pending);
    assert.deepEqual(await holders(key), [second]);
    const p = await one('select status, key, former_key, error from trellis.runs where id = $1', [pending]);
    assert.deepEqual([p.status, p.key, p.former_key], ['cancelled', null, key]);
    assert.match(p.error.message, new RegExp(`superseded by run ${second}`));
    // Running: its cancellation is requested (it ends when its code sees it); the key moves now.
    const claimed = await claim(`q-${key}`);
    assert.equal(claimed.id, second);
    const third = await start({ n: 3 }, { key, key_policy: 'supersede' });
    assert.deepEqual(await holders(key), [third]);
    const r = await one('select status, key, former_key, cancel_requested_at is not null as requested from trellis.runs where id = $1', [second]);
    assert.deepEqual([r.status, r.key, r.former_key, r.requested], ['running', null, key, true]);
    await sql('select * from trellis.checkpoint_apply($1)', [JSON.stringify([{ op: 'cancelled', run: second, token: claimed.lease_token, error: { name: 'CancelledError', message: 'superseded' } }])]);
    assert.equal((await row(second)).status, 'cancelled');
    // Paused: cancelled at once.
    await sql('select trellis.run_pause($1)', [third]);
    const fourth = await start({ n: 4 }, { key, key_policy: 'supersede' });
    assert.deepEqual([(await row(third)).status, await holders(key)], ['cancelled', [fourth]]);
    // Finished: as reuse.
    await finish(fourth, 'complete');
    const fifth = await start({ n: 5 }, { key, key_policy: 'supersede' });
    assert.deepEqual([(await row(fourth)).status, (await row(fourth)).former_key, await holders(key)], ['completed', key, [fifth]]);
    // A plain start returns the newest holder.
    assert.equal(await start({ n: 6 }, { key }), fifth);
  });

  it('supersede reaches the holder\'s cancel-children, and a start that fails its checks cancels nothing', async () => {
    const key = freshKey();
    const parent = await start({}, { key });
    const claimed = await claim(`q-${key}`);
    const child = '6f1d3c1e-0000-4000-8000-00000000c41d';
    await sql('select * from trellis.checkpoint_apply($1)', [JSON.stringify([
      { op: 'child', run: parent, token: claimed.lease_token, seq: 0, name: 'c', child, workflow: 'kp', version: '1', input: {} },
      { op: 'wait', run: parent, token: claimed.lease_token },
    ])]);
    assert.equal((await row(child)).status, 'pending');
    // A deadline already past: TR001, and the holder and its child are left alone.
    await assert.rejects(start({}, { key, key_policy: 'supersede', deadline: '2000-01-01T00:00:00Z' }), { code: 'TR001' });
    await assert.rejects(sql(`select trellis.run_start('kp', '{"n": "x"}', $1)`, [JSON.stringify({ version: '2', key, key_policy: 'supersede' })]), { code: 'TR001' });
    assert.deepEqual([(await row(parent)).status, (await row(child)).status, await holders(key)], ['waiting', 'pending', [parent]]);
    const fresh = await start({}, { key, key_policy: 'supersede' });
    // The parent had begun: woken with its cancellation requested (it ends when its code sees it); its child never began: cancelled.
    const p = await one('select status, cancel_requested_at is not null as requested, former_key from trellis.runs where id = $1', [parent]);
    assert.deepEqual([p.status, p.requested, p.former_key, (await row(child)).status, await holders(key)], ['pending', true, key, 'cancelled', [fresh]]);
  });

  it('supersede of a holder that finishes while the start waits for its lock takes the key without cancelling it', async () => {
    const key = freshKey();
    const holder = await start({}, { key });
    const claimed = await claim(`q-${key}`);
    const a = await fx.db.pool.connect();
    const b = await fx.db.pool.connect();
    try {
      // A worker's checkpoint holds the run's row (locked, not yet changed: the start reads it running)...
      await a.query('begin');
      // (By bucket and id: a row lock a distributed table takes on one shard.)
      await a.query('select 1 from trellis.runs where bucket = $2 and id = $1 for no key update', [holder, await bucketOf(holder)]);
      const bid = await backendId(b);
      const superseding = b.query(`select trellis.run_start('kp', '{}', $1) as id`, [JSON.stringify({ version: '1', key, key_policy: 'supersede' })]);
      await waitFor(() => lockWaiting(fx.db.pool, bid), { what: 'the superseding start waiting for the holder\'s lock' });
      // ...and completes it while the start waits to cancel it.
      await a.query('select * from trellis.checkpoint_apply($1)', [JSON.stringify([{ op: 'complete', run: holder, token: claimed.lease_token, output: 'done' }])]);
      await a.query('commit');
      const fresh = (await superseding).rows[0].id;
      assert.notEqual(fresh, holder);
      const old = await one('select status, key, former_key, error from trellis.runs where id = $1', [holder]);
      assert.deepEqual([old.status, old.key, old.former_key, old.error], ['completed', null, key, null], 'finished as it did, not cancelled');
      assert.deepEqual(await holders(key), [fresh]);
    } finally {
      await a.query('rollback').catch(() => undefined);
      a.release();
      b.release();
    }
  });

  it('superseding starts of one key take turns: the second cancels the first one\'s run alone, holding no lock on the run before it', async () => {
    const key = freshKey();
    const h1 = await start({}, { key });
    const [a, b, c] = [await fx.db.pool.connect(), await fx.db.pool.connect(), await fx.db.pool.connect()];
    const options = JSON.stringify({ version: '1', key, key_policy: 'supersede' });
    try {
      // A worker's checkpoint holds h1 while two superseding starts come: the first waits for h1's lock...
      await c.query('begin');
      await c.query('select 1 from trellis.runs where bucket = $2 and id = $1 for no key update', [h1, await bucketOf(h1)]);
      await a.query('begin');
      const aid = await backendId(a);
      const first = a.query(`select trellis.run_start('kp', '{"by": "a"}', $1) as id`, [options]);
      await waitFor(() => lockWaiting(fx.db.pool, aid), { what: 'the first superseding start waiting for h1' });
      // ...and the second waits its turn (before the fix it waited for h1's lock too, then went on to lock the first's run).
      await b.query('begin');
      const bid = await backendId(b);
      const second = b.query(`select trellis.run_start('kp', '{"by": "b"}', $1) as id`, [options]);
      await waitFor(() => lockWaiting(fx.db.pool, bid), { what: 'the second superseding start waiting' });
      await c.query('commit');
      const n1 = (await first).rows[0].id;
      await a.query('commit');
      const n2 = (await second).rows[0].id;
      // The second start locked n1 (to cancel it), not h1: a worker may lock h1 meanwhile.
      await c.query('select 1 from trellis.runs where bucket = $2 and id = $1 for no key update nowait', [h1, await bucketOf(h1)]);
      await b.query('commit');
      assert.deepEqual(await holders(key), [n2]);
      assert.deepEqual([(await row(h1)).status, (await row(n1)).status, (await row(n1)).former_key], ['cancelled', 'cancelled', key]);
    } finally {
      for (const x of [a, b, c]) {
        await x.query('rollback').catch(() => undefined);
        x.release();
      }
    }
  });

  it('run_start_many superseding several keys locks their holders up front in id order, not item by item', async () => {
    // Two holders; the item processed first (the smaller key) holds the run that comes later in the
    // lock order (id order; (bucket, id) on a distributed schema: both, here).
    let keys: [string, string] = ['', ''];
    let ids: [string, string] = ['', ''];
    for (let i = 0; ; i++) {
      keys = [`m${i}-a-${freshKey()}`, `m${i}-b-${freshKey()}`];
      ids = [await start({}, { key: keys[0] }), await start({}, { key: keys[1] })];
      if (ids[0] > ids[1] && await bucketOf(ids[0]) >= await bucketOf(ids[1])) break;
    }
    const [w, b] = [await fx.db.pool.connect(), await fx.db.pool.connect()];
    try {
      // A worker's checkpoint holds the smaller-id holder (the second item's)...
      await w.query('begin');
      await w.query('select 1 from trellis.runs where bucket = $2 and id = $1 for no key update', [ids[1], await bucketOf(ids[1])]);
      await b.query('begin');
      const bid = await backendId(b);
      const batch = b.query('select * from trellis.run_start_many($1, $2)', ['kp', JSON.stringify(keys.map((key) => ({ input: {}, options: { version: '1', key, key_policy: 'supersede' } })))]);
      await waitFor(() => lockWaiting(fx.db.pool, bid), { what: 'the batch waiting for the held holder' });
      // ...and goes on to lock the larger-id one, in id order: the batch, waiting for the first, holds neither.
      await w.query('select 1 from trellis.runs where bucket = $2 and id = $1 for no key update nowait', [ids[0], await bucketOf(ids[0])]);
      await w.query('commit');
      const rows = (await batch).rows;
      await b.query('commit');
      assert.equal(rows.length, 2);
      for (const [n, key] of keys.entries()) {
        assert.deepEqual([(await row(ids[n]!)).status, await holders(key)], ['cancelled', [rows[n].id]]);
      }
    } finally {
      for (const x of [w, b]) {
        await x.query('rollback').catch(() => undefined);
        x.release();
      }
    }
  });

  it('concurrent supersede starts of one key leave exactly one unfinished holder: the last to commit', async () => {
    const key = freshKey();
    await start({ n: 0 }, { key });
    const ids = await Promise.all(Array.from({ length: 12 }, (_, i) => start({ n: i + 1 }, { key, key_policy: 'supersede' })));
    assert.equal(new Set(ids).size, 12, 'each start made a run of its own');
    const { n } = await one(`select count(*)::int as n from trellis.runs where workflow = 'kp' and (key = $1 or former_key = $1) and status not in ('completed', 'failed', 'cancelled')`, [key]);
    assert.equal(n, 1, 'one unfinished run of the key');
    const [holder] = await holders(key);
    assert.ok(ids.includes(holder));
    assert.equal((await one(`select count(*)::int as n from trellis.runs where former_key = $1 and status = 'cancelled'`, [key])).n, 12);
  });

  it('refuses a policy without a key, an unknown policy and one that is not a string with TR001, writing nothing', async () => {
    const before = await counts();
    for (const [options, message] of [
      [{ key_policy: 'reuse' }, /key_policy reuse needs a key/],
      [{ key: 'x', key_policy: 'upsert' }, /key_policy must be return, reuse, replace or supersede, not 'upsert'/],
      [{ key: 'x', key_policy: 7 }, /key_policy must be return, reuse, replace or supersede/],
      [{ key: 'x', key_policy: "reuse'; drop table trellis.runs; --" }, /key_policy must be return, reuse, replace or supersede/],
    ] as const) {
      await assert.rejects(start({}, options), (e: any) => e.code === 'TR001' && message.test(e.message), JSON.stringify(options));
    }
    // null is the default, as for the other options.
    const id = await start({}, { key: freshKey(), key_policy: null });
    assert.equal((await counts()).runs, before.runs + 1);
    await finish(id, 'cancel');
  });

  it('a deadline already past starts nothing: the key\'s unfinished run is returned, a finished one keeps its key', async () => {
    const key = freshKey();
    const id = await start({}, { key });
    assert.equal(await start({}, { key, key_policy: 'reuse', deadline: '2000-01-01T00:00:00Z' }), id);
    await finish(id, 'cancel');
    await assert.rejects(start({}, { key, key_policy: 'reuse', deadline: '2000-01-01T00:00:00Z' }), { code: 'TR001' });
    assert.deepEqual(await holders(key), [id]);
    assert.equal((await row(id)).former_key, null);
  });

  it('two concurrent reuse starts of a finished key leave one new run, which both return', async () => {
    const key = freshKey();
    const old = await start({}, { key });
    await finish(old, 'cancel');
    const a = await fx.db.pool.connect();
    const b = await fx.db.pool.connect();
    try {
      await a.query('begin');
      await b.query('begin');
      const first = (await a.query(`select trellis.run_start('kp', '{"by": "a"}', '{"version": "1", "key": "${key}", "key_policy": "reuse"}') as id`)).rows[0].id;
      const bid = await backendId(b);
      const second = b.query(`select trellis.run_start('kp', '{"by": "b"}', '{"version": "1", "key": "${key}", "key_policy": "reuse"}') as id`);
      await waitFor(() => lockWaiting(fx.db.pool, bid), { what: 'the second start waiting for the first' });
      await a.query('commit');
      assert.equal((await second).rows[0].id, first);
      await b.query('commit');
    } finally {
      await a.query('rollback').catch(() => undefined);
      await b.query('rollback').catch(() => undefined);
      a.release();
      b.release();
    }
    assert.equal((await holders(key)).length, 1);
    assert.deepEqual((await row((await holders(key))[0])).input, { by: 'a' });
    assert.equal((await one(`select count(*)::int as n from trellis.runs where former_key = $1`, [key])).n, 1);
  });

  it('a reuse start rolled back leaves the finished run its key', async () => {
    const key = freshKey();
    const old = await start({}, { key });
    await finish(old, 'cancel');
    const c = await fx.db.pool.connect();
    try {
      await c.query('begin');
      await c.query(`select trellis.run_start('kp', '{}', $1)`, [JSON.stringify({ version: '1', key, key_policy: 'reuse' })]);
      await c.query('rollback');
    } finally {
      c.release();
    }
    assert.deepEqual(await holders(key), [old]);
    assert.equal((await row(old)).former_key, null);
  });

  it('run_start_many and run_start_claimed take the policy too', async () => {
    const key = freshKey();
    const old = await start({}, { key });
    await finish(old, 'cancel');
    const ids = (await sql(`select id from trellis.run_start_many('kp', $1) order by ordinality`, [JSON.stringify([
      { input: { n: 1 }, options: { version: '1', key, key_policy: 'reuse', run_at: '2030-01-01T00:00:00Z' } },
      { input: { n: 2 }, options: { version: '1', key, key_policy: 'replace', run_at: '2030-01-01T00:00:00Z' } },
    ])])).map((r) => r.id);
    assert.notEqual(ids[0], old);
    assert.equal(ids[1], ids[0], 'the second item replaced the first one\'s run');
    assert.deepEqual((await row(ids[0])).input, { n: 2 });
    await finish(ids[0], 'cancel');
    const leased = await one(`select id, claimed from trellis.run_start_claimed('kp', '{}', $1, 'w1', '30 seconds')`,
      [JSON.stringify({ version: '1', key, key_policy: 'reuse' })]);
    assert.equal(leased.claimed, true);
    assert.deepEqual(await holders(key), [leased.id]);
    const again = await one(`select id, claimed from trellis.run_start_claimed('kp', '{}', $1, 'w1', '30 seconds')`,
      [JSON.stringify({ version: '1', key, key_policy: 'replace' })]);
    assert.deepEqual([again.id, again.claimed], [leased.id, false]);
  });
});
