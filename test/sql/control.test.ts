/**
 * The SQL contract of sql/500_control.sql: run_cancel, run_pause, run_resume,
 * run_retry (transitions from every status, errors, notifications) and the
 * test kit's clock (clock_use_virtual, clock_advance), plus the promise that
 * production pays nothing for that clock.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { migrate } from '../../src/schema/install.ts';
import { freshDatabase, type TestDatabase } from '../helpers/db.ts';

type Status = 'pending' | 'running' | 'waiting' | 'paused' | 'completed' | 'failed' | 'cancelled';
type Made = { id: string; queue: string; token?: string | undefined };

let db: TestDatabase;
let listener: pg.Client;
const heard: { channel: string; payload: string }[] = [];

before(async () => {
  db = await freshDatabase();
  await db.pool.query(`select trellis.workflow_register('[{"name":"w","version":"1","queue":"default"}]')`);
  listener = new pg.Client({ connectionString: db.url });
  await listener.connect();
  listener.on('notification', (n) => heard.push({ channel: n.channel, payload: n.payload ?? '' }));
  await listener.query('listen "trellis:run_ready"; listen "trellis:run_finished"; listen "trellis:run_control"; listen "test:sentinel"');
  // run_finished is sent only while a session watches (decision 0029).
  await listener.query('select trellis.run_finished_watch()');
});
after(async () => {
  await listener.end();
  await db.close();
});

const sql = async (text: string, values: unknown[] = []) => (await db.pool.query(text, values)).rows;
const one = async (text: string, values: unknown[] = []) => (await sql(text, values))[0];
const row = (id: string) =>
  one(`select status, error, attempt, failures, finished_at, cancel_requested_at, pause_requested_at, lease_token,
              run_at, run_at = 'infinity' as no_timer, abs(extract(epoch from run_at - now())) < 5 as run_at_now
         from trellis.runs where id = $1`, [id]);

/**
 * The notifications sent while `fn` runs (in commit order), about `made`:
 * payloads that name its id or its queue. A sentinel NOTIFY sent after `fn`
 * marks the end, so "none" is proven, not guessed.
 */
async function notices(made: Made, fn: () => Promise<unknown>): Promise<string[]> {
  await settle(); // what was sent before fn has arrived: forget it
  heard.length = 0;
  await fn();
  await settle();
  return heard
    .filter((h) => h.channel !== 'test:sentinel' && (h.payload === made.queue || h.payload.split(/[,:]/).includes(made.id)))
    .map((h) => `${h.channel} ${h.payload === made.id ? '<id>' : h.payload.replace(made.id, '<id>')}`);
}

/** Send a sentinel NOTIFY and wait for it: every notification committed before has arrived. */
async function settle(): Promise<void> {
  const sentinel = randomUUID();
  await sql(`select pg_notify('test:sentinel', $1)`, [sentinel]);
  const deadline = Date.now() + 5000;
  while (!heard.some((h) => h.payload === sentinel)) {
    if (Date.now() > deadline) throw new Error('sentinel notification not received');
    await new Promise((r) => setTimeout(r, 5));
  }
}

