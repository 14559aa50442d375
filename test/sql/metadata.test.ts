/**
 * A run's metadata after its start (sql/420_metadata.sql, decision 0041):
 * calls of kind 'metadata' written by checkpoint_apply under the run's lease
 * merge their patch into trellis.runs.metadata in call order (a null field
 * removes it), and run_set_metadata does the same for an operator.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { useFreshDatabase } from '../helpers/database-fixture.ts';

const fx = useFreshDatabase({ setUp: (db) => db.pool.query(`select trellis.workflow_register('[{"name":"w","version":"1","queue":"default"}]')`) });
const sql = async (text: string, values: unknown[] = []) => (await fx.db.pool.query(text, values)).rows;
let queues = 0;

/** A run held by a worker, in a queue of its own, started with `metadata`. */
async function held(metadata: object = {}): Promise<{ id: string; token: string }> {
  const queue = `m${++queues}`;
  await sql('select trellis.run_start($1, $2, $3)', ['w', '{}', JSON.stringify({ queue, metadata })]);
  const [row] = await sql(`select id, lease_token from trellis.run_claim('w1', array[$1], '{w}', '{1}', 1, '30 seconds')`, [queue]);
  return { id: row.id, token: row.lease_token };
}

const patch = (run: { id: string; token: string }, seq: number, output: unknown, extra: object = {}) =>
  ({ op: 'step', run: run.id, token: run.token, seq, name: 'metadata', kind: 'metadata', status: 'completed', output, ...extra });
const apply = (ops: object[]) => sql('select * from trellis.checkpoint_apply($1)', [JSON.stringify(ops)]);
const metadataOf = async (id: string) => (await sql('select metadata from trellis.runs where id = $1', [id]))[0]?.metadata;
const code = (c: string) => (e: { code?: string | undefined }) => e.code === c;

describe('run metadata set by the run', () => {
  it('merges each patch in call order: fields set, null fields removed, the rest kept; several runs in one batch', async () => {
    const a = await held({ tenant: 'acme', stage: 'new' });
    const b = await held();
    await apply([
      patch(a, 1, { stage: 'paid', total: 12 }), patch(b, 0, { x: [1, { y: true }] }), patch(a, 0, { stage: 'checked', ref: 'r1' }),
      { op: 'step', run: a.id, token: a.token, seq: 2, name: 's', kind: 'step', status: 'completed', output: 1 },
      patch(a, 3, { ref: null, missing: null }),
    ]);
    assert.deepEqual(await metadataOf(a.id), { tenant: 'acme', stage: 'paid', total: 12 }, 'call 0, then 1, then 3 (null removes)');
    assert.deepEqual(await metadataOf(b.id), { x: [1, { y: true }] });
    assert.deepEqual((await sql(`select id from trellis.runs where metadata @> '{"stage":"paid"}'`)).map((r) => r.id), [a.id]);
    assert.deepEqual(await sql(`select seq, kind, output from trellis.steps where run_id = $1 and kind = 'metadata' order by seq`, [a.id]), [
      { seq: 0, kind: 'metadata', output: { stage: 'checked', ref: 'r1' } },
      { seq: 1, kind: 'metadata', output: { stage: 'paid', total: 12 } },
      { seq: 3, kind: 'metadata', output: { ref: null, missing: null } },
    ], 'each patch stays in the history');
  });

  it('is fenced by the lease and applied with the run\'s end in one batch', async () => {
    const r = await held({ k: 1 });
    const stale = await apply([patch({ id: r.id, token: '00000000-0000-4000-8000-000000000000' }, 0, { forged: true })]);
    assert.equal(stale.length, 1, 'a stale token is refused');
    assert.deepEqual(await metadataOf(r.id), { k: 1 }, 'and changes nothing');
    await apply([patch(r, 0, { done: true }), { op: 'complete', run: r.id, token: r.token, output: 'ok' }]);
    assert.deepEqual(await sql('select status, metadata from trellis.runs where id = $1', [r.id]),
      [{ status: 'completed', metadata: { k: 1, done: true } }]);
  });

  it('refuses a patch that is not an object, a metadata call not completed, reserved or empty fields, and a result over the limit — changing nothing', async () => {
    const r = await held({ k: 1 });
    await assert.rejects(apply([patch(r, 0, 'text')]), code('TR001'));
    await assert.rejects(apply([patch(r, 0, [1])]), code('TR001'));
    await assert.rejects(apply([patch(r, 0, null)]), code('TR001'));
    await assert.rejects(apply([patch(r, 0, { a: 1 }, { status: 'running' })]), code('TR001'));
    await assert.rejects(apply([patch(r, 0, { traceparent: '00-x' })]), code('TR001'));
    await assert.rejects(apply([patch(r, 0, { '': 1 })]), code('TR001'));
    await sql(`select trellis.setting_set('max_payload_bytes', '100')`);
    try {
      // Each patch fits; the merged metadata does not.
      await assert.rejects(apply([patch(r, 0, { a: 'x'.repeat(60) }), patch(r, 1, { b: 'y'.repeat(60) })]), code('TR005'));
    } finally {
      await sql(`select trellis.setting_set('max_payload_bytes', '1048576')`);
    }
    assert.deepEqual(await metadataOf(r.id), { k: 1 });
    assert.deepEqual(await sql('select seq from trellis.steps where run_id = $1', [r.id]), [], 'no call recorded');
  });

  it('a batch sent again after its commit merges nothing again: an operator\'s newer change of the field stays', async () => {
    const r = await held();
    const ops = [patch(r, 0, { f: 'from the run', b: null })];
    await apply(ops);
    await sql(`select trellis.run_set_metadata($1, '{"f": "from an operator"}')`, [r.id]);
    await apply(ops); // the worker could not tell whether its commit went through
    assert.deepEqual(await metadataOf(r.id), { f: 'from an operator' });
    assert.equal((await sql('select count(*)::int as n from trellis.steps where run_id = $1', [r.id]))[0].n, 1);
  });

  it('a metadata call refused for its size is recorded as failed and merges nothing', async () => {
    const r = await held({ k: 1 });
    await apply([{ op: 'step', run: r.id, token: r.token, seq: 0, name: 'metadata', kind: 'metadata', status: 'failed',
      error: { name: 'PayloadTooLargeError', code: 'payload_too_large', message: 'too big' } }]);
    assert.deepEqual(await metadataOf(r.id), { k: 1 });
    assert.deepEqual(await sql('select seq, status from trellis.steps where run_id = $1', [r.id]), [{ seq: 0, status: 'failed' }]);
  });

  it('metadata already over a lowered limit takes a patch that removes or shortens fields, and refuses one that grows it', async () => {
    const r = await held({ a: 'x'.repeat(80), b: 'y'.repeat(80), c: 'z'.repeat(80) });
    await sql(`select trellis.setting_set('max_payload_bytes', '150')`);
    try {
      await apply([patch(r, 0, { a: null })]);
      assert.deepEqual(Object.keys(await metadataOf(r.id)), ['b', 'c'], 'still over 150 bytes: taken, it shrank');
      await sql(`select trellis.run_set_metadata($1, '{"b": "short"}')`, [r.id]);
      await assert.rejects(apply([patch(r, 1, { d: 'w'.repeat(60) })]), code('TR005'));
      await assert.rejects(sql('select trellis.run_set_metadata($1, $2::jsonb)', [r.id, JSON.stringify({ e: 'v'.repeat(60) })]), code('TR005'));
    } finally {
      await sql(`select trellis.setting_set('max_payload_bytes', '1048576')`);
    }
    assert.deepEqual(await metadataOf(r.id), { b: 'short', c: 'z'.repeat(80) });
  });
});

