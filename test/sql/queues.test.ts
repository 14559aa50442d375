/**
 * The SQL contract of queues and flow control (sql/220_queues.sql,
 * sql/230_queue_claim.sql): queue_set and its bad input, run_claim under
 * concurrency, key_concurrency, rate and pause, fair rotation across keys,
 * an expired lease giving its slot back, and the queue_stats view.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import pg from 'pg';
import { useFreshDatabase } from '../helpers/database-fixture.ts';

const fx = useFreshDatabase({
  virtualClock: true,
  setUp: (db) => db.pool.query('select trellis.workflow_register($1)', [JSON.stringify([{ name: 'w', version: '1', queue: 'default' }])]),
});

const q = (text: string, values?: unknown[]) => fx.db.pool.query(text, values);

async function start(queue: string, n: number, options: Record<string, unknown> = {}): Promise<void> {
  await q(`select trellis.run_start('w', '{}', $1::jsonb || jsonb_build_object('priority', i % 3)) from generate_series(1, $2) i`,
    [JSON.stringify({ queue, ...options }), n]);
}

async function claim(queue: string, limit: number, lease = '30 seconds'): Promise<{ id: string; lease_token: string }[]> {
  const { rows } = await q(`select id, lease_token from trellis.run_claim('w1', $1, '{w}', '{1}', $2, $3::interval)`, [[queue], limit, lease]);
  return rows;
}

async function running(queue: string): Promise<number> {
  const { rows } = await q(`select count(*)::int as n from trellis.runs where queue = $1 and status = 'running'`, [queue]);
  return rows[0].n;
}

async function complete(runs: { id: string; lease_token: string }[]): Promise<void> {
  await q('select * from trellis.checkpoint_apply($1)', [JSON.stringify(runs.map((r) => ({ op: 'complete', run: r.id, token: r.lease_token, output: null })))]);
}

describe('queue_set', () => {
  it('creates a queue with its options, keeps absent ones and clears null ones', async () => {
    await q(`select trellis.queue_set('set-a', '{"concurrency": 5, "rate": {"limit": 10, "period": "1 second"}}')`);
    await q(`select trellis.queue_set('set-a', '{"key_concurrency": 2, "rate": null}')`);
    const { rows } = await q(`select concurrency, key_concurrency, rate_limit, rate_period, paused from trellis.queues where name = 'set-a'`);
    assert.deepEqual(rows[0], { concurrency: 5, key_concurrency: 2, rate_limit: null, rate_period: null, paused: false });
  });

  for (const [what, name, options] of [
    ['a concurrency of 0', 'bad-a', { concurrency: 0 }],
    ['a negative key concurrency', 'bad-b', { key_concurrency: -1 }],
    ['a fractional concurrency', 'bad-c', { concurrency: 1.5 }],
    ['a rate with a zero period', 'bad-d', { rate: { limit: 5, period: '0 seconds' } }],
    ['a rate with a limit of 0', 'bad-e', { rate: { limit: 0, period: '1 second' } }],
    ['a rate period that is not an interval', 'bad-f', { rate: { limit: 5, period: 'soon' } }],
    ['a rate period that is a number as text (seconds in SQL, milliseconds in TypeScript)', 'bad-f2', { rate: { limit: 5, period: '1000' } }],
    ['a rate period that is a decimal number as text', 'bad-f3', { rate: { limit: 5, period: ' 1.5 ' } }],
    ['an unknown option', 'bad-g', { concurency: 3 }],
    ['an unknown key in rate', 'bad-h', { rate: { limit: 5, period: '1 second', burst: 10 } }],
    ['a queue name with quotes and SQL', `x'; drop table trellis.runs; --`, { concurrency: 1 }],
  ] as const) {
    it(`refuses ${what} with TR001 and writes nothing`, async () => {
      await assert.rejects(q('select trellis.queue_set($1, $2)', [name, JSON.stringify(options)]), { code: 'TR001' });
      const { rows } = await q('select count(*)::int as n from trellis.queues where name = $1', [name]);
      assert.equal(rows[0].n, 0);
    });
  }

  it('refuses a concurrency key over 200 characters with TR001 and starts nothing', async () => {
    const before = await q(`select count(*)::int as n from trellis.runs`);
    await assert.rejects(q(`select trellis.run_start('w', '{}', $1)`, [JSON.stringify({ concurrency_key: 'k'.repeat(201) })]),
      { code: 'TR001', message: /concurrency_key/ });
    const afterwards = await q(`select count(*)::int as n from trellis.runs`);
    assert.equal(afterwards.rows[0].n, before.rows[0].n);
  });
});

describe('a queue row on first use', () => {
  it('a start into a queue without a row inserts the row with the defaults, once', async () => {
    assert.equal((await q(`select count(*)::int as n from trellis.queues where name = 'fresh-q'`)).rows[0].n, 0);
    await start('fresh-q', 3);
    const { rows } = await q(`select concurrency, key_concurrency, rate_limit, fair, paused from trellis.queues where name = 'fresh-q'`);
    assert.deepEqual(rows, [{ concurrency: null, key_concurrency: null, rate_limit: null, fair: false, paused: false }]);
    // Unlimited: the lock-free claim takes all three.
    assert.equal((await claim('fresh-q', 10)).length, 3);
  });

  it('concurrent first starts of a queue each start their run and leave one row; a rolled-back first start leaves none', async () => {
    const a = await fx.db.pool.connect();
    const b = await fx.db.pool.connect();
    try {
      await a.query('begin');
      await a.query(`select trellis.run_start('w', '{}', '{"queue": "race-q"}')`);
      await b.query('begin');
      // b's insert of the row waits for a's transaction.
      const bStart = b.query(`select trellis.run_start('w', '{}', '{"queue": "race-q"}')`);
      await a.query('commit');
      await bStart;
      await b.query('commit');
      const { rows } = await q(`select (select count(*)::int from trellis.queues where name = 'race-q') as queues,
                                       (select count(*)::int from trellis.runs where queue = 'race-q') as runs`);
      assert.deepEqual(rows[0], { queues: 1, runs: 2 });

      await a.query('begin');
      await a.query(`select trellis.run_start('w', '{}', '{"queue": "undone-q"}')`);
      await b.query('begin');
      const bOther = b.query(`select trellis.run_start('w', '{}', '{"queue": "undone-q"}')`);
      await a.query('rollback');
      await bOther;
      await b.query('commit');
      const again = await q(`select (select count(*)::int from trellis.queues where name = 'undone-q') as queues,
                                    (select count(*)::int from trellis.runs where queue = 'undone-q') as runs`);
      assert.deepEqual(again.rows[0], { queues: 1, runs: 1 });
    } finally {
      a.release();
      b.release();
    }
  });

  it('a registered version\'s default queue has its row before any start; a start into it reads nothing of trellis.queues, one into another queue or leased at once does', async () => {
    await q('select trellis.workflow_register($1)', [JSON.stringify([{ name: 'reg', version: '1', queue: 'reg-q' }])]);
    const { rows } = await q(`select concurrency, key_concurrency, rate_limit, fair, paused from trellis.queues where name = 'reg-q'`);
    assert.deepEqual(rows, [{ concurrency: null, key_concurrency: null, rate_limit: null, fair: false, paused: false }]);
    // Whether a start reads trellis.queues at all: with the table locked by another session, a start
    // that reads it waits (here: gives up after lock_timeout, 55P03), one that does not goes through.
    // (A lock rather than pg_stat_xact_user_tables, which on Citus counts the coordinator's reads of
    // a reference table on a worker node's shard.) On one node only: in a full `npm run test:citus`
    // a default-queue start waited the whole 30 s for the locked reference table (it went through
    // twice with the file run alone on a cluster), so on Citus a lock on one reference table can
    // hold up statements that do not name it; there the starts are made without the lock.
    await q(`select trellis.run_start('reg', '{}', '{"queue": "other-q"}')`);
    if (process.env.TRELLIS_TEST_CITUS === '1') {
      await q(`select trellis.run_start('reg', '{}', '{}')`);
      await q(`select trellis.run_start('reg', '{}', '{"queue": "reg-q"}')`);
      assert.equal((await q(`select count(*)::int as n from trellis.runs where workflow = 'reg'`)).rows[0].n, 3);
      return;
    }
    const holder = await fx.db.pool.connect();
    // A new session for the starts: its first call of run_start compiles the function while the
    // table is locked (a compiled row variable of trellis.queues's type once locked the table to
    // look its columns up, so a pooled connection that had not yet started a run waited: a flake).
    const c = new pg.Client({ connectionString: fx.db.url });
    c.on('error', () => undefined);
    await c.connect();
    try {
      await holder.query('begin');
      await holder.query('lock table trellis.queues in access exclusive mode');
      // A start that does not read the table may still wait a moment for another lock on a busy
      // cluster: 30 s for it (one that read the table would fail here with 55P03 after them).
      await c.query(`set lock_timeout = '30s'`);
      await c.query(`select trellis.run_start('reg', '{}', '{}')`);
      await c.query(`select trellis.run_start('reg', '{}', '{"queue": "reg-q"}')`);
      await c.query(`set lock_timeout = '300ms'`);
      // Another queue, even one with its row already: the start probes the row.
      await assert.rejects(c.query(`select trellis.run_start('reg', '{}', '{"queue": "other-q"}')`), { code: '55P03' });
      // Leased at once: the row's flow control decides.
      await assert.rejects(c.query(`select * from trellis.run_start_claimed('reg', '{}', '{}', 'w1', '30 seconds')`), { code: '55P03' });
    } finally {
      await holder.query('rollback').catch(() => undefined);
      holder.release();
      await c.end();
    }
    assert.equal((await q(`select count(*)::int as n from trellis.runs where workflow = 'reg'`)).rows[0].n, 3);
  });

  it('a version registered again with another default queue gets that queue\'s row; migration 000026 makes the rows of earlier registrations', async () => {
    await q('select trellis.workflow_register($1)', [JSON.stringify([{ name: 'moved', version: '1', queue: 'old-q' }])]);
    await q('select trellis.workflow_register($1)', [JSON.stringify([{ name: 'moved', version: '1', queue: 'new-q' }])]);
    assert.equal((await q(`select count(*)::int as n from trellis.queues where name in ('old-q', 'new-q')`)).rows[0].n, 2);
    // A registration from before the migration: the workflow's row without its queue's.
    await q(`delete from trellis.queues where name = 'new-q'`);
    await q(readFileSync(new URL('../../migrations/committed/000026.sql', import.meta.url), 'utf8'));
    assert.equal((await q(`select count(*)::int as n from trellis.queues where name = 'new-q'`)).rows[0].n, 1);
  });

  it('a start into an existing queue writes nothing to trellis.queues', async () => {
    await start('quiet-q', 1);
    const before = await q(`select xmin::text as x, updated_at from trellis.queues where name = 'quiet-q'`);
    await start('quiet-q', 5);
    const afterwards = await q(`select xmin::text as x, updated_at from trellis.queues where name = 'quiet-q'`);
    assert.deepEqual(afterwards.rows, before.rows);
  });
});

describe('run_claim with flow control', () => {
  it('never leases more than concurrency runs of the queue, and a finished run frees its slot', async () => {
    await q(`select trellis.queue_set('conc', '{"concurrency": 3}')`);
    await start('conc', 10);
    const first = await claim('conc', 10);
    assert.equal(first.length, 3);
    assert.equal((await claim('conc', 10)).length, 0);
    await complete(first.slice(0, 2));
    assert.equal((await claim('conc', 10)).length, 2);
    assert.equal(await running('conc'), 3);
  });

  it('a claim of a limited queue locks no run beyond those it leases', async () => {
    await q(`select trellis.queue_set('gated', '{"concurrency": 2}')`);
    await start('gated', 10);
    const a = await fx.db.pool.connect();
    try {
      await a.query('begin');
      const { rows } = await a.query(`select id from trellis.run_claim('w1', '{gated}', '{w}', '{1}', 10, '30 seconds')`);
      assert.equal(rows.length, 2);
      // The claim's transaction is still open: every pending run it did not lease is free to lock.
      // (Bucket by bucket: on Citus a row lock names one shard.)
      let free = 0;
      for (const { bucket } of (await q(`select distinct bucket from trellis.runs where queue = 'gated' and status = 'pending'`)).rows) {
        free += (await q(`select count(*)::int as n from (select id from trellis.runs where bucket = $1 and queue = 'gated'
                                                            and status = 'pending' for update skip locked) x`, [bucket])).rows[0].n;
      }
      assert.equal(free, 8);
      await a.query('rollback');
    } finally {
      a.release();
    }
  });

  it('gives an expired lease\'s slot back to the next claim', async () => {
    await q(`select trellis.queue_set('expire', '{"concurrency": 2}')`);
    await start('expire', 4);
    assert.equal((await claim('expire', 10, '5 seconds')).length, 2);
    assert.equal((await claim('expire', 10)).length, 0);
    await q(`select trellis.clock_advance('6 seconds')`);
    // The dead holder's two runs are reclaimed first, then two runs are leased again.
    assert.equal((await claim('expire', 10)).length, 2);
    assert.equal(await running('expire'), 2);
  });

  it('holds key_concurrency per concurrency key', async () => {
    await q(`select trellis.queue_set('perkey', '{"key_concurrency": 2}')`);
    await start('perkey', 5, { concurrency_key: 'a' });
    await start('perkey', 5, { concurrency_key: 'b' });
    await start('perkey', 3);
    const got = await claim('perkey', 100);
    const { rows } = await q(`select coalesce(concurrency_key, '-') as k, count(*)::int as n from trellis.runs
                               where queue = 'perkey' and status = 'running' group by 1 order by 1`);
    assert.deepEqual(rows, [{ k: '-', n: 3 }, { k: 'a', n: 2 }, { k: 'b', n: 2 }]);
    assert.equal(got.length, 7);
  });

  it('rotates across keys: a key with 10 runs is served alongside one with 1,000', async () => {
    await q(`select trellis.queue_set('fairq', '{"fair": true}')`);
    await start('fairq', 1000, { concurrency_key: 'a-big' });
    await start('fairq', 10, { concurrency_key: 'b-small' });
    const got = await claim('fairq', 20);
    const { rows } = await q(`select concurrency_key as k, count(*)::int as n from trellis.runs
                               where id = any ($1) group by 1 order by 1`, [got.map((r) => r.id)]);
    assert.deepEqual(rows, [{ k: 'a-big', n: 10 }, { k: 'b-small', n: 10 }]);
  });

  it('keeps priority order within a key', async () => {
    await q(`select trellis.queue_set('prio', '{"fair": true}')`);
    await start('prio', 9, { concurrency_key: 'k' });
    const got = await claim('prio', 3);
    const { rows } = await q(`select priority from trellis.runs where id = any ($1)`, [got.map((r) => r.id)]);
    assert.deepEqual(rows.map((r) => r.priority), [2, 2, 2]);
  });

  it('claims at most rate_limit runs per window of rate_period', async () => {
    await q(`select trellis.queue_set('rated', '{"rate": {"limit": 4, "period": "1 minute"}}')`);
    // Start of a fresh window, so the test never straddles two.
    await q(`select trellis.clock_advance(date_trunc('minute', trellis.now()) + interval '1 minute' - trellis.now())`);
    await start('rated', 10);
    const first = await claim('rated', 3);
    await complete(first);
    assert.equal(first.length, 3);
    assert.equal((await claim('rated', 10)).length, 1);
    assert.equal((await claim('rated', 10)).length, 0);
    await q(`select trellis.clock_advance('1 minute')`);
    assert.equal((await claim('rated', 10)).length, 4);
  });

  it('queue_set with the same rate again keeps the window\'s count (every replica applies its options at boot); a new period starts afresh', async () => {
    await q(`select trellis.queue_set('rated-again', '{"rate": {"limit": 3, "period": "1 minute"}}')`);
    await q(`select trellis.clock_advance(date_trunc('minute', trellis.now()) + interval '1 minute' - trellis.now())`);
    await start('rated-again', 12);
    assert.equal((await claim('rated-again', 10)).length, 3);
    for (let i = 0; i < 3; i++) {
      await q(`select trellis.queue_set('rated-again', '{"concurrency": null, "rate": {"limit": 3, "period": "60 seconds"}}')`);
      assert.equal((await claim('rated-again', 10)).length, 0, 'the same window, already at its limit');
    }
    // A higher limit in the same window lets only the difference through.
    await q(`select trellis.queue_set('rated-again', '{"rate": {"limit": 5, "period": "1 minute"}}')`);
    assert.equal((await claim('rated-again', 10)).length, 2);
    const { rows: [used] } = await q(`select rate_used from trellis.queue_stats where queue = 'rated-again'`);
    assert.equal(used.rate_used, 5);
    // Another period: other windows, counted from zero.
    await q(`select trellis.queue_set('rated-again', '{"rate": {"limit": 5, "period": "1 hour"}}')`);
    assert.equal((await claim('rated-again', 10)).length, 5);
  });

  it('queue_set refuses rate.period as a bare number (PostgreSQL would read it as seconds, TypeScript as milliseconds)', async () => {
    await assert.rejects(q(`select trellis.queue_set('rated-number', '{"rate": {"limit": 5, "period": 1000}}')`),
      { code: 'TR001', message: /rate.period must be an interval with a unit, as text/ });
    const { rows } = await q(`select 1 from trellis.queues where name = 'rated-number' and rate_period is not null`);
    assert.equal(rows.length, 0);
  });

  it('a claim whose transaction began before a newer window was opened claims nothing: that window\'s count is not begun again', async () => {
    // Windows of 1 ms: a claim that waited for the queue row's lock while
    // another claim opened a newer window holds an older transaction time.
    await q(`select trellis.queue_set('rated-stale', '{"rate": {"limit": 2, "period": "1 millisecond"}}')`);
    await start('rated-stale', 8);
    const stale = await fx.db.pool.connect();
    try {
      await stale.query('begin');
      const { rows: [{ began }] } = await stale.query(`select trellis.now() as began`);
      // Past the stale transaction's window (waited for, not assumed).
      await q(`select pg_sleep(0.002)`);
      const fresh = await claim('rated-stale', 10);
      assert.equal(fresh.length, 2);
      const { rows: [row] } = await q(`select rate_window, rate_count from trellis.queues where name = 'rated-stale'`);
      assert.ok(row.rate_window.getTime() > began.getTime(), 'the fresh claim opened a newer window');
      const { rows: late } = await stale.query(`select id from trellis.run_claim('w2', '{rated-stale}', '{w}', '{1}', 10, '30 seconds')`);
      assert.equal(late.length, 0, 'the stale claim takes nothing (before the fix it opened its own window again and took 2)');
      await stale.query('commit');
      const { rows: [after] } = await q(`select rate_window, rate_count from trellis.queues where name = 'rated-stale'`);
      assert.deepEqual(after, row, 'the window and its count are as the fresh claim left them');
    } finally {
      await stale.query('rollback').catch(() => undefined);
      stale.release();
    }
    assert.equal(await running('rated-stale'), 2);
    // A window stored ahead of the clock (a server clock set back) gives way to the current one.
    await q(`update trellis.queues set rate_window = trellis.now() + interval '1 hour', rate_count = 2 where name = 'rated-stale'`);
    assert.equal((await claim('rated-stale', 10)).length, 2);
  });

  it('claims nothing from a paused queue until it is resumed; running runs keep their lease', async () => {
    await start('pausable', 4);
    const held = await claim('pausable', 2);
    await q(`select trellis.queue_pause('pausable')`);
    assert.equal((await claim('pausable', 10)).length, 0);
    const { rows } = await q(`select count(*)::int as n from trellis.runs where id = any ($1) and status = 'running'`, [held.map((r) => r.id)]);
    assert.equal(rows[0].n, 2);
    await complete(held);
    await q(`select trellis.queue_resume('pausable')`);
    assert.equal((await claim('pausable', 10)).length, 2);
  });

  it('a start into a queue with flow control is not leased at once (run_start_claimed leaves it pending)', async () => {
    await q(`select trellis.queue_set('nohandoff', '{"concurrency": 1}')`);
    const { rows } = await q(`select claimed from trellis.run_start_claimed('w', '{}', '{"queue": "nohandoff"}', 'w1', '30 seconds')`);
    assert.equal(rows[0].claimed, false);
  });
});

describe('queue_stats', () => {
  it('shows counts, lag, limits and their use per queue', async () => {
    await q(`select trellis.queue_set('statq', '{"concurrency": 2, "key_concurrency": 1}')`);
    await start('statq', 3, { concurrency_key: 't1' });
    await start('statq', 2, { concurrency_key: 't2' });
    await q(`select trellis.clock_advance('3 seconds')`);
    await claim('statq', 10);
    const { rows } = await q(`select pending::int, due::int, running::int, concurrency, key_concurrency, key_running_max::int,
                                     extract(epoch from lag) >= 3 as lagging, paused
                                from trellis.queue_stats where queue = 'statq'`);
    assert.deepEqual(rows[0], { pending: 3, due: 3, running: 2, concurrency: 2, key_concurrency: 1, key_running_max: 1, lagging: true, paused: false });
  });

  it('reads the same in its one-node form and in the form a Citus cluster plans (there, the figures in that form)', async () => {
    // Every state and column in play: waiting, paused, finished and not yet due runs beside pending and running ones.
    await q(`select trellis.queue_set('formq', '{"concurrency": 5, "key_concurrency": 2, "rate": {"limit": 100, "period": "1 minute"}}')`);
    await start('formq', 4, { concurrency_key: 'a' });
    await start('formq', 2, { concurrency_key: 'b' });
    await start('formq', 1, { run_at: '2999-01-01T00:00:00Z' });
    await q(`select trellis.clock_advance('2 seconds')`);
    const held = await claim('formq', 4);
    await q('select * from trellis.checkpoint_apply($1)', [JSON.stringify([
      { op: 'complete', run: held[0]!.id, token: held[0]!.lease_token, output: 1 },
      { op: 'wait', run: held[1]!.id, token: held[1]!.lease_token, delay_ms: 60_000 }])]);
    const [{ id: pausing }] = (await q(`select id from trellis.runs where queue = 'formq' and status = 'pending' and run_at < '2999-01-01' limit 1`)).rows;
    await q('select trellis.run_pause($1)', [pausing]);
    // lag in seconds beside the rest: the engine time moves between two reads.
    const read = async () => (await q(`select *, extract(epoch from lag)::float8 as lag_s from trellis.queue_stats order by queue`)).rows
      .map(({ lag: _, lag_s, ...r }) => ({ ...r, lag_s: lag_s === null ? null : Number(lag_s) }));
    const same = (a: Record<string, unknown>[], b: Record<string, unknown>[]) => {
      assert.deepEqual(a.map((r) => ({ ...r, lag_s: r.lag_s === null })), b.map((r) => ({ ...r, lag_s: r.lag_s === null })));
      for (const [i, r] of a.entries()) if (r.lag_s !== null) assert.ok(Math.abs((r.lag_s as number) - (b[i]!.lag_s as number)) < 5, `lag of ${r.queue}`);
    };
    const oneNode = await read();
    const form = oneNode.find((r) => r.queue === 'formq');
    // (Which keys the two running runs have depends on the claim's rotation.)
    const [{ n: busiest }] = (await q(`select max(n)::text as n from (select count(*) as n from trellis.runs
      where queue = 'formq' and status = 'running' and concurrency_key is not null group by concurrency_key) k`)).rows;
    assert.deepEqual([form?.pending, form?.due, form?.running, form?.waiting, form?.paused_runs, form?.finished_last_minute, form?.key_running_max],
      ['2', '1', '2', '1', '1', '1', busiest], JSON.stringify(form));
    // On a cluster the view is already the distributed form, which the
    // figures above checked; the one-node form cannot be read there.
    if ((await q(`select trellis._distributed() as d`)).rows[0].d === true) return;
    try {
      await q('select trellis._queue_stats_view(true)');
      same(await read(), oneNode);
    } finally {
      await q('select trellis._queue_stats_view(false)');
    }
  });
});

describe('rotation past keys at their limit', () => {
  it('a claim moves past keys at key_concurrency to the keys after them', async () => {
    await q(`select trellis.queue_set('capped', '{"key_concurrency": 1}')`);
    // Keys k01..k06 with two runs each; a claim of 3 takes one of k01..k03.
    for (let i = 1; i <= 6; i++) await start('capped', 2, { concurrency_key: `k0${i}` });
    const first = await claim('capped', 3);
    assert.equal(first.length, 3);
    // k01..k03 are at their limit: the next claims serve k04..k06.
    const second = await claim('capped', 3);
    const { rows } = await q(`select concurrency_key as k from trellis.runs where id = any ($1) order by 1`, [second.map((r) => r.id)]);
    assert.deepEqual(rows.map((r) => r.k), ['k04', 'k05', 'k06']);
    assert.equal((await claim('capped', 3)).length, 0);
  });
});

describe('runs without a key behind keyed runs held at key_concurrency', () => {
  // Key 'a' is at its limit (one run of it running): its pending runs stay.
  async function holdKey(queue: string): Promise<void> {
    await q(`select trellis.queue_set($1, '{"key_concurrency": 1}')`, [queue]);
    await q(`select trellis.run_start('w', '{}', jsonb_build_object('queue', $1::text, 'concurrency_key', 'a', 'priority', 9))`, [queue]);
    // (A lease that outlasts the test: on a slow cluster the backlog's start takes long.)
    assert.equal((await claim(queue, 1, '1 hour')).length, 1);
  }
  async function keyless(queue: string, n: number): Promise<string[]> {
    await q(`select trellis.clock_advance('1 second')`);
    const { rows } = await q(`select trellis.run_start('w', '{}', jsonb_build_object('queue', $1::text)) as id from generate_series(1, $2)`, [queue, n]);
    return rows.map((r) => r.id as string).sort();
  }
  // Claims until the runs without a key are claimed: how many it took.
  async function claimsUntil(queue: string, ids: string[]): Promise<number> {
    const got: string[] = [];
    for (let n = 1; n <= 10; n++) {
      for (const r of await claim(queue, 10)) got.push(r.id);
      if (got.length >= ids.length) {
        assert.deepEqual(got.sort(), ids, 'only the runs without a key were claimed');
        return n;
      }
    }
    assert.fail(`${got.length} of ${ids.length} runs without a key claimed in 10 claims`);
  }

  it('300 held keyed runs ahead in claim order (higher priority): the runs without a key are claimed at once', async () => {
    await holdKey('held-300');
    await q(`select trellis.run_start('w', '{}', '{"queue": "held-300", "concurrency_key": "a", "priority": 5}') from generate_series(1, 300)`);
    const ids = await keyless('held-300', 3);
    assert.equal(await claimsUntil('held-300', ids), 1);
  });

  it('2,500 held keyed runs due before them, each at its own time: a few claims reach them, a page at a time', async () => {
    await holdKey('held-deep');
    await q(`select trellis.run_start('w', '{}', jsonb_build_object('queue', 'held-deep', 'concurrency_key', 'a',
               'run_at', trellis.now() - interval '1 hour' + i * interval '1 millisecond')) from generate_series(1, 2500) i`);
    const ids = await keyless('held-deep', 2);
    const claims = await claimsUntil('held-deep', ids);
    // (On one node the first claim reads the first page; a Citus cluster's claim filters by key at once.)
    assert.ok(claims <= 4, `${claims} claims`);
    // Once every page came back short, the next read starts from the front again.
    assert.deepEqual((await claim('held-deep', 10)).length, 0);
    const { rows } = await q(`select keyless_priority, keyless_run_at from trellis.queues where name = 'held-deep'`);
    assert.deepEqual(rows, [{ keyless_priority: null, keyless_run_at: null }]);
  });

  it('a claim that leases nothing and moves nothing writes no new version of the queue\'s row', async () => {
    await holdKey('held-quiet');
    await q(`select trellis.run_start('w', '{}', '{"queue": "held-quiet", "concurrency_key": "a"}') from generate_series(1, 5)`);
    assert.equal((await claim('held-quiet', 10)).length, 0);
    const row = async () => (await q(`select xmin::text as x, ctid::text as c from trellis.queues where name = 'held-quiet'`)).rows[0];
    const before = await row();
    for (let i = 0; i < 3; i++) assert.equal((await claim('held-quiet', 10)).length, 0);
    assert.deepEqual(await row(), before);
  });

  it('1,500 held keyed runs that share one claim position (one statement): a claim moves past the position', async () => {
    await holdKey('held-tied');
    await q(`select trellis.run_start('w', '{}', '{"queue": "held-tied", "concurrency_key": "a"}') from generate_series(1, 1500)`);
    const ids = await keyless('held-tied', 1);
    const claims = await claimsUntil('held-tied', ids);
    assert.ok(claims <= 4, `${claims} claims`);
  });
});
