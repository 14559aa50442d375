/**
 * Waits on a run that is not the waiter's child (decision 0039): a waiting
 * call of kind child names a run another run started; the waiter parks with
 * no timer and a row in trellis.run_watches, and that run's end (a
 * checkpoint, a cancel) wakes it and deletes the row. The two races between
 * the wait and the end: each side either sees the other committed or waits
 * for its lock, so no wake-up is lost. An unknown run wakes the waiter at
 * once and the claim reports it not_found.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, it } from 'node:test';
import type pg from 'pg';
import { useFreshDatabase } from '../helpers/database-fixture.ts';
import { backendId, lockWaiting } from '../helpers/lock-wait.ts';
import { waitFor } from '../helpers/wait.ts';

const fx = useFreshDatabase({
  poolSize: 12,
  setUp: (db) => db.pool.query(`select trellis.workflow_register('[{"name":"w","version":"1"},{"name":"t","version":"1"}]')`),
});

const sql = async (text: string, values: unknown[] = []) => (await fx.db.pool.query(text, values)).rows;
const apply = (q: pg.Pool | pg.PoolClient, ops: unknown[]) => q.query('select * from trellis.checkpoint_apply($1::jsonb)', [JSON.stringify(ops)]);
let queues = 0;

/** A run of workflow `wf` started and claimed on a queue of its own. */
async function held(wf: 'w' | 't'): Promise<{ id: string; token: string }> {
  const queue = `watch${++queues}`;
  const [{ id }] = await sql(`select trellis.run_start($1, '{}', $2)::text as id`, [wf, JSON.stringify({ queue })]);
  const [row] = await sql(`select lease_token::text from trellis.run_claim('x', array[$1], array[$2], '{1}', 1, '30s')`, [queue, wf]);
  return { id, token: row.lease_token };
}

/** The ops of a waiter whose call 0 waits on run `target`, parking it. */
const waitOps = (w: { id: string; token: string }, target: string) => [
  { op: 'step', run: w.id, token: w.token, seq: 0, name: 'awaited', kind: 'child', status: 'waiting', output: { child: target }, attempts: 1 },
  { op: 'wait', run: w.id, token: w.token, delay_ms: null, signal: 0, seen_cancel: false },
];

// (Read on its own: on a Citus cluster a subquery of runs inside run_claim's arguments is refused.)
const queueOf = async (id: string) => (await sql('select queue from trellis.runs where id = $1', [id]))[0].queue as string;
const status = async (id: string) => (await sql('select status, run_at from trellis.runs where id = $1', [id]))[0] as { status: string; run_at: Date | number };
const watches = async (id: string) => (await sql('select waiter_id::text from trellis.run_watches where run_id = $1', [id])).map((r) => r.waiter_id as string);

