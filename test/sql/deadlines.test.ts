/**
 * The SQL contract of run deadlines (decision 0031): run_start's deadline
 * and time_limit options, a child op's, run_cancel_overdue (one overdue run per
 * call, as run_cancel cancels it, its cancel-children too) and run_retry
 * dropping a deadline that has passed. The database's clock is the test
 * kit's virtual one, so "overdue" is reached by advancing it.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { beforeEach, describe, it } from 'node:test';
import { useFreshDatabase } from '../helpers/database-fixture.ts';

const fx = useFreshDatabase({
  setUp: async (db) => {
    await db.pool.query(`select trellis.workflow_register('[{"name":"w","version":"1","queue":"default"}]')`);
    const c = await db.pool.connect();
    try {
      await c.query(`begin; set local trellis.virtual_clock = 'allowed'; select trellis.clock_use_virtual(); commit`);
    } finally {
      c.release();
    }
  },
});

const sql = async (text: string, values: unknown[] = []) => (await fx.db.pool.query(text, values)).rows;
const one = async (text: string, values: unknown[] = []) => (await sql(text, values))[0];
const start = async (options: object): Promise<string> =>
  (await one('select trellis.run_start($1, $2, $3) as id', ['w', '{}', JSON.stringify(options)])).id;
const runOf = (id: string) =>
  one(`select status, deadline_at, cancel_requested_at, finished_at, error, run_at from trellis.runs where id = $1`, [id]);
const now = async (): Promise<Date> => (await one('select trellis.now() as t')).t;
const advance = (by: string) => sql('select trellis.clock_advance($1::interval)', [by]);
const overdue = async (): Promise<string | null> => (await one('select trellis.run_cancel_overdue() as id')).id;
/** Cancel every overdue run, as the duty does: the ids, in the order cancelled. */
async function drain(): Promise<string[]> {
  const ids: string[] = [];
  for (let id = await overdue(); id !== null; id = await overdue()) {
    ids.push(id);
    assert.ok(ids.length < 1000, 'run_cancel_overdue keeps returning runs');
  }
  return ids;
}
let queues = 0;
/** A run of its own queue, claimed: its id and lease token. */
async function held(options: object = {}): Promise<{ id: string; token: string }> {
  const queue = `dl${++queues}`;
  await start({ queue, ...options });
  const row = await one(`select id, lease_token from trellis.run_claim('w1', array[$1], '{w}', '{1}', 1, '30 seconds')`, [queue]);
  return { id: row.id, token: row.lease_token };
}
const apply = (ops: unknown) => sql('select * from trellis.checkpoint_apply($1)', [JSON.stringify(ops)]);