let queues = 0;
/** A run in `status`, in a queue of its own. `started` makes a pending or paused run one that was claimed before. */
async function make(status: Status, options: { started?: boolean | undefined } = {}): Promise<Made> {
  const queue = `c${++queues}`;
  const { id } = await one('select trellis.run_start($1, $2, $3) as id', ['w', '{}', JSON.stringify({ queue })]);
  const made: Made = { id, queue };
  const claim = async () => {
    const claimed = await one(`select lease_token from trellis.run_claim('w1', array[$1], '{w}', '{1}', 1, '1 minute')`, [queue]);
    made.token = claimed.lease_token;
  };
  const apply = (op: Record<string, unknown>) =>
    sql('select * from trellis.checkpoint_apply($1)', [JSON.stringify([{ run: id, token: made.token, execution: 1, ...op }])]);
  const started = options.started || !['pending', 'paused'].includes(status);
  if (status === 'cancelled') {
    await sql('select trellis.run_cancel($1)', [id]);
    return made;
  }
  if (!started) {
    if (status === 'paused') await sql('select trellis.run_pause($1)', [id]);
    return made;
  }
  await claim();
  if (status === 'running') return made;
  if (status === 'completed') await apply({ op: 'complete', output: 'done' });
  else if (status === 'failed') await apply({ op: 'fail', error: { name: 'Error', message: 'boom' } });
  else if (status === 'waiting') await apply({ op: 'wait', delay_ms: 3_600_000, signal: 0 });
  else if (status === 'pending') await apply({ op: 'release', delay_ms: 0 });
  else if (status === 'paused') {
    // Parked on a sleep (an open 'waiting' call), then paused.
    await apply({ op: 'step', seq: 0, name: 'nap', kind: 'sleep', status: 'waiting', output: { until: 0 } });
    await apply({ op: 'wait', delay_ms: 3_600_000, signal: 0 });
    await sql('select trellis.run_pause($1)', [id]);
  }
  assert.equal((await row(id)).status, status, `made a ${status} run`);
  return made;
}

const ALL: Status[] = ['pending', 'running', 'waiting', 'paused', 'completed', 'failed', 'cancelled'];
const CALLS = {
  cancel: 'select trellis.run_cancel($1) as status',
  pause: 'select trellis.run_pause($1) as status',
  resume: 'select trellis.run_resume($1) as status',
  retry: 'select trellis.run_retry($1) as status',
};

describe('control functions on an unknown run', () => {
  for (const [verb, text] of Object.entries(CALLS)) {
    it(`run_${verb} raises TR002`, async () => {
      await assert.rejects(sql(text, [randomUUID()]), { code: 'TR002', message: /does not exist/ });
    });
  }
});

describe('run_cancel', () => {
  it('ends a pending run that never started at once, with the reason, and notifies run_finished', async () => {
    const r = await make('pending');
    let status;
    assert.deepEqual(await notices(r, async () => {
      status = (await one('select trellis.run_cancel($1, $2) as status', [r.id, 'not needed'])).status;
    }), ['trellis:run_finished <id>']);
    assert.equal(status, 'cancelled');
    const after = await row(r.id);
    assert.equal(after.status, 'cancelled');
    assert.ok(after.finished_at instanceof Date);
    assert.deepEqual(after.error, { name: 'CancelledError', code: 'cancelled', message: 'not needed' });
  });

  it('ends a paused run that never started at once', async () => {
    const r = await make('paused');
    assert.equal((await one(CALLS.cancel, [r.id])).status, 'cancelled');
    assert.equal((await row(r.id)).error.message, 'cancelled');
  });

  for (const status of ['pending', 'waiting', 'paused'] as const) {
    it(`makes a started ${status} run pending with the request recorded, and notifies run_ready`, async () => {
      const r = await make(status, { started: true });
      let result;
      assert.deepEqual(await notices(r, async () => {
        result = (await one(CALLS.cancel, [r.id])).status;
      }), [`trellis:run_ready ${r.queue}`]);
      assert.equal(result, 'pending');
      const after = await row(r.id);
      assert.equal(after.status, 'pending');
      assert.ok(after.cancel_requested_at instanceof Date);
      assert.equal(after.run_at_now, true);
      assert.equal(after.error.code, 'cancelled');
    });
  }

  it('leaves a running run running with the request recorded, and tells its worker on run_control', async () => {
    const r = await make('running');
    let result;
    assert.deepEqual(await notices(r, async () => {
      result = (await one(CALLS.cancel, [r.id])).status;
    }), ['trellis:run_control cancel:<id>'], 'the id only: any role may listen');
    assert.equal(result, 'running');
    const after = await row(r.id);
    assert.equal(after.status, 'running');
    assert.equal(after.lease_token, r.token);
    assert.ok(after.cancel_requested_at instanceof Date);
  });

  it('keeps the first reason: a second cancel of a started run only wakes it again (so does a cascade reaching a run cancelled on its own)', async () => {
    for (const status of ['running', 'waiting', 'paused'] as const) {
      const r = await make(status, { started: true });
      await sql('select trellis.run_cancel($1, $2)', [r.id, 'first reason']);
      const first = await row(r.id);
      await sql('select trellis.run_cancel($1, $2)', [r.id, 'second reason']);
      const after = await row(r.id);
      assert.equal(after.error.message, 'first reason', status);
      assert.equal(after.cancel_requested_at.getTime(), first.cancel_requested_at.getTime(), status);
    }
  });

  it('leaves a cancelled run alone and returns cancelled, notifying nothing', async () => {
    const r = await make('cancelled');
    const before = await row(r.id);
    assert.deepEqual(await notices(r, async () => assert.equal((await one(CALLS.cancel, [r.id])).status, 'cancelled')), []);
    assert.deepEqual(await row(r.id), before);
  });

  for (const status of ['completed', 'failed'] as const) {
    it(`refuses a ${status} run with TR004 and changes nothing`, async () => {
      const r = await make(status);
      await assert.rejects(sql(CALLS.cancel, [r.id]), { code: 'TR004', message: new RegExp(`is ${status}`) });
      const after = await row(r.id);
      assert.equal(after.status, status);
      assert.equal(after.cancel_requested_at, null);
    });
  }

  it('cancels the unfinished children of the run, except abandoned ones', async () => {
    const p = await make('running');
    const [kept, dropped] = [randomUUID(), randomUUID()];
    await sql('select * from trellis.checkpoint_apply($1)', [JSON.stringify([
      { op: 'child', run: p.id, token: p.token, execution: 1, seq: 0, name: 'a', child: dropped, workflow: 'w', input: {} },
      { op: 'child', run: p.id, token: p.token, execution: 1, seq: 1, name: 'b', child: kept, workflow: 'w', input: {}, close: 'abandon' },
    ])]);
    assert.equal((await one(CALLS.cancel, [p.id])).status, 'running');
    const dropRow = await row(dropped);
    assert.equal(dropRow.status, 'cancelled', 'a child that never started ends at once');
    assert.equal(dropRow.error.message, 'parent run cancelled');
    assert.equal((await row(kept)).status, 'pending');
  });
});

