/**
 * The SQL contract of parked runs resumed (decision 0038): a pause op with an
 * error and delay_ms (a run its code parked under resumeAfter) sets
 * resume_at; run_resume_due resumes the paused runs whose resume_at passed,
 * oldest first, up to its limit; an operator's pause, resume or cancel
 * clears resume_at; a pause op without delay_ms, or one that meets an
 * operator's pause request, sets none.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { useFreshDatabase } from '../helpers/database-fixture.ts';

const fx = useFreshDatabase({
  virtualClock: true,
  setUp: (db) => db.pool.query('select trellis.workflow_register($1)', [JSON.stringify([{ name: 'parkw', version: '1', queue: 'park-q' }])]),
});

const sql = async (text: string, values: unknown[] = []) => (await fx.db.pool.query(text, values)).rows;
const one = async (text: string, values: unknown[] = []) => (await sql(text, values))[0];
const ERROR = { name: 'StepFailedError', message: 'partner down', step: 'push', attempts: 3 };

/** A run claimed and parked by its code: a pause op with the step's error (and delay_ms when given). */
let queues = 0;
async function parked(delayMs: number | undefined, options: { requestPause?: boolean } = {}): Promise<string> {
  const queue = `park-${++queues}`;
  const id = (await one(`select trellis.run_start('parkw', '{}', jsonb_build_object('queue', $1::text)) as id`, [queue])).id;
  const c = await one(`select id, lease_token from trellis.run_claim('w1', array[$1], '{parkw}', '{1}', 1, '30 seconds')`, [queue]);
  assert.equal(c.id, id);
  if (options.requestPause) await sql('select trellis.run_pause($1)', [id]);
  await sql('select * from trellis.checkpoint_apply($1)', [JSON.stringify([
    { op: 'pause', run: id, token: c.lease_token, error: ERROR, ...(delayMs === undefined ? {} : { delay_ms: delayMs }) }])]);
  return id;
}
// trellis.now() in a statement of its own: on a Citus cluster it cannot run inside a read of a distributed table.
const row = async (id: string) => ({ ...(await one(`select status, resume_at from trellis.runs where id = $1`, [id])),
  now: (await one('select trellis.now() as now')).now as Date });
const advance = (secs: number) => sql('select trellis.clock_advance(make_interval(secs => $1))', [secs]);

/** Park run `id` again through its next claim (a pause op with delay_ms and max_resumes). */
async function parkAgain(id: string, maxResumes: number): Promise<void> {
  const { queue } = await one('select queue from trellis.runs where id = $1', [id]);
  const c = await one(`select id, lease_token from trellis.run_claim('w1', array[$1], '{parkw}', '{1}', 1, '30 seconds')`, [queue]);
  assert.equal(c.id, id);
  await sql('select * from trellis.checkpoint_apply($1)', [JSON.stringify([
    { op: 'pause', run: id, token: c.lease_token, error: ERROR, delay_ms: 1000, max_resumes: maxResumes }])]);
}

describe('max_resumes (maxResumes)', () => {
  it('a park is resumed later only while auto_resumes is below max_resumes; an operator\'s resume or retry starts the count again', async () => {
    const id = await parked(undefined);
    await sql('select trellis.run_resume($1)', [id]);
    const counts = async () => one('select status, auto_resumes, resume_at is not null as due from trellis.runs where id = $1', [id]);
    for (const n of [0, 1]) {
      await parkAgain(id, 2);
      assert.deepEqual(await counts(), { status: 'paused', auto_resumes: n, due: true });
      await advance(2);
      assert.equal((await one('select trellis.run_resume_due() as n')).n, 1);
      assert.equal((await counts()).auto_resumes, n + 1);
    }
    await parkAgain(id, 2);
    assert.deepEqual(await counts(), { status: 'paused', auto_resumes: 2, due: false }, 'the cap reached: parked for an operator');
    await advance(2);
    assert.equal((await one('select trellis.run_resume_due() as n')).n, 0);
    await sql('select trellis.run_resume($1)', [id]);
    assert.deepEqual(await counts(), { status: 'pending', auto_resumes: 0, due: false });
    // An operator's resume that withdraws a pause request from a running run starts it again too.
    await parkAgain(id, 5);
    await advance(2);
    await sql('select trellis.run_resume_due()');
    assert.equal((await counts()).auto_resumes, 1);
    const { queue: q } = await one('select queue from trellis.runs where id = $1', [id]);
    const running = await one(`select id, lease_token from trellis.run_claim('w1', array[$1], '{parkw}', '{1}', 1, '30 seconds')`, [q]);
    assert.equal(running.id, id);
    await sql('select trellis.run_pause($1)', [id]);
    await sql('select trellis.run_resume($1)', [id]);
    assert.deepEqual(await counts(), { status: 'running', auto_resumes: 0, due: false });
    await sql('select * from trellis.checkpoint_apply($1)', [JSON.stringify([{ op: 'release', run: id, token: running.lease_token, delay_ms: 0, failure: false }])]);
    // A retry of a failed run starts it again too.
    await parkAgain(id, 5);
    await advance(2);
    await sql('select trellis.run_resume_due()');
    assert.equal((await counts()).auto_resumes, 1);
    const { queue } = await one('select queue from trellis.runs where id = $1', [id]);
    const c = await one(`select id, lease_token from trellis.run_claim('w1', array[$1], '{parkw}', '{1}', 1, '30 seconds')`, [queue]);
    await sql('select * from trellis.checkpoint_apply($1)', [JSON.stringify([{ op: 'fail', run: id, token: c.lease_token, error: ERROR }])]);
    await sql('select trellis.run_retry($1)', [id]);
    assert.deepEqual(await counts(), { status: 'pending', auto_resumes: 0, due: false });
  });
});