describe('run_start: deadline and time_limit', () => {
  it('run_claim and run_start_claimed return the run\'s deadline (null without one), for ctx.deadline', async () => {
    const at = new Date((await now()).getTime() + 86_400_000);
    for (const [options, want] of [[{ deadline: at.toISOString() }, at.getTime()], [{}, null]] as const) {
      const queue = `dlc${++queues}`;
      const id = await start({ queue, ...options });
      const claimed = await one(`select id, deadline_at from trellis.run_claim('w1', array[$1], '{w}', '{1}', 1, '30 seconds')`, [queue]);
      assert.equal(claimed.id, id);
      assert.equal(claimed.deadline_at?.getTime() ?? null, want);
      const handed = await one(`select claimed, deadline_at from trellis.run_start_claimed('w', '{}', $1::jsonb, 'w-local', '30 seconds')`,
        [JSON.stringify({ queue, ...options })]);
      assert.equal(handed.claimed, true);
      assert.equal(handed.deadline_at?.getTime() ?? null, want);
    }
  });

  it('a time_limit counts from run_at; a deadline is taken as given', async () => {
    const t = await now();
    const runAt = new Date(t.getTime() + 3_600_000);
    const a = await start({ run_at: runAt.toISOString(), time_limit: '30 minutes' });
    assert.equal((await runOf(a)).deadline_at.getTime(), runAt.getTime() + 1_800_000);
    const at = new Date(t.getTime() + 86_400_000);
    const b = await start({ deadline: at.toISOString() });
    assert.equal((await runOf(b)).deadline_at.getTime(), at.getTime());
    // A run_at already past: the time limit counts from now (its start), not from run_at.
    const late = await start({ run_at: new Date(t.getTime() - 86_400_000).toISOString(), time_limit: '10 minutes' });
    const lateRun = await one('select deadline_at, created_at from trellis.runs where id = $1', [late]);
    assert.equal(lateRun.deadline_at.getTime() - lateRun.created_at.getTime(), 600_000);
    const c = await start({ deadline: null, time_limit: null });
    assert.equal((await runOf(c)).deadline_at, null);
    assert.equal((await runOf(await start({}))).deadline_at, null);
  });

  it('refuses a bad deadline or time_limit with TR001 and writes nothing', async () => {
    const before = (await one('select count(*)::int as n from trellis.runs')).n;
    const t = await now();
    const cases: [object, RegExp][] = [
      [{ deadline: new Date(t.getTime() + 60_000).toISOString(), time_limit: '1 hour' }, /either a deadline or a time_limit, not both/],
      [{ deadline: 'next tuesday' }, /deadline 'next tuesday' is not a timestamp/],
      [{ time_limit: '999 years', run_at: '275000-01-01T00:00:00Z' }, /deadline must be a finite timestamp before 275760-09-13/],
      [{ deadline: 1767225600000 }, /deadline must be a timestamp, as a string/],
      [{ time_limit: 3600 }, /time_limit must be an interval, as a string/],
      [{ time_limit: '3600' }, /time_limit '3600' needs a unit/],
      [{ time_limit: '1e3' }, /time_limit '1e3' needs a unit/],
      [{ time_limit: 'forever' }, /time_limit 'forever' is not an interval/],
      [{ time_limit: '300000 years' }, /must be longer than zero and at most 1000 years/],
      [{ time_limit: '0 seconds' }, /must be longer than zero/],
      [{ time_limit: '-5 minutes' }, /must be longer than zero/],
      [{ deadline: t.toISOString() }, /is not after the run's start/],
      [{ deadline: new Date(t.getTime() - 60_000).toISOString(), run_at: new Date(t.getTime() - 120_000).toISOString() }, /is not after the run's start/],
      [{ deadline: new Date(t.getTime() + 60_000).toISOString(), run_at: new Date(t.getTime() + 120_000).toISOString() }, /is not after the run's start/],
      [{ time_limit: `1 hour'; drop table trellis.runs; --` }, /is not an interval/],
      [{ deadline: 'infinity' }, /deadline must be a finite timestamp/],
      [{ deadline: '294276-12-31T00:00:00Z' }, /before 275760-09-13 \(the last one JavaScript holds\)/],
      [{ run_at: '280000-01-01T00:00:00Z' }, /run_at must be a finite timestamp before 275760-09-13/],
      [{ deadline: '2027-02-30T00:00:00Z' }, /^deadline '2027-02-30T00:00:00Z' is not a timestamp$/],
      [{ run_at: 'infinity' }, /run_at must be a finite timestamp/],
      [{ run_at: '-infinity' }, /run_at must be a finite timestamp/],
      [{ time_limit: '1 mon -30 days' }, /must be longer than zero/],
    ];
    for (const [options, message] of cases) {
      await assert.rejects(start(options), (e: { code?: string | undefined; message?: string | undefined }) => {
        assert.equal(e.code, 'TR001', `${JSON.stringify(options)}: ${e.message}`);
        assert.match(e.message ?? '', message);
        return true;
      });
    }
    assert.equal((await one('select count(*)::int as n from trellis.runs')).n, before);
  });

  it('a time_limit is an exact duration: a month is 30 days, a day 24 hours in any time zone, whatever the date', async () => {
    const c = await fx.db.pool.connect();
    try {
      // A day that is 23 hours long in Berlin (the clocks go forward on 28 March 2027).
      await c.query(`set timezone = 'Europe/Berlin'`);
      const cases: [string, string, number][] = [
        ['2027-03-27T12:00:00+01', '1 day', 86_400_000],
        ['2027-02-01T00:00:00Z', '1 month', 30 * 86_400_000],
        ['2027-02-01T00:00:00Z', '1 mon -29 days', 86_400_000],
      ];
      for (const [runAt, limit, ms] of cases) {
        const { rows: [r] } = await c.query(`select trellis.run_start('w', '{}', $1) as id`, [JSON.stringify({ run_at: runAt, time_limit: limit })]);
        const run = await runOf(r.id);
        assert.equal(run.deadline_at.getTime() - run.run_at.getTime(), ms, `${limit} from ${runAt}`);
      }
    } finally {
      await c.query('reset timezone');
      c.release();
    }
  });

  it('a start repeated with its key returns its run even after the deadline it gave has passed', async () => {
    const at = new Date((await now()).getTime() + 600_000).toISOString();
    const first = await start({ key: 'order-42', deadline: at });
    await advance('1 hour');
    assert.equal(await start({ key: 'order-42', deadline: at }), first);
    await assert.rejects(start({ key: 'order-43', deadline: at }), (e: { code?: string | undefined }) => e.code === 'TR001');
  });

  it('run_start_claimed keeps the deadline of a run it leases at once', async () => {
    const row = await one(`select id, claimed from trellis.run_start_claimed('w', '{}', '{"time_limit": "10 minutes", "queue": "default"}', 'wk', '1 minute')`);
    assert.equal(row.claimed, true);
    const run = await runOf(row.id);
    assert.equal(run.status, 'running');
    assert.equal(run.deadline_at.getTime() - run.run_at.getTime(), 600_000);
  });
});

/** Every earlier test's deadlines passed and their runs cancelled: a test sees only its own runs become overdue. */
async function clean(): Promise<void> {
  await advance('30 days');
  await drain();
}

describe('run_cancel_overdue', () => {
  beforeEach(clean);

  it('returns null while no run is overdue, and cancels overdue runs earliest deadline first, one per call', async () => {
    assert.equal(await overdue(), null);
    const late = await start({ time_limit: '2 hours' });
    const early = await start({ time_limit: '1 hour' });
    const never = await start({});
    await advance('59 minutes');
    assert.equal(await overdue(), null);
    await advance('2 hours');
    assert.deepEqual(await drain(), [early, late]);
    for (const id of [early, late]) {
      const run = await runOf(id);
      assert.equal(run.status, 'cancelled', 'a run that never started ends cancelled at once');
      assert.equal(run.error.code, 'cancelled');
      assert.match(run.error.message, /^deadline \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z passed$/);
    }
    assert.equal((await runOf(never)).status, 'pending');
  });

  it('requests the cancellation of a started run once, and cancels its cancel-children but not abandoned ones', async () => {
    const parent = await held({ time_limit: '1 hour' });
    const kept = randomUUID();
    const abandoned = randomUUID();
    await apply([
      { op: 'child', run: parent.id, token: parent.token, seq: 0, name: 'a', child: kept, workflow: 'w', input: {} },
      { op: 'child', run: parent.id, token: parent.token, seq: 1, name: 'b', child: abandoned, workflow: 'w', input: {}, close: 'abandon' },
    ]);
    await advance('61 minutes');
    assert.deepEqual(await drain(), [parent.id], 'once: a run whose cancellation was requested is not picked again');
    const run = await runOf(parent.id);
    assert.equal(run.status, 'running');
    assert.notEqual(run.cancel_requested_at, null);
    assert.match(run.error.message, /^deadline .* passed$/);
    assert.equal((await runOf(kept)).status, 'cancelled');
    assert.equal((await runOf(abandoned)).status, 'pending');
  });

  it('passes over a finished run, and a run that is no longer overdue under its lock', async () => {
    const done = await held({ time_limit: '1 minute' });
    await apply([{ op: 'complete', run: done.id, token: done.token, output: 1 }]);
    const id = await start({ time_limit: '1 minute' });
    await advance('2 minutes');
    // _run_cancel's re-check under the lock: not overdue at an earlier time.
    assert.equal((await one(`select trellis._run_cancel($1, 'x', trellis.now() - interval '1 hour') as s`, [id])).s, null);
    assert.equal((await runOf(id)).status, 'pending');
    // The completed run's deadline row is looked at (its id returned) and
    // dropped; the run stays completed.
    assert.deepEqual(await drain(), [done.id, id]);
    assert.equal((await runOf(done.id)).status, 'completed');
    assert.equal((await runOf(id)).status, 'cancelled');
    assert.equal((await one('select count(*)::int as n from trellis.run_deadlines where run_id = any ($1)', [[done.id, id]])).n, 0);
  });

  it('only a run started with a deadline has a deadline row; a purge takes it with the run', async () => {
    const plain = await start({});
    const timed = await start({ time_limit: '1 day' });
    const rows = async () => (await sql('select run_id from trellis.run_deadlines where run_id = any ($1)', [[plain, timed]])).map((r) => r.run_id);
    assert.deepEqual(await rows(), [timed]);
    await sql(`select trellis.run_cancel($1, 'done with it')`, [timed]);
    assert.deepEqual(await rows(), [timed], 'kept until the duty looks at it or the run is purged');
    assert.equal((await one(`select trellis.run_purge('0 seconds', 1000, 'w') as n`)).n > 0, true);
    assert.deepEqual(await rows(), []);
  });

  it('a child op may carry a deadline or a time_limit; both is a malformed op', async () => {
    const parent = await held();
    const byLimit = randomUUID();
    const byDeadline = randomUUID();
    const at = new Date((await now()).getTime() + 7_200_000);
    await apply([
      { op: 'child', run: parent.id, token: parent.token, seq: 0, name: 'a', child: byLimit, workflow: 'w', input: {}, time_limit: '1 hour' },
      { op: 'child', run: parent.id, token: parent.token, seq: 1, name: 'b', child: byDeadline, workflow: 'w', input: {}, deadline: at.toISOString() },
    ]);
    const t = await now();
    const child = await runOf(byLimit);
    assert.equal(child.deadline_at.getTime() - child.run_at.getTime(), 3_600_000, 'from the checkpoint\'s time');
    assert.equal((await runOf(byDeadline)).deadline_at.getTime(), at.getTime());
    for (const bad of [{ deadline: at.toISOString(), time_limit: '1 hour' }, { time_limit: '0 seconds' }, { time_limit: '2000 years' }, { time_limit: 'soon' }]) {
      const child = randomUUID();
      await assert.rejects(
        apply([{ op: 'child', run: parent.id, token: parent.token, seq: 2, name: 'c', child, workflow: 'w', input: {}, ...bad }]),
        (e: { code?: string | undefined }) => e.code === 'TR001',
      );
      assert.equal((await one('select count(*)::int as n from trellis.runs where id = $1', [child])).n, 0);
    }
    // A child's deadline that has already passed is taken (its parent's
    // checkpoint does not fail); the next look cancels the child.
    const past = randomUUID();
    await apply([{ op: 'child', run: parent.id, token: parent.token, seq: 2, name: 'c', child: past, workflow: 'w', input: {}, deadline: new Date(t.getTime() - 1000).toISOString() }]);
    assert.deepEqual(await drain(), [past]);
  });
});

describe('a cancellation requested while an execution continues as new', () => {
  it('keeps its reason through the continue, for the end it brings', async () => {
    const run = await held({ time_limit: '1 minute' });
    await advance('2 minutes');
    assert.deepEqual(await drain(), [run.id]);
    // The execution did not see the request: it continues as new.
    await apply([{ op: 'continue', run: run.id, token: run.token, input: {} }]);
    const row = await one('select status, execution, cancel_requested_at, error from trellis.runs where id = $1', [run.id]);
    assert.equal(row.status, 'pending');
    assert.equal(row.execution, 2);
    assert.notEqual(row.cancel_requested_at, null);
    assert.match(row.error.message, /^deadline .* passed$/);
    // Nor does a pause with a reason replace it, pending or running.
    await sql(`select trellis.run_pause($1, 'hold on')`, [run.id]);
    assert.match((await one('select error from trellis.runs where id = $1', [run.id])).error.message, /^deadline .* passed$/);
    const running = await held();
    await sql(`select trellis.run_cancel($1, 'stop it')`, [running.id]);
    await sql(`select trellis.run_pause($1, 'hold on')`, [running.id]);
    assert.equal((await one('select error from trellis.runs where id = $1', [running.id])).error.message, 'stop it');
    // A plain continue still clears the error of the execution before.
    const plain = await held();
    await sql(`update trellis.runs set error = '{"message": "old"}' where id = $1`, [plain.id]);
    await apply([{ op: 'continue', run: plain.id, token: plain.token, input: {} }]);
    assert.equal((await one('select error from trellis.runs where id = $1', [plain.id])).error, null);
  });
});

describe('a deadline\'s reason survives what the run does before it ends', () => {
  beforeEach(clean);

  const endCancelled = async (id: string, queue: string) => {
    const row = await one(`select id, lease_token, cancel_requested, cancel_reason from trellis.run_claim('w9', array[$1], '{w}', '{1}', 1, '30 seconds')`, [queue]);
    assert.deepEqual([row.id, row.cancel_requested], [id, true]);
    assert.match(row.cancel_reason, /^deadline .* passed$/, 'the claim hands the reason to the code');
    // The worker's generic end of a cancelled run.
    await apply([{ op: 'cancelled', run: id, token: row.lease_token, error: { name: 'CancelledError', message: 'run cancelled' } }]);
    return runOf(id);
  };

  it('a cleanup step retried or dead-lettered after the cancel was seen: the error becomes the cancel\'s cause', async () => {
    for (const op of ['release', 'pause']) {
      const run = await held({ time_limit: '1 minute' });
      await sql(`select trellis.run_heartbeat_many(array[$1::uuid], array[$2::uuid], '1 hour')`, [run.id, run.token]);
      await advance('2 minutes');
      assert.deepEqual(await drain(), [run.id]);
      const cleanupError = { name: 'Error', message: 'refund service down' };
      await apply([{ op, run: run.id, token: run.token, delay_ms: 0, error: cleanupError, seen_cancel: true }]);
      const mid = await runOf(run.id);
      assert.equal(mid.status, op === 'release' ? 'pending' : 'paused');
      assert.match(mid.error.message, /^deadline .* passed$/, op);
      assert.deepEqual(mid.error.cause, cleanupError);
      if (op === 'pause') await sql('select trellis.run_resume($1)', [run.id]);
      const queue = (await one('select queue from trellis.runs where id = $1', [run.id])).queue;
      const done = await endCancelled(run.id, queue);
      assert.equal(done.status, 'cancelled');
      assert.match(done.error.message, /^deadline .* passed$/, `${op}: ended with the deadline's reason`);
    }
  });

  it('a run parked because its lease kept expiring keeps the cancel\'s reason, the LeaseExpiredError as its cause', async () => {
    const run = await held({ time_limit: '1 minute' });
    await sql(`update trellis.runs set lease_expiries = 4 where id = $1`, [run.id]);
    await advance('2 minutes');
    assert.deepEqual(await drain(), [run.id]);
    await sql(`select count(*) from trellis.run_claim('sweeper', '{none}', '{w}', '{1}', 1, '30 seconds')`);
    const parked = await runOf(run.id);
    assert.equal(parked.status, 'paused');
    assert.match(parked.error.message, /^deadline .* passed$/);
    assert.equal(parked.error.cause.name, 'LeaseExpiredError');
    await sql('select trellis.run_resume($1)', [run.id]);
    const queue = (await one('select queue from trellis.runs where id = $1', [run.id])).queue;
    const done = await endCancelled(run.id, queue);
    assert.equal(done.status, 'cancelled');
    assert.match(done.error.message, /^deadline .* passed$/);
  });
});

describe('run_retry and deadlines', () => {
  beforeEach(clean);

  it('drops a deadline that has passed and keeps one still ahead', async () => {
    const failed = async (time_limit: string) => {
      const run = await held({ time_limit });
      await apply([{ op: 'fail', run: run.id, token: run.token, error: { name: 'Error', message: 'boom' } }]);
      return run.id;
    };
    const passed = await failed('1 minute');
    const ahead = await failed('1 day');
    const aheadAt = (await runOf(ahead)).deadline_at;
    await advance('5 minutes');
    // Retried before the duty looked: its deadline row is still there, and
    // is passed over once the retry dropped the deadline.
    await sql('select trellis.run_retry($1)', [passed]);
    await sql('select trellis.run_retry($1)', [ahead]);
    assert.equal((await runOf(passed)).deadline_at, null);
    assert.equal((await runOf(ahead)).deadline_at.getTime(), aheadAt.getTime());
    assert.deepEqual(await drain(), [passed]);
    assert.equal((await runOf(passed)).status, 'pending', 'not cancelled: its deadline was dropped');
    await sql(`select trellis.run_cancel($1)`, [passed]);
    const failedAgain = await failed('1 minute');
    await advance('5 minutes');
    assert.deepEqual(await drain(), [failedAgain], 'a failed run is finished: its deadline cancels nothing');
    assert.equal((await runOf(failedAgain)).status, 'failed');
  });

  it('drops a cancel or pause requested before the run failed: the retried run is claimed without them', async () => {
    // The deadline's cancel reached the running run, whose code then failed instead of ending cancelled.
    const byDeadline = await held({ time_limit: '1 minute' });
    await sql(`select trellis.run_heartbeat_many(array[$1::uuid], array[$2::uuid], '1 hour')`, [byDeadline.id, byDeadline.token]);
    await advance('2 minutes');
    assert.deepEqual(await drain(), [byDeadline.id]);
    const byOperator = await held();
    await sql(`select trellis.run_cancel($1, 'operator')`, [byOperator.id]);
    const paused = await held();
    await sql(`select trellis.run_pause($1, 'look at it')`, [paused.id]);
    for (const run of [byDeadline, byOperator, paused]) {
      await apply([{ op: 'fail', run: run.id, token: run.token, error: { name: 'Error', message: 'cleanup failed' } }]);
      await sql('select trellis.run_retry($1)', [run.id]);
      const queue = (await one('select queue from trellis.runs where id = $1', [run.id])).queue;
      const claimed = await one(`select id, cancel_requested, pause_requested from trellis.run_claim('w2', array[$1], '{w}', '{1}', 1, '30 seconds')`, [queue]);
      assert.deepEqual(claimed, { id: run.id, cancel_requested: false, pause_requested: false });
    }
  });
});
