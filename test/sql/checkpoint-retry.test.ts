/**
 * A worker retries a checkpoint batch after a transient fault. When the
 * connection died during COMMIT the first attempt may have committed, so the
 * same batch can reach checkpoint_apply twice: the second time it must
 * change nothing, and an end op must be refused (its lease is gone), never
 * applied twice.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, it } from 'node:test';
import { useFreshDatabase } from '../helpers/database-fixture.ts';

type Held = { id: string; token: string };

const fx = useFreshDatabase({ setUp: (db) => db.pool.query(`select trellis.workflow_register('[{"name":"w","version":"1","queue":"default"}]')`) });

const sql = async (text: string, values: unknown[] = []) => (await fx.db.pool.query(text, values)).rows;
let queues = 0;

async function held(): Promise<Held> {
  const queue = `retry${++queues}`;
  await sql('select trellis.run_start($1, $2, $3)', ['w', '{}', JSON.stringify({ queue })]);
  const [row] = await sql(`select id, lease_token from trellis.run_claim('w1', array[$1], '{w}', '{1}', 1, '30 seconds')`, [queue]);
  return { id: row.id, token: row.lease_token };
}

/** checkpoint_apply; returns the refused leases as 'run/token'. */
const apply = async (ops: unknown) =>
  (await sql('select run_id, token from trellis.checkpoint_apply($1)', [JSON.stringify(ops)])).map((r) => `${r.run_id}/${r.token}`);
const snapshot = async (id: string) => ({
  run: (await sql(`select status, output, error, failures, attempt, execution, run_at, finished_at, lease_token
                     from trellis.runs where id = $1`, [id]))[0],
  steps: await sql('select execution, seq, name, kind, status, output, attempts, delivered, finished_at from trellis.steps where run_id = $1 order by seq', [id]),
  signals: await sql('select id, consumed_at, consumed_seq from trellis.signals where run_id = $1 order by id', [id]),
  children: await sql('select id, status from trellis.runs where parent_run_id = $1 order by id', [id]),
});

describe('checkpoint_apply applied twice (a retry after a commit whose outcome was unknown)', () => {
  it('changes nothing the second time for steps, a consumed signal and a child start', async () => {
    const h = await held();
    await sql(`select trellis.signal_send($1, 'go', '{"n":1}')`, [h.id]);
    const [signal] = await sql('select id from trellis.signals where run_id = $1', [h.id]);
    const fence = { run: h.id, token: h.token };
    const marker = { ...fence, op: 'step', seq: 0, name: 'a', kind: 'step', status: 'running', attempts: 1 };
    assert.deepEqual(await apply([marker]), []);
    // (The committer never puts a marker and its own result in one batch.)
    const batch = [
      { ...fence, op: 'step', seq: 0, name: 'a', kind: 'step', status: 'completed', output: 1, attempts: 1, delivered: 1 },
      { ...fence, op: 'step', seq: 1, name: 'go', kind: 'signal', status: 'completed', output: { n: 1 }, signal: signal.id, delivered: 2 },
      { ...fence, op: 'child', seq: 2, name: 'c', child: randomUUID(), workflow: 'w', queue: `child${queues}` },
    ];
    assert.deepEqual(await apply(batch), []);
    const first = await snapshot(h.id);
    assert.equal(first.steps.length, 3);
    assert.equal(first.children.length, 1);
    assert.equal(first.signals[0].consumed_seq, 1);

    assert.deepEqual(await apply(batch), [], 'the lease is still held: nothing refused');
    assert.deepEqual(await snapshot(h.id), first, 'the second apply changed nothing');

    // A 'running' marker of the same call arriving again cannot reopen its result.
    assert.deepEqual(await apply([marker]), []);
    assert.deepEqual(await snapshot(h.id), first);
  });

  for (const end of [
    { op: 'complete', output: { total: 3 } },
    { op: 'fail', error: { name: 'Error', message: 'boom' } },
    { op: 'release', delay_ms: 60_000, failure: true, error: { name: 'Error', message: 'again' } },
    { op: 'wait', delay_ms: 60_000, signal: 0, seen_cancel: false },
    { op: 'pause', error: { name: 'Error', message: 'parked' } },
    { op: 'continue', input: { next: 1 }, keep: false },
  ]) {
    it(`refuses a ${end.op} applied again and leaves the run as the first one left it`, async () => {
      const h = await held();
      const fence = { run: h.id, token: h.token };
      const batch = [
        { ...fence, op: 'step', seq: 0, name: 'a', kind: 'step', status: 'failed', error: { message: 'x' }, attempts: 3, delivered: 1 },
        { ...fence, ...end },
      ];
      assert.deepEqual(await apply(batch), []);
      const first = await snapshot(h.id);
      assert.equal(first.run.lease_token, null, 'the end gave the lease up');
      assert.deepEqual(await apply(batch), [`${h.id}/${h.token}`], 'the retried batch is refused as stale');
      assert.deepEqual(await snapshot(h.id), first, 'and changed nothing');
    });
  }
});