describe('run_pause', () => {
  for (const status of ['pending', 'waiting'] as const) {
    it(`parks a ${status} run at once, keeping its run_at and storing the reason, notifying nothing`, async () => {
      const r = await make(status, { started: true });
      const before = await row(r.id);
      let result;
      assert.deepEqual(await notices(r, async () => {
        result = (await one('select trellis.run_pause($1, $2) as status', [r.id, 'maintenance'])).status;
      }), []);
      assert.equal(result, 'paused');
      const after = await row(r.id);
      assert.equal(after.status, 'paused');
      assert.equal(after.run_at.getTime(), before.run_at.getTime());
      assert.deepEqual(after.error, { name: 'Paused', code: 'paused', message: 'maintenance' });
    });
  }

  it('records a pause request for a running run and tells its worker on run_control', async () => {
    const r = await make('running');
    let result;
    assert.deepEqual(await notices(r, async () => {
      result = (await one(CALLS.pause, [r.id])).status;
    }), ['trellis:run_control pause:<id>']);
    assert.equal(result, 'running');
    const after = await row(r.id);
    assert.equal(after.status, 'running');
    assert.ok(after.pause_requested_at instanceof Date);
  });

  it('leaves a paused run paused', async () => {
    const r = await make('paused');
    assert.equal((await one(CALLS.pause, [r.id])).status, 'paused');
    assert.equal((await row(r.id)).status, 'paused');
  });

  for (const status of ['completed', 'failed', 'cancelled'] as const) {
    it(`refuses a ${status} run with TR004`, async () => {
      const r = await make(status);
      await assert.rejects(sql(CALLS.pause, [r.id]), { code: 'TR004', message: new RegExp(`is ${status}`) });
      assert.equal((await row(r.id)).status, status);
    });
  }
});