describe('run_set_metadata (an operator\'s change)', () => {
  it('merges into a run in any status and returns the result; the run\'s own calls merge into it', async () => {
    const r = await held({ tenant: 'acme' });
    assert.deepEqual((await sql(`select trellis.run_set_metadata($1, '{"reviewed":true,"tenant":null}') as m`, [r.id]))[0].m, { reviewed: true });
    await apply([patch(r, 0, { stage: 'x' }), { op: 'fail', run: r.id, token: r.token, error: { message: 'no' } }]);
    assert.deepEqual((await sql(`select trellis.run_set_metadata($1, '{"ticket":"OPS-1"}') as m`, [r.id]))[0].m,
      { reviewed: true, stage: 'x', ticket: 'OPS-1' }, 'a finished run too');
  });

  it('raises TR002 for an unknown run, TR004 for a scrubbed one, TR001 / TR005 for a bad patch, and changes nothing', async () => {
    await assert.rejects(sql(`select trellis.run_set_metadata(gen_random_uuid(), '{"a":1}')`), code('TR002'));
    const r = await held({ k: 1 });
    for (const bad of ['1', '"a"', '[]', 'null', '{"tracestate":"x"}', '{"":1}']) {
      await assert.rejects(sql('select trellis.run_set_metadata($1, $2::jsonb)', [r.id, bad]), code('TR001'), bad);
    }
    await assert.rejects(sql('select trellis.run_set_metadata($1, null)', [r.id]), code('TR001'));
    await sql(`select trellis.setting_set('max_payload_bytes', '100')`);
    try {
      await assert.rejects(sql('select trellis.run_set_metadata($1, $2::jsonb)', [r.id, JSON.stringify({ a: 'x'.repeat(120) })]), code('TR005'));
    } finally {
      await sql(`select trellis.setting_set('max_payload_bytes', '1048576')`);
    }
    assert.deepEqual(await metadataOf(r.id), { k: 1 });
    await apply([{ op: 'complete', run: r.id, token: r.token, output: 1 }]);
    await sql('select trellis.run_scrub($1)', [r.id]);
    await assert.rejects(sql(`select trellis.run_set_metadata($1, '{"a":1}')`, [r.id]), code('TR004'));
    assert.deepEqual(await metadataOf(r.id), {});
  });
});
