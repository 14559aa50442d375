/**
 * The SQL contract of trellis.run_fork (decision 0032): a new run with the
 * original's current input and the settled results of its calls before the
 * given one, the original's version, queue, priority, concurrency key and
 * metadata unless the options say otherwise, its history handed to the first
 * claim, and bad input refused with nothing written.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, it } from 'node:test';
import { useFreshDatabase } from '../helpers/database-fixture.ts';

const fx = useFreshDatabase({
  setUp: (db) => db.pool.query(`select trellis.workflow_register($1)`, [JSON.stringify([
    { name: 'w', version: '1', queue: 'default' },
    { name: 'w', version: '2', queue: 'default', input_schema: { type: 'object', required: ['n'], properties: { n: { type: 'number' } } } },
  ])]),
});

const sql = async (text: string, values: unknown[] = []) => (await fx.db.pool.query(text, values)).rows;
const one = async (text: string, values: unknown[] = []) => (await sql(text, values))[0];
const apply = (ops: unknown) => sql('select * from trellis.checkpoint_apply($1)', [JSON.stringify(ops)]);
const counts = async () => one(`select (select count(*) from trellis.runs)::int as runs, (select count(*) from trellis.steps)::int as steps`);
const fork = async (id: string, from: number | null, options: object = {}): Promise<string> =>
  (await one('select trellis.run_fork($1, $2, $3) as id', [id, from, JSON.stringify(options)])).id;
const calls = async (id: string) => (await sql(
  `select seq, name, kind, status, output, error, attempts, delivered, execution from trellis.steps where run_id = $1 order by seq`, [id]))
  .map((s) => `${s.execution}.${s.seq} ${s.kind} ${s.name} ${s.status} ${JSON.stringify(s.output)}${s.delivered === null ? '' : ` d${s.delivered}`}`);

let queues = 0;
/**
 * A run of version 1 in a queue of its own, with calls 0-4 recorded: two
 * completed steps, a failed one, a step still retrying and a sleep still
 * waiting, then a completed step at 5.
 */
async function original(options: object = {}): Promise<{ id: string; token: string; queue: string }> {
  const queue = `fork${++queues}`;
  await one(`select trellis.run_start('w', '{"n": 1}', $1) as id`, [JSON.stringify({ version: '1', queue, priority: 7,
    concurrency_key: 'tenant-a', metadata: { who: 'ops' }, ...options })]);
  const row = await one(`select id, lease_token from trellis.run_claim('w1', array[$1], '{w}', '{1}', 1, '30 seconds')`, [queue]);
  const f = { run: row.id, token: row.lease_token };
  await apply([
    { ...f, op: 'step', seq: 0, name: 'a', kind: 'step', status: 'completed', output: 'A', delivered: 1 },
    { ...f, op: 'step', seq: 1, name: 'now', kind: 'now', status: 'completed', output: 1700000000000, delivered: 2 },
    { ...f, op: 'step', seq: 2, name: 'b', kind: 'step', status: 'failed', error: { name: 'Error', message: 'nope' }, attempts: 3, delivered: 3 },
    { ...f, op: 'step', seq: 3, name: 'c', kind: 'step', status: 'retrying', error: { name: 'Error', message: 'again' }, attempts: 1 },
    { ...f, op: 'step', seq: 4, name: 'nap', kind: 'sleep', status: 'waiting', output: { until: 1 } },
    { ...f, op: 'step', seq: 5, name: 'd', kind: 'step', status: 'completed', output: 'D', delivered: 4 },
  ]);
  return { id: row.id, token: row.lease_token, queue };
}