describe('run_resume_due', () => {
  it('a run parked with delay_ms is resumed once its resume_at has passed, not before', async () => {
    const id = await parked(60_000);
    const r = await row(id);
    assert.equal(r.status, 'paused');
    const ahead = r.resume_at.getTime() - r.now.getTime();
    assert.ok(ahead > 59_000 && ahead <= 60_000, `resume_at ${ahead} ms ahead`);
    assert.equal((await one('select trellis.run_resume_due() as n')).n, 0);
    await advance(60);
    assert.equal((await one('select trellis.run_resume_due() as n')).n, 1);
    const after = await row(id);
    assert.deepEqual([after.status, after.resume_at], ['pending', null]);
    const events = await sql(`select kind, body from trellis.events where run_id = $1 order by xid, id`, [id]);
    assert.deepEqual(events.slice(-2).map((e) => e.kind), ['paused', 'resumed']);
    assert.equal(events.at(-1).body.reason, 'resume_after', 'the duty\'s resume, told apart from an operator\'s');
    assert.equal((await one('select trellis.run_resume_due() as n')).n, 0, 'once');
  });

  it('resumes the oldest first, up to the limit', async () => {
    const a = await parked(1_000);
    await advance(1);
    const b = await parked(1_000);
    await advance(5);
    assert.equal((await one('select trellis.run_resume_due(1) as n')).n, 1);
    assert.equal((await row(a)).status, 'pending');
    assert.equal((await row(b)).status, 'paused');
    assert.equal((await one('select trellis.run_resume_due(10) as n')).n, 1);
    assert.equal((await row(b)).status, 'pending');
  });

  it('sets nothing without delay_ms, or when an operator asked for the pause; an operator\'s pause, resume or cancel clears it', async () => {
    const plain = await parked(undefined);
    assert.equal((await row(plain)).resume_at, null);
    const asked = await parked(1_000, { requestPause: true });
    assert.deepEqual([(await row(asked)).status, (await row(asked)).resume_at], ['paused', null]);
    const held = await parked(1_000);
    assert.equal(await (await one(`select trellis.run_pause($1, 'operator hold') as s`, [held])).s, 'paused');
    assert.equal((await row(held)).resume_at, null, 'an operator\'s pause holds it');
    const error = (await one('select error from trellis.runs where id = $1', [held])).error;
    assert.deepEqual([error.code, error.message, error.cause.message], ['paused', 'operator hold', 'partner down'], 'the reason, with the code\'s error as its cause');
    // So does a bulk pause (it takes parked runs to be resumed, and no other paused run).
    const bulkHeld = await parked(1_000);
    const rows = await sql('select * from trellis.run_pause_many($1)', [JSON.stringify({ ids: [bulkHeld, plain] })]);
    assert.deepEqual(rows.map((r) => [r.id, r.status, r.changed]), [[bulkHeld, 'paused', true]]);
    assert.equal((await row(bulkHeld)).resume_at, null);
    const cancelled = await parked(1_000);
    await sql('select trellis.run_cancel($1)', [cancelled]);
    assert.equal((await row(cancelled)).resume_at, null);
    const resumed = await parked(1_000);
    await sql('select trellis.run_resume($1)', [resumed]);
    assert.equal((await row(resumed)).resume_at, null);
    await advance(10);
    assert.equal((await one('select trellis.run_resume_due() as n')).n, 0);
    assert.deepEqual([(await row(plain)).status, (await row(asked)).status, (await row(held)).status, (await row(bulkHeld)).status],
      ['paused', 'paused', 'paused', 'paused']);
  });

  it('refuses a limit out of range with TR001', async () => {
    for (const limit of [0, 10001, null]) {
      await assert.rejects(sql('select trellis.run_resume_due($1)', [limit]), (e: any) => e.code === 'TR001' && /limit must be from 1 to 10000/.test(e.message));
    }
  });
});