describe('run_watches', () => {
  it('a waiter on another run parks with no timer and a watch; that run\'s end wakes it and deletes the watch', async () => {
    const t = await held('t');
    const w = await held('w');
    await apply(fx.db.pool, waitOps(w, t.id));
    const parked = await status(w.id);
    assert.equal(parked.status, 'waiting');
    assert.equal(String(parked.run_at), 'Infinity', 'no 30-second look');
    assert.deepEqual(await watches(t.id), [w.id]);
    await apply(fx.db.pool, [{ op: 'complete', run: t.id, token: t.token, output: { ok: 1 } }]);
    assert.equal((await status(w.id)).status, 'pending');
    assert.deepEqual(await watches(t.id), []);
    const [claim] = await sql(`select children from trellis.run_claim('x', array[$1], '{w}', '{1}', 1, '30s')`, [await queueOf(w.id)]);
    assert.deepEqual(claim.children, { [t.id]: { status: 'completed', output: { ok: 1 }, error: null } });
  });

  it('an end that queues behind a wait being written wakes the waiter once it commits', async () => {
    const t = await held('t');
    const w = await held('w');
    const waiter = await fx.db.pool.connect();
    const ender = await fx.db.pool.connect();
    try {
      await waiter.query('begin');
      await apply(waiter, waitOps(w, t.id)); // locks t, writes the watch, uncommitted
      const endPid = await backendId(ender);
      const end = apply(ender, [{ op: 'complete', run: t.id, token: t.token, output: 2 }]);
      await waitFor(() => lockWaiting(fx.db.pool, endPid), { what: 'the end to queue behind the wait' });
      await waiter.query('commit');
      await end;
    } finally {
      waiter.release();
      ender.release();
    }
    assert.equal((await status(w.id)).status, 'pending', 'woken by the end that read the committed watch');
    assert.deepEqual(await watches(t.id), []);
  });

  it('a wait that queues behind an end being written sees the run ended once it commits, and writes no watch', async () => {
    const t = await held('t');
    const w = await held('w');
    const ender = await fx.db.pool.connect();
    const waiter = await fx.db.pool.connect();
    try {
      await ender.query('begin');
      await apply(ender, [{ op: 'fail', run: t.id, token: t.token, error: { name: 'Error', message: 'boom' } }]);
      const waitPid = await backendId(waiter);
      const wait = apply(waiter, waitOps(w, t.id));
      await waitFor(() => lockWaiting(fx.db.pool, waitPid), { what: 'the wait to queue behind the end' });
      await ender.query('commit');
      await wait;
    } finally {
      ender.release();
      waiter.release();
    }
    assert.equal((await status(w.id)).status, 'pending', 'the wait read the end after the lock');
    assert.deepEqual(await watches(t.id), []);
  });

  it('a park that waits on a locked run holds nothing yet, so a cancel of another awaited run goes through (no 40P01)', async () => {
    // Three runs, their roles by lock order: t0, t, w. w waits on t0 and t.
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      ids.push((await sql(`select trellis.run_start('w', '{}', $1)::text as id`, [JSON.stringify({ queue: `cycle${i}-${queues}` })]))[0].id);
    }
    // The order runs are locked in: by id on one node, by (bucket, id) on a distributed schema.
    const distributed = (await sql('select trellis._distributed() as d'))[0].d as boolean;
    const ordered = (await sql(`select id::text from trellis.runs where id = any ($1::uuid[])
      order by case when $2 then bucket else 0 end, id`, [ids, distributed])).map((r) => r.id as string);
    const [t0, t, wId] = ordered;
    const wQueue = (await sql('select queue from trellis.runs where id = $1', [wId]))[0].queue;
    const claimW = async () => ({ id: wId!, token: (await sql(`select lease_token::text from trellis.run_claim('x', array[$1], '{w}', '{1}', 1, '30s')`, [wQueue]))[0].lease_token as string });
    const w1 = await claimW();
    const calls = (w: { id: string; token: string }) => [
      { op: 'step', run: w.id, token: w.token, seq: 0, name: 'a', kind: 'child', status: 'waiting', output: { child: t0 }, attempts: 1 },
      { op: 'step', run: w.id, token: w.token, seq: 1, name: 'b', kind: 'child', status: 'waiting', output: { child: t }, attempts: 1 },
    ];
    await apply(fx.db.pool, [...calls(w1), { op: 'wait', run: w1.id, token: w1.token, delay_ms: null, signal: 0, seen_cancel: false }]);
    assert.equal((await watches(t!)).length, 1);
    // A signal wakes w; it is claimed again and parks again while t0 is held by a third session.
    await sql(`select trellis.signal_send($1, 'poke', '{}')`, [wId]);
    const w2 = await claimW();
    const holder = await fx.db.pool.connect();
    const parker = await fx.db.pool.connect();
    const canceller = await fx.db.pool.connect();
    try {
      await holder.query('begin');
      const [{ bucket }] = await sql('select bucket from trellis.runs where id = $1', [t0]);
      await holder.query('select 1 from trellis.runs where bucket = $1 and id = $2 for no key update', [bucket, t0]);
      const parkPid = await backendId(parker);
      const park = apply(parker, [{ op: 'wait', run: w2.id, token: w2.token, delay_ms: null, signal: 1, seen_cancel: false }])
        .then(() => 'ok', (e: { code?: string | undefined }) => e.code ?? String(e));
      await waitFor(() => lockWaiting(fx.db.pool, parkPid), { what: 'the park to queue behind t0' });
      // The cancel of t locks t and its watcher w: w is not held by the queued park.
      let cancel: string | undefined;
      void canceller.query('select trellis.run_cancel($1, $2) as s', [t, 'stop'])
        .then((r) => r.rows[0].s as string, (e: { code?: string | undefined }) => e.code ?? String(e)).then((v) => { cancel = v; });
      try {
        await waitFor(() => cancel !== undefined, { what: 'the cancel to go through while the park queues behind t0' });
      } finally {
        await holder.query('commit');
      }
      assert.equal(cancel, 'cancelled');
      assert.equal(await park, 'ok');
    } finally {
      holder.release();
      parker.release();
      canceller.release();
    }
    assert.equal((await status(wId!)).status, 'pending', 'the park saw t cancelled and woke w');
  });

  it('run_cancel of the awaited run wakes the waiter', async () => {
    const [{ id: t }] = await sql(`select trellis.run_start('t', '{}', '{"queue":"watch-cancel-t"}')::text as id`);
    const w = await held('w');
    await apply(fx.db.pool, waitOps(w, t));
    assert.equal((await status(w.id)).status, 'waiting');
    assert.equal((await sql('select trellis.run_cancel($1, $2) as s', [t, 'stop']))[0].s, 'cancelled');
    assert.equal((await status(w.id)).status, 'pending');
    assert.deepEqual(await watches(t), []);
  });

  it('a wait on a run that does not exist wakes at once, and the claim reports it not_found', async () => {
    const w = await held('w');
    const ghost = randomUUID();
    await apply(fx.db.pool, waitOps(w, ghost));
    assert.equal((await status(w.id)).status, 'pending');
    assert.deepEqual(await watches(ghost), []);
    const [claim] = await sql(`select children from trellis.run_claim('x', array[$1], '{w}', '{1}', 1, '30s')`, [await queueOf(w.id)]);
    assert.deepEqual(claim.children, {
      [ghost]: { status: 'failed', output: null, error: { name: 'NotFoundError', code: 'not_found', message: `run ${ghost} does not exist` } },
    });
  });

  it('a waiter\'s own child still wakes it through the parent link, with no watch', async () => {
    const p = await held('w');
    const child = randomUUID();
    await apply(fx.db.pool, [
      { op: 'child', run: p.id, token: p.token, seq: 0, name: 'c', child, workflow: 't', version: '1', input: {}, queue: 'watch-own-child', close: 'cancel' },
      { op: 'wait', run: p.id, token: p.token, delay_ms: null, signal: 0, seen_cancel: false },
    ]);
    assert.deepEqual(await watches(child), []);
    assert.equal((await sql('select trellis.run_cancel($1) as s', [child]))[0].s, 'cancelled');
    assert.equal((await status(p.id)).status, 'pending');
  });
});