describe('run_fork', () => {
  it('copies the settled calls before the given one into a new pending run, with the original\'s options', async () => {
    const o = await original();
    const id = await fork(o.id, 5);
    assert.notEqual(id, o.id);
    assert.deepEqual(await calls(id), [
      '1.0 step a completed "A" d1', '1.1 now now completed 1700000000000 d2', '1.2 step b failed null d3',
    ], 'the retrying step and the waiting sleep are not settled; call 5 is not before 5');
    const r = await one(`select status, attempt, version, queue, priority, concurrency_key, metadata, input, key, deadline_at,
                                forked_from, forked_from_seq, execution from trellis.runs where id = $1`, [id]);
    assert.deepEqual(r, { status: 'pending', attempt: 0, version: '1', queue: o.queue, priority: 7, concurrency_key: 'tenant-a',
      metadata: { who: 'ops' }, input: { n: 1 }, key: null, deadline_at: null, forked_from: o.id, forked_from_seq: 5, execution: 1 });
    const failed = await one(`select error, attempts from trellis.steps where run_id = $1 and seq = 2`, [id]);
    assert.deepEqual(failed, { error: { name: 'Error', message: 'nope' }, attempts: 3 });
    // The original is untouched: still running under its lease, its six calls kept.
    assert.equal((await one(`select status from trellis.runs where id = $1`, [o.id])).status, 'running');
    assert.equal((await calls(o.id)).length, 6);
  });

  it('hands the copied calls to the fork\'s first claim (attempt 1)', async () => {
    const o = await original();
    const id = await fork(o.id, 2);
    const claimed = await one(`select id, attempt, history from trellis.run_claim('w2', array[$1], '{w}', '{1}', 1, '30 seconds')`, [o.queue]);
    assert.equal(claimed.id, id);
    assert.equal(claimed.attempt, 1);
    assert.deepEqual(claimed.history.map((h: { seq: number; name: string; delivered?: number | undefined }) => [h.seq, h.name, h.delivered]), [[0, 'a', 1], [1, 'now', 2]]);
  });

  it('from call 0 copies nothing: the whole run again', async () => {
    const o = await original();
    const id = await fork(o.id, 0);
    assert.deepEqual(await calls(id), []);
    assert.equal((await one(`select forked_from_seq from trellis.runs where id = $1`, [id])).forked_from_seq, 0);
    // A plain first claim: no history.
    const claimed = await one(`select id, history from trellis.run_claim('w2', array[$1], '{w}', '{1}', 1, '30 seconds')`, [o.queue]);
    assert.equal(claimed.id, id);
    assert.equal(claimed.history, null);
  });

  it('takes run_start\'s options: another version (its input checked), queue, key (a second fork with it returns the first), deadline', async () => {
    const o = await original();
    const id = await fork(o.id, 1, { version: '2', queue: 'elsewhere', key: 'fix-1', time_limit: '1 hour', metadata: { why: 'bug 12' } });
    const r = await one(`select version, queue, key, metadata, deadline_at - created_at as limit, priority from trellis.runs where id = $1`, [id]);
    assert.deepEqual({ ...r, limit: r.limit.hours }, { version: '2', queue: 'elsewhere', key: 'fix-1', metadata: { why: 'bug 12' }, limit: 1, priority: 7 });
    assert.equal((await one(`select count(*)::int as n from trellis.run_deadlines where run_id = $1`, [id])).n, 1);
    const before = await counts();
    assert.equal(await fork(o.id, 3, { version: '2', key: 'fix-1' }), id, 'the key\'s run');
    assert.deepEqual(await counts(), before, 'nothing written for a key another run holds');
    assert.deepEqual(await calls(id), ['1.0 step a completed "A" d1']);
  });

  it('forks the current execution of a run that continued as new, with that execution\'s input', async () => {
    const o = await original();
    await apply([{ op: 'continue', run: o.id, token: o.token, input: { n: 2 } }]);
    const row = await one(`select id, lease_token, execution from trellis.run_claim('w1', array[$1], '{w}', '{1}', 1, '30 seconds')`, [o.queue]);
    assert.equal(row.execution, 2);
    await apply([{ op: 'step', run: o.id, token: row.lease_token, seq: 0, name: 'second-a', kind: 'step', status: 'completed', output: 'A2' }]);
    const id = await fork(o.id, 1);
    assert.deepEqual(await calls(id), ['1.0 step second-a completed "A2"']);
    assert.deepEqual((await one(`select input from trellis.runs where id = $1`, [id])).input, { n: 2 });
  });

  it('refuses bad input with a typed error and writes nothing', async () => {
    const o = await original();
    const before = await counts();
    const refused = async (from: number | null, options: unknown, code: string, message: RegExp, id: string = o.id) => {
      await assert.rejects(sql('select trellis.run_fork($1, $2, $3)', [id, from, JSON.stringify(options)]), (e: { code?: string | undefined; message: string }) => {
        assert.equal(e.code, code, e.message);
        assert.match(e.message, message);
        return true;
      });
    };
    await refused(1, {}, 'TR002', /does not exist/, randomUUID());
    await refused(-1, {}, 'TR001', /a number from 0/);
    await refused(null, {}, 'TR001', /a number from 0/);
    await refused(1, [], 'TR001', /must be a JSON object/);
    await refused(1, { input: {} }, 'TR001', /unknown run_fork option\(s\): 'input'/);
    await refused(1, { coalesce_notify: true }, 'TR001', /unknown run_fork option/);
    await refused(1, { version: '9' }, 'TR002', /unknown workflow/);
    await refused(1, { version: "1'; drop table trellis.runs; --" }, 'TR001', /version/);
    await refused(1, { time_limit: 'a while' }, 'TR001', /time_limit/);
    await refused(1, { priority: 1.5 }, 'TR001', /priority/);
    // Past the call after its last one (calls 0 to 5: 6 keeps them all) names nothing to run again.
    await refused(7, {}, 'TR001', /has 6 calls in its current execution: fromCall 7 is past them \(6 keeps them all\)/);
    // Version 2 wants a number n: the original's input has one, a changed shape would not pass.
    await sql(`select trellis.workflow_register($1)`, [JSON.stringify([{ name: 'w', version: '3', queue: 'default',
      input_schema: { type: 'object', required: ['m'], properties: { m: { type: 'string' } } } }])]);
    await refused(1, { version: '3' }, 'TR001', /does not match its schema/);
    assert.deepEqual(await counts(), before);
  });

  it('from the call after the last keeps every settled call (the end of the history is a place to fork from)', async () => {
    const o = await original();
    const fork = await one('select trellis.run_fork($1, 6) as id', [o.id]);
    const rows = await sql('select seq from trellis.steps where run_id = $1 order by seq', [fork.id]);
    assert.deepEqual(rows.map((r) => r.seq), [0, 1, 2, 5]);
  });

  it('refuses a scrubbed run (TR004)', async () => {
    const o = await original();
    await apply([{ op: 'complete', run: o.id, token: o.token, output: 1 }]);
    await sql('select trellis.run_scrub($1)', [o.id]);
    const before = await counts();
    await assert.rejects(sql('select trellis.run_fork($1, 1)', [o.id]), (e: { code?: string | undefined }) => e.code === 'TR004');
    assert.deepEqual(await counts(), before);
  });
});
