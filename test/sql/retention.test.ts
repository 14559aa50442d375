/**
 * The SQL contract of sql/600_retention.sql: retention_set / retention
 * (the default and per workflow),
 * run_purge (what it deletes and keeps, order, limit, workflow filter, a
 * child kept while its parent waits on it, locked runs skipped, bad input)
 * run_purge_due (the setting, one purger at a time), run_scrub, and the storage
 * settings of the purged tables. Ages come from the
 * virtual clock of the test kit (clock_use_virtual / clock_advance).
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { beforeEach, describe, it } from 'node:test';
import { useFreshDatabase } from '../helpers/database-fixture.ts';

const fx = useFreshDatabase({
  virtualClock: true,
  setUp: () => sql(`select trellis.workflow_register('[{"name":"w","version":"1","queue":"default"},{"name":"other","version":"1","queue":"default"}]')`),
});
const sql = async (text: string, values: unknown[] = []) => (await fx.db.pool.query(text, values)).rows;
const one = async (text: string, values: unknown[] = []) => (await sql(text, values))[0];

// Every test starts from empty tables and no retention.
beforeEach(async () => {
  await sql('truncate trellis.signals, trellis.steps, trellis.runs');
  await sql('select trellis.retention_set(null)');
  await sql('delete from trellis.retentions');
});

const advance = (by: string) => sql('select trellis.clock_advance($1::interval)', [by]);
const exists = async (id: string) => (await one('select count(*)::int as n from trellis.runs where id = $1', [id])).n === 1;
const counts = async () => one(`select (select count(*)::int from trellis.runs) as runs, (select count(*)::int from trellis.steps) as steps,
                                       (select count(*)::int from trellis.signals) as signals`);

let queues = 0;
type Held = { id: string; token: string; queue: string };
async function start(workflow = 'w', options: Record<string, unknown> = {}): Promise<{ id: string; queue: string }> {
  const queue = `r${++queues}`;
  const { id } = await one('select trellis.run_start($1, $2, $3) as id', [workflow, '{}', JSON.stringify({ queue, ...options })]);
  return { id, queue };
}
async function claim(queue: string, workflow = 'w'): Promise<Held> {
  const r = await one(`select id, lease_token from trellis.run_claim('w1', array[$1], array[$2], '{1}', 1, '1 minute')`, [queue, workflow]);
  return { id: r.id, token: r.lease_token, queue };
}
const apply = (ops: unknown[]) => sql('select * from trellis.checkpoint_apply($1)', [JSON.stringify(ops)]);

/** A run in `status` with one recorded step (unless it never ran) and one buffered signal (unless waiting: it would wake). */
async function make(status: 'pending' | 'running' | 'waiting' | 'completed' | 'failed' | 'cancelled', workflow = 'w'): Promise<string> {
  const { id, queue } = await start(workflow);
  if (status !== 'waiting') await sql(`select trellis.signal_send($1, 'ping', '{}', null)`, [id]);
  if (status === 'pending') return id;
  if (status === 'cancelled') {
    await sql('select trellis.run_cancel($1)', [id]);
    return id;
  }
  const h = await claim(queue, workflow);
  await apply([{ op: 'step', run: h.id, token: h.token, execution: 1, seq: 0, name: 's', kind: 'step', status: 'completed', output: 1 }]);
  if (status === 'completed') await apply([{ op: 'complete', run: h.id, token: h.token, execution: 1, output: 'done' }]);
  if (status === 'failed') await apply([{ op: 'fail', run: h.id, token: h.token, execution: 1, error: { name: 'Error', message: 'boom' } }]);
  if (status === 'waiting') await apply([{ op: 'wait', run: h.id, token: h.token, execution: 1, delay_ms: 3_600_000, signal: 0 }]);
  assert.equal((await one('select status from trellis.runs where id = $1', [id])).status, status);
  return id;
}