describe('run_resume', () => {
  it('makes a paused run pending now and notifies run_ready with its queue', async () => {
    const r = await make('paused', { started: true });
    let result;
    assert.deepEqual(await notices(r, async () => {
      result = (await one(CALLS.resume, [r.id])).status;
    }), [`trellis:run_ready ${r.queue}`]);
    assert.equal(result, 'pending');
    const after = await row(r.id);
    assert.equal(after.status, 'pending');
    assert.equal(after.run_at_now, true);
    assert.equal(after.pause_requested_at, null);
  });

  it('keeps a run_at in the future (a scheduled start): the run is pending but not claimable before it', async () => {
    const r = await make('pending');
    await sql(`update trellis.runs set run_at = trellis.now() + interval '1 hour' where id = $1`, [r.id]);
    const before = await row(r.id);
    await sql(CALLS.pause, [r.id]);
    assert.equal((await one(CALLS.resume, [r.id])).status, 'pending');
    const after = await row(r.id);
    assert.equal(after.run_at.getTime(), before.run_at.getTime());
    const claimed = await sql(`select id from trellis.run_claim('w1', array[$1], '{w}', '{1}', 1, '1 minute')`, [r.queue]);
    assert.deepEqual(claimed, [], 'not claimed before its run_at');
  });

  it('keeps the rest of a retry backoff, and makes a dead-lettered run due now', async () => {
    const backoff = await make('running');
    const apply = (made: Made, op: Record<string, unknown>) =>
      sql('select * from trellis.checkpoint_apply($1)', [JSON.stringify([{ run: made.id, token: made.token, execution: 1, ...op }])]);
    await apply(backoff, { op: 'release', delay_ms: 3_600_000, error: { name: 'Error', message: 'flaky' } });
    const due = (await row(backoff.id)).run_at.getTime();
    await sql(CALLS.pause, [backoff.id]);
    await sql(CALLS.resume, [backoff.id]);
    assert.equal((await row(backoff.id)).run_at.getTime(), due, 'the backoff is kept');

    const dead = await make('running');
    await apply(dead, { op: 'pause', error: { name: 'Error', message: 'failed 3 times' } });
    assert.equal((await row(dead.id)).status, 'paused');
    await sql(CALLS.resume, [dead.id]);
    const after = await row(dead.id);
    assert.deepEqual([after.status, after.run_at_now], ['pending', true], 'a dead-lettered run retries at once');
    assert.equal(after.error.message, 'failed 3 times', 'a dead letter\'s error stays, the cause of the pause it ended');
  });

  it('takes an operator\'s pause reason away with the pause: the resumed run shows no error', async () => {
    const r = await make('pending');
    await sql('select trellis.run_pause($1, $2)', [r.id, 'maintenance']);
    assert.equal((await row(r.id)).error.message, 'maintenance');
    await sql(CALLS.resume, [r.id]);
    const after = await row(r.id);
    assert.deepEqual([after.status, after.error], ['pending', null]);
  });

  it('withdraws the pause request of a running run, which stays running, notifying nothing', async () => {
    const r = await make('running');
    await sql('select trellis.run_pause($1, $2)', [r.id, 'maintenance']);
    assert.equal((await row(r.id)).error.message, 'maintenance');
    let result;
    assert.deepEqual(await notices(r, async () => {
      result = (await one(CALLS.resume, [r.id])).status;
    }), []);
    assert.equal(result, 'running');
    const after = await row(r.id);
    assert.equal(after.pause_requested_at, null);
    assert.equal(after.error, null, 'the withdrawn pause\'s reason goes with it');
    assert.equal(after.lease_token, r.token);
  });

  for (const status of ALL.filter((s) => s !== 'paused')) {
    it(`refuses a ${status} run${status === 'running' ? ' without a pause request' : ''} with TR004`, async () => {
      const r = await make(status);
      await assert.rejects(sql(CALLS.resume, [r.id]), { code: 'TR004', message: new RegExp(`is ${status}, not paused`) });
      assert.equal((await row(r.id)).status, status);
    });
  }
});