describe('retention_set and retention', () => {
  it('is unset by default: retention() is null and run_purge_due does nothing and returns null', async () => {
    const old = await make('completed');
    await advance('3650 days');
    assert.equal((await one('select trellis.retention() as r')).r, null);
    assert.equal((await one('select trellis.run_purge_due() as n')).n, null);
    assert.ok(await exists(old));
  });

  it('stores an interval that retention() reads back, and null removes it', async () => {
    assert.equal((await one(`select trellis.retention_set('7 days') as r`)).r.days, 7);
    assert.deepEqual((await one(`select value from trellis.settings where key = 'retention'`)).value, '7 days');
    assert.equal((await one(`select trellis.retention() = interval '7 days' as same`)).same, true);
    assert.equal((await one('select trellis.retention_set(null) as r')).r, null);
    assert.equal((await one('select trellis.retention() as r')).r, null);
  });

  it('retention(workflow) refuses a workflow nobody registered (TR002) and a bad name (TR001), quotes and SQL included', async () => {
    await assert.rejects(sql('select trellis.retention($1)', ['nobody-registered-this']), { code: 'TR002', message: /unknown workflow/ });
    await assert.rejects(sql('select trellis.retention($1)', ["x'); drop table trellis.runs; --"]), { code: 'TR001' });
    await assert.rejects(sql('select trellis.retention($1)', ['']), { code: 'TR001' });
    assert.equal((await one('select trellis.retention(null) is null as unset')).unset, true);
  });

  for (const bad of ['0.5 seconds', '-1 day']) {
    it(`refuses ${bad} with TR001 and keeps the setting`, async () => {
      await sql(`select trellis.retention_set('1 day')`);
      await assert.rejects(sql('select trellis.retention_set($1::interval)', [bad]), { code: 'TR001', message: /retention must be at least 1 second/ });
      assert.equal((await one(`select trellis.retention() = interval '1 day' as same`)).same, true);
    });
  }
});

describe('retention too long to subtract from now', () => {
  /** An infinite interval exists from PostgreSQL 17 on (13-16 refuse the input 'infinity'). */
  const infiniteIntervals = async () => Number((await one('select current_setting(\'server_version_num\') as v')).v) >= 170000;
  for (const workflow of [null, 'w']) {
    it(`retention_set refuses 10000 years ${workflow ? 'for a workflow' : 'as the default'} with TR001 and keeps the setting; run_purge_due goes on`, async () => {
      await sql(`select trellis.retention_set('1 day', $1)`, [workflow]);
      await assert.rejects(sql(`select trellis.retention_set('10000 years', $1)`, [workflow]),
        { code: 'TR001', message: /retention must be a duration from zero to 1000 years/ });
      assert.equal((await one(`select trellis.retention($1) = interval '1 day' as same`, [workflow])).same, true);
      assert.equal((await one('select trellis.run_purge_due() as n')).n, 0);
    });
  }

  it('takes 1000 years and infinity, and run_purge_due purges nothing under them', async () => {
    await make('completed');
    await advance('2 days');
    for (const keep of ['1000 years', ...(await infiniteIntervals() ? ['infinity'] : [])]) {
      await sql('select trellis.retention_set($1::interval)', [keep]);
      await sql('select trellis.retention_set($1::interval, $2)', [keep, 'w']);
      assert.equal((await one('select trellis.run_purge_due() as n')).n, 0);
    }
    assert.equal((await counts()).runs, 1);
  });

  it('run_purge_due reads a keep over 1000 years stored before it was refused as 1000 years', async () => {
    await make('completed');
    await sql(`insert into trellis.settings (key, value, updated_at) values ('retention', '"10000 years"', now())`);
    await sql(`insert into trellis.retentions (workflow, keep, updated_at) values ('w', '10000 years', now())`);
    assert.equal((await one('select trellis.run_purge_due() as n')).n, 0);
    assert.equal((await counts()).runs, 1);
  });

  for (const fn of ['run_purge', 'events_purge']) {
    it(`${fn} refuses 10000 years with TR001 and deletes nothing`, async () => {
      await make('completed');
      await advance('2 days');
      const before = await counts();
      const events = (await one('select count(*)::int as n from trellis.events')).n;
      await assert.rejects(sql(`select trellis.${fn}('10000 years')`), { code: 'TR001', message: /from zero to 1000 years/ });
      assert.deepEqual(await counts(), before);
      assert.equal((await one('select count(*)::int as n from trellis.events')).n, events);
      if (await infiniteIntervals()) assert.equal(typeof (await one(`select trellis.${fn}('infinity') as n`)).n, 'number');
    });
  }
});

describe('run_purge', () => {
  it('deletes the finished runs older than the cutoff with their steps and signals, and keeps the rest', async () => {
    const old = { completed: await make('completed'), failed: await make('failed'), cancelled: await make('cancelled') };
    const live = { pending: await make('pending'), running: await make('running'), waiting: await make('waiting') };
    await advance('2 days');
    const fresh = await make('completed');
    const before = await counts();
    assert.equal((await one(`select trellis.run_purge('1 day') as n`)).n, 3);
    for (const id of Object.values(old)) assert.equal(await exists(id), false);
    for (const id of [...Object.values(live), fresh]) assert.ok(await exists(id));
    const purged = Object.values(old);
    assert.equal((await one('select count(*)::int as n from trellis.steps where run_id = any($1::uuid[])', [purged])).n, 0);
    assert.equal((await one('select count(*)::int as n from trellis.signals where run_id = any($1::uuid[])', [purged])).n, 0);
    // Two of the three purged runs had a step (the cancelled one never ran); each had a signal.
    assert.deepEqual(await counts(), { runs: before.runs - 3, steps: before.steps - 2, signals: before.signals - 3 });
    assert.equal((await one(`select trellis.run_purge('1 day') as n`)).n, 0, 'nothing left to purge');
  });

  it('takes the oldest-finished runs first, at most p_limit', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) {
      ids.push(await make('completed'));
      await advance('1 minute');
    }
    assert.equal((await one(`select trellis.run_purge('0', 2) as n`)).n, 2);
    assert.deepEqual(await Promise.all(ids.map(exists)), [false, false, true, true, true]);
  });

  it('with p_workflow deletes only runs of that workflow', async () => {
    const mine = await make('completed', 'other');
    const theirs = await make('completed', 'w');
    await advance('1 hour');
    assert.equal((await one(`select trellis.run_purge('1 minute', 1000, 'other') as n`)).n, 1);
    assert.equal(await exists(mine), false);
    assert.ok(await exists(theirs));
  });

  it('frees the idempotency key of a purged run', async () => {
    const first = await start('w', { key: 'order-1' });
    await sql('select trellis.run_cancel($1)', [first.id]);
    await advance('1 hour');
    await sql(`select trellis.run_purge('1 minute')`);
    const again = await start('w', { key: 'order-1' });
    assert.notEqual(again.id, first.id);
  });

  it('keeps a finished child while a call of its parent waits on it, and purges it once that call has its result', async () => {
    const parent = await claim((await start()).queue);
    const child = randomUUID();
    const childQueue = `${parent.queue}-child`;
    await apply([{ op: 'child', run: parent.id, token: parent.token, execution: 1, seq: 0, name: 'c', child, workflow: 'w', input: {}, queue: childQueue }]);
    await apply([{ op: 'wait', run: parent.id, token: parent.token, execution: 1, delay_ms: null, signal: 0 }]);
    const c = await claim(childQueue);
    await apply([{ op: 'complete', run: c.id, token: c.token, execution: 1, output: 42 }]);
    await advance('1 hour');
    assert.equal((await one(`select trellis.run_purge('1 minute') as n`)).n, 0, 'the parent has not read the child yet');
    assert.ok(await exists(child));

    // The parent runs again, takes the child's result and completes.
    const p = await claim(parent.queue);
    assert.equal(p.id, parent.id);
    await apply([
      { op: 'step', run: p.id, token: p.token, execution: 1, seq: 0, name: 'c', kind: 'child', status: 'completed', output: 42 },
      { op: 'complete', run: p.id, token: p.token, execution: 1, output: 42 },
    ]);
    await advance('1 hour');
    assert.equal((await one(`select trellis.run_purge('1 minute') as n`)).n, 2);
    assert.equal(await exists(child), false);
    assert.equal(await exists(parent.id), false);
  });

  it('a waiting call of a parent that completed or was cancelled keeps its child no longer; a failed parent\'s (it may be retried) still does', async () => {
    const kids: Record<string, string> = {};
    for (const end of ['completed', 'cancelled', 'failed'] as const) {
      const parent = await claim((await start()).queue);
      const child = randomUUID();
      const childQueue = `${parent.queue}-child`;
      await apply([{ op: 'child', run: parent.id, token: parent.token, execution: 1, seq: 0, name: 'c', child, workflow: 'w', input: {}, queue: childQueue, close: 'abandon' }]);
      // The parent ends with its call on the abandoned child still waiting.
      if (end === 'completed') await apply([{ op: 'complete', run: parent.id, token: parent.token, execution: 1, output: 1 }]);
      if (end === 'failed') await apply([{ op: 'fail', run: parent.id, token: parent.token, execution: 1, error: { name: 'Error', message: 'boom' } }]);
      if (end === 'cancelled') await apply([{ op: 'cancelled', run: parent.id, token: parent.token, execution: 1, error: { name: 'CancelledError', code: 'cancelled', message: 'stop' } }]);
      const c = await claim(childQueue);
      assert.equal(c.id, child);
      await apply([{ op: 'complete', run: c.id, token: c.token, execution: 1, output: 42 }]);
      kids[end] = child;
    }
    await advance('1 hour');
    // One purge: what it picks is decided before it deletes (the parents go too; the failed parent's child is held at the pick).
    const purged = (await one(`select trellis.run_purge('1 minute', 100000) as n`)).n as number;
    assert.ok(purged >= 2);
    assert.equal(await exists(kids.completed!), false, 'a completed parent\'s child is purged');
    assert.equal(await exists(kids.cancelled!), false, 'a cancelled parent\'s child is purged');
    assert.equal(await exists(kids.failed!), true, 'a failed parent may be retried and wait on its child again');
  });

  it('skips a run another transaction has locked, without waiting, and takes it later', async () => {
    const locked = await make('completed');
    const free = await make('completed');
    await advance('1 hour');
    const other = await fx.db.pool.connect();
    try {
      await other.query('begin');
      // (By bucket and id: on Citus a row lock names one shard.)
      const { bucket } = await one('select bucket from trellis.runs where id = $1', [locked]);
      await other.query('select 1 from trellis.runs where bucket = $1 and id = $2 for update', [bucket, locked]);
      assert.equal((await one(`select trellis.run_purge('1 minute') as n`)).n, 1);
      assert.equal(await exists(free), false);
      await other.query('commit');
    } finally {
      other.release();
    }
    assert.equal((await one(`select trellis.run_purge('1 minute') as n`)).n, 1);
    assert.equal(await exists(locked), false);
  });

  const bad: [string, unknown[], RegExp][] = [
    ['a negative age', ['-1 day', 10, null], /older_than must be a duration from zero to 1000 years/],
    ['a null age', [null, 10, null], /older_than must be a duration from zero to 1000 years/],
    ['a limit of 0', ['1 day', 0, null], /limit must be from 1 to 100000/],
    ['a limit over 100000', ['1 day', 100_001, null], /limit must be from 1 to 100000/],
    ['a workflow name with SQL in it', ['0', 10, `w'; delete from trellis.runs; --`], /invalid workflow name/],
  ];
  for (const [what, values, message] of bad) {
    it(`refuses ${what} with TR001 and deletes nothing`, async () => {
      await make('completed');
      await advance('2 days');
      const before = await counts();
      await assert.rejects(sql('select trellis.run_purge($1::interval, $2, $3)', values), { code: 'TR001', message });
      assert.deepEqual(await counts(), before);
    });
  }
});