describe('run_retry', () => {
  it('runs a failed run again from its failed step: completed steps stay, the failed one goes, and notifies run_ready', async () => {
    const r = await make('running');
    await sql('select * from trellis.checkpoint_apply($1)', [JSON.stringify([
      { op: 'step', run: r.id, token: r.token, execution: 1, seq: 0, name: 'reserve', kind: 'step', status: 'completed', output: 'reserved' },
      { op: 'step', run: r.id, token: r.token, execution: 1, seq: 1, name: 'capture', kind: 'step', status: 'failed', error: { message: 'down' }, attempts: 3 },
      { op: 'fail', run: r.id, token: r.token, error: { name: 'StepFailedError', message: 'capture failed' } },
    ])]);
    assert.equal((await row(r.id)).status, 'failed');
    let result;
    assert.deepEqual(await notices(r, async () => {
      result = (await one(CALLS.retry, [r.id])).status;
    }), [`trellis:run_ready ${r.queue}`]);
    assert.equal(result, 'pending');
    const after = await row(r.id);
    assert.equal(after.status, 'pending');
    assert.equal(after.finished_at, null);
    assert.equal(after.failures, 0);
    assert.equal(after.run_at_now, true);
    assert.deepEqual(await sql('select seq, name, status, output from trellis.steps where run_id = $1 order by seq', [r.id]),
      [{ seq: 0, name: 'reserve', status: 'completed', output: 'reserved' }]);
    const claimed = await one(`select id, history from trellis.run_claim('w2', array[$1], '{w}', '{1}', 1, '1 minute')`, [r.queue]);
    assert.equal(claimed.id, r.id);
    assert.deepEqual(claimed.history.map((s: { name: string; status: string }) => [s.name, s.status]), [['reserve', 'completed']]);
  });

  for (const status of ALL.filter((s) => s !== 'failed')) {
    it(`refuses a ${status} run with TR004`, async () => {
      const r = await make(status);
      await assert.rejects(sql(CALLS.retry, [r.id]), { code: 'TR004', message: new RegExp(`is ${status}, not failed`) });
      assert.equal((await row(r.id)).status, status);
    });
  }
});

describe('clock_use_virtual and clock_advance', () => {
  // A database of its own: moving its clock must not disturb the tests above.
  let clockDb: TestDatabase;
  before(async () => {
    clockDb = await freshDatabase();
  });
  after(() => clockDb.close());
  const q = async (text: string, values: unknown[] = []) => (await clockDb.pool.query(text, values)).rows;
  const nowSource = async () => (await q(`select prosrc from pg_proc where oid = 'trellis.now()'::regprocedure`))[0].prosrc as string;
  /** Run `text` in one transaction whose session allows the virtual clock. */
  const allowed = async (text: string) => {
    const client = await clockDb.pool.connect();
    try {
      await client.query('begin');
      await client.query(`set local trellis.virtual_clock = 'allowed'`);
      const { rows } = await client.query(text);
      await client.query('commit');
      return rows;
    } catch (error) {
      await client.query('rollback');
      throw error;
    } finally {
      client.release();
    }
  };
  const offsetMs = async () => Number((await q(`select extract(epoch from trellis.now() - now()) * 1000 as ms`))[0].ms);

  it('clock_advance refuses with TR004 while the virtual clock is not in use', async () => {
    await assert.rejects(q(`select trellis.clock_advance('1 day')`), { code: 'TR004', message: /virtual clock is not in use/ });
  });

  it('clock_use_virtual refuses with TR004 in a session that did not allow it, and leaves now() alone', async () => {
    await assert.rejects(q('select trellis.clock_use_virtual()'), { code: 'TR004', message: /trellis\.virtual_clock/ });
    assert.doesNotMatch(await nowSource(), /trellis\.clock/);
    assert.deepEqual(await q('select * from trellis.clock'), []);
  });

  it('clock_use_virtual in a session that allows it makes trellis.now() read the offset; calling it again changes nothing', async () => {
    await allowed('select trellis.clock_use_virtual()');
    assert.match(await nowSource(), /trellis\.clock/);
    assert.deepEqual(await q(`select "offset"::text as o from trellis.clock`), [{ o: '00:00:00' }]);
    await allowed(`select trellis.clock_advance('1 hour')`);
    await allowed('select trellis.clock_use_virtual()');
    assert.deepEqual(await q(`select "offset"::text as o from trellis.clock`), [{ o: '01:00:00' }]);
  });

  it('clock_advance moves trellis.now() forward, returns it, and notifies run_ready for queues with pending or waiting runs', async () => {
    await q(`select trellis.workflow_register('[{"name":"w","version":"1","queue":"clockq"}]')`);
    await q(`select trellis.run_start('w', '{}', '{"queue":"clockq"}')`);
    const client = new pg.Client({ connectionString: clockDb.url });
    await client.connect();
    const payloads: string[] = [];
    client.on('notification', (n) => payloads.push(n.payload ?? ''));
    try {
      await client.query('listen "trellis:run_ready"');
      const before = await offsetMs();
      const [{ at, now }] = await q(`select trellis.clock_advance('3 days') as at, clock_timestamp() as now`);
      assert.ok(Math.abs(at.getTime() - now.getTime() - (before + 3 * 86_400_000)) < 5000);
      assert.ok((await offsetMs()) - before >= 3 * 86_400_000 - 1);
      const deadline = Date.now() + 5000;
      while (!payloads.includes('clockq') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
      assert.ok(payloads.includes('clockq'), `notified: ${payloads.join(', ')}`);
    } finally {
      await client.end();
    }
  });

  it('clock_advance refuses a negative or null interval with TR001 and keeps the offset', async () => {
    const before = (await q(`select "offset" from trellis.clock`))[0];
    await assert.rejects(q(`select trellis.clock_advance('-1 second')`), { code: 'TR001', message: /only moves forward/ });
    await assert.rejects(q('select trellis.clock_advance(null)'), { code: 'TR001' });
    assert.deepEqual((await q(`select "offset" from trellis.clock`))[0], before);
  });

  it('migrate() in a session that does not allow it restores the production trellis.now()', async () => {
    assert.match(await nowSource(), /trellis\.clock/);
    const result = await migrate(clockDb.pool);
    assert.equal(result.functionsApplied, true);
    assert.doesNotMatch(await nowSource(), /trellis\.clock/);
    assert.ok(Math.abs(await offsetMs()) < 1, 'trellis.now() is now() again');
    await assert.rejects(q(`select trellis.clock_advance('1 day')`), { code: 'TR004' }, 'the leftover clock row is not used');
    assert.equal((await migrate(clockDb.pool)).functionsApplied, false, 'and the next migrate() has nothing to do');
  });
});

describe('trellis.now() in production', () => {
  const plan = async (pool: pg.Pool) =>
    (await pool.query(`explain (verbose, costs off) select id from trellis.runs where run_at <= trellis.now()`)).rows
      .map((r) => r['QUERY PLAN'] as string).join('\n');

  it('is inlined by the planner: the plan calls now() and no function of trellis', async () => {
    const text = await plan(db.pool);
    assert.match(text, /run_at <= now\(\)/, text);
    assert.doesNotMatch(text, /trellis\.now/, text);
  });

  it('reads the server\'s clock in a session whose search_path puts a now() of its own before pg_catalog', async () => {
    const client = await db.pool.connect();
    try {
      await client.query(`create schema if not exists spoof; create or replace function spoof.now() returns timestamptz
                          language sql as $$ select timestamptz '2000-01-01' $$`);
      await client.query(`set search_path = spoof, pg_catalog, public`);
      assert.equal((await client.query(`select now() as t`)).rows[0].t.getUTCFullYear(), 2000, 'the session\'s own now() is first');
      const { rows } = await client.query(`select extract(epoch from trellis.now() - pg_catalog.now()) as skew`);
      assert.equal(Number(rows[0].skew), 0);
    } finally {
      await client.query(`reset search_path; drop schema spoof cascade`);
      client.release();
    }
  });

  it('is not inlined once the virtual clock is in use (so the check above can fail)', async () => {
    const other = await freshDatabase();
    try {
      const client = await other.pool.connect();
      try {
        await client.query(`begin; set local trellis.virtual_clock = 'allowed'; select trellis.clock_use_virtual(); commit`);
      } finally {
        client.release();
      }
      assert.match(await plan(other.pool), /trellis\.now\(\)/);
    } finally {
      await other.close();
    }
  });
});