describe('run_purge_due', () => {
  it('refuses a limit outside 1-100000 with TR001, with or without a retention set', async () => {
    for (const limit of [0, 100_001]) {
      await assert.rejects(sql('select trellis.run_purge_due($1)', [limit]), { code: 'TR001', message: /limit must be from 1 to 100000/ });
    }
    const old = await make('completed');
    await advance('2 days');
    await sql(`select trellis.retention_set('1 day')`);
    await assert.rejects(sql('select trellis.run_purge_due(0)'), { code: 'TR001' });
    assert.ok(await exists(old), 'nothing was purged');
  });

  it('purges what is past the retention setting', async () => {
    const old = await make('completed');
    await advance('25 hours');
    const recent = await make('completed');
    await sql(`select trellis.retention_set('1 day')`);
    assert.equal((await one('select trellis.run_purge_due() as n')).n, 1);
    assert.equal(await exists(old), false);
    assert.ok(await exists(recent));
  });

  it('returns 0 at once while another session is purging, and purges once that one committed', async () => {
    const old = await make('completed');
    await advance('2 days');
    await sql(`select trellis.retention_set('1 day')`);
    const other = await fx.db.pool.connect();
    try {
      await other.query('begin');
      await other.query('select trellis.run_purge_due(1)');
      assert.equal((await one('select trellis.run_purge_due() as n')).n, 0);
      await other.query('rollback');
    } finally {
      other.release();
    }
    assert.ok(await exists(old), 'the other session rolled its purge back');
    assert.equal((await one('select trellis.run_purge_due() as n')).n, 1);
    assert.equal(await exists(old), false);
  });
});

describe('storage settings of the purged tables', () => {
  it('runs, steps and signals are vacuumed after 2% of their rows change and never truncated by vacuum', async () => {
    const rows = await sql(`select relname, reloptions from pg_class
                             where relnamespace = 'trellis'::regnamespace and relname in ('runs', 'steps', 'signals') order by relname`);
    assert.deepEqual(rows.map((r) => r.relname), ['runs', 'signals', 'steps']);
    for (const r of rows) {
      assert.ok(r.reloptions.includes('vacuum_truncate=false'), `${r.relname}: ${r.reloptions}`);
      assert.ok(r.reloptions.includes('autovacuum_vacuum_scale_factor=0.02'), `${r.relname}: ${r.reloptions}`);
    }
  });
});

describe('run_scrub', () => {
  const snapshot = async (id: string) => ({
    run: await one('select workflow, status, input, output, error, metadata, scrubbed_at is not null as scrubbed from trellis.runs where id = $1', [id]),
    steps: await sql('select seq, name, kind, status, output, error, attempts from trellis.steps where run_id = $1 order by seq', [id]),
    signals: await sql('select name, payload from trellis.signals where run_id = $1 order by id', [id]),
  });

  it("removes a finished run's payloads and error messages, keeps its skeleton, and a second call changes nothing", async () => {
    const { id, queue } = await start('w', { metadata: { email: 'ada@example.com' } });
    await sql(`select trellis.signal_send($1, 'ping', '{"card":"4111"}', null)`, [id]);
    const h = await claim(queue);
    await apply([
      { op: 'step', run: h.id, token: h.token, execution: 1, seq: 0, name: 'lookup', kind: 'step', status: 'completed', output: { email: 'ada@example.com' } },
      { op: 'step', run: h.id, token: h.token, execution: 1, seq: 1, name: 'charge', kind: 'step', status: 'failed', error: { name: 'Error', message: 'card 4111 declined' }, attempts: 3 },
      { op: 'fail', run: h.id, token: h.token, execution: 1, error: { name: 'StepFailedError', code: 'step_failed', message: 'card 4111 declined' } },
    ]);
    const first = (await one('select trellis.run_scrub($1) as at', [id])).at;
    const after = await snapshot(id);
    assert.deepEqual(after.run, {
      workflow: 'w', status: 'failed', input: null, output: null, metadata: {}, scrubbed: true,
      error: { name: 'StepFailedError', code: 'step_failed', message: 'scrubbed' },
    });
    assert.deepEqual(after.steps, [
      { seq: 0, name: 'lookup', kind: 'step', status: 'completed', output: null, error: null, attempts: 1 },
      { seq: 1, name: 'charge', kind: 'step', status: 'failed', output: null, error: { name: 'Error', message: 'scrubbed' }, attempts: 3 },
    ]);
    assert.deepEqual(after.signals, [{ name: 'ping', payload: null }]);
    assert.doesNotMatch(JSON.stringify(after), /ada@|4111/);

    const again = (await one('select trellis.run_scrub($1) as at', [id])).at;
    assert.equal(again.getTime(), first.getTime());
    assert.deepEqual(await snapshot(id), after);
    await assert.rejects(sql('select trellis.run_retry($1)', [id]), { code: 'TR004', message: /scrubbed and cannot be retried/ });
  });

  for (const status of ['pending', 'running', 'waiting'] as const) {
    it(`refuses a ${status} run with TR004 and changes nothing`, async () => {
      const id = await make(status);
      const before = await snapshot(id);
      await assert.rejects(sql('select trellis.run_scrub($1)', [id]), { code: 'TR004', message: /only a finished run can be scrubbed/ });
      assert.deepEqual(await snapshot(id), before);
    });
  }

  it('refuses an unknown run with TR002', async () => {
    await assert.rejects(sql('select trellis.run_scrub($1)', [randomUUID()]), { code: 'TR002' });
  });
});

describe('per-workflow retention', () => {
  const ms = async (workflow: string | null) =>
    (await one('select extract(epoch from trellis.retention($1)) as s', [workflow])).s;

  it('a workflow\'s own retention wins over the default; null removes it and the default applies again', async () => {
    await sql(`select trellis.retention_set('1 day')`);
    assert.equal((await one(`select trellis.retention_set('10 days', 'other') as r`)).r.days, 10);
    assert.deepEqual(await sql('select workflow, extract(epoch from keep)::int as s from trellis.retentions'), [{ workflow: 'other', s: 864_000 }]);
    assert.equal(Number(await ms('other')), 864_000);
    assert.equal(Number(await ms('w')), 86_400, 'the default');
    assert.equal(Number(await ms(null)), 86_400);
    await sql(`select trellis.retention_set(null, 'other')`);
    assert.equal(Number(await ms('other')), 86_400);
    assert.deepEqual(await sql('select * from trellis.retentions'), []);
  });

  for (const [what, args, code] of [
    ['an unknown workflow', [`'3 days'`, `'nope'`], 'TR002'],
    ['a workflow name with a quote and SQL in it', [`'3 days'`, `'w''; delete from trellis.runs; --'`], 'TR001'],
    ['less than a second for a workflow', [`'10 milliseconds'`, `'w'`], 'TR001'],
  ] as const) {
    it(`refuses ${what} with ${code} and changes nothing`, async () => {
      await sql(`select trellis.retention_set('1 day')`);
      await sql(`select trellis.retention_set('2 days', 'other')`);
      await assert.rejects(sql(`select trellis.retention_set(${args[0]}::interval, ${args[1]})`), { code });
      assert.deepEqual(await sql('select workflow, extract(epoch from keep)::int as s from trellis.retentions'), [{ workflow: 'other', s: 172_800 }]);
      assert.equal(Number(await ms(null)), 86_400);
    });
  }

  it('run_purge_due purges each workflow after its own retention', async () => {
    await sql(`select trellis.retention_set('1 day')`);
    await sql(`select trellis.retention_set('10 days', 'other')`);
    const mine = [await make('completed'), await make('failed')];
    const theirs = [await make('completed', 'other'), await make('cancelled', 'other')];
    await advance('2 days');
    assert.equal((await one('select trellis.run_purge_due(1000) as n')).n, 2);
    for (const id of mine) assert.equal(await exists(id), false);
    for (const id of theirs) assert.equal(await exists(id), true, 'kept for its own 10 days');
    await advance('9 days');
    assert.equal((await one('select trellis.run_purge_due(1000) as n')).n, 2);
    for (const id of theirs) assert.equal(await exists(id), false);
  });

  it('with only a workflow retention and no default, purges that workflow and keeps the rest forever', async () => {
    await sql(`select trellis.retention_set('1 hour', 'other')`);
    const kept = await make('completed');
    const gone = await make('completed', 'other');
    await advance('400 days');
    assert.equal((await one('select trellis.run_purge_due(1000) as n')).n, 1);
    assert.equal(await exists(gone), false);
    assert.equal(await exists(kept), true);
  });

  it('runs kept longer than the default never hold up the default purge (limits count only what is deleted)', async () => {
    await sql(`select trellis.retention_set('1 day')`);
    await sql(`select trellis.retention_set('100 years', 'other')`);
    for (let i = 0; i < 5; i++) await make('completed', 'other');
    const mine = [await make('completed'), await make('completed'), await make('completed')];
    await advance('2 days');
    assert.equal((await one('select trellis.run_purge_due(2) as n')).n, 2);
    assert.equal((await one('select trellis.run_purge_due(2) as n')).n, 1);
    assert.equal((await one('select trellis.run_purge_due(2) as n')).n, 0);
    for (const id of mine) assert.equal(await exists(id), false);
    assert.equal((await one(`select count(*)::int as n from trellis.runs where workflow = 'other'`)).n, 5);
  });
});
