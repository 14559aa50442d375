/**
 * One shape for checkpoint data (decision 0023): the ops the worker sends
 * (src/protocol/checkpoint.ts) are read by checkpoint_apply into the
 * composite type trellis.checkpoint_op by field name, so a field the two
 * spell differently would be dropped without an error. The TS field list
 * and the composite's attributes must be the same set, and an op encoded by
 * encodeOps comes back from jsonb_populate_recordset with every field set.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CHECKPOINT_OP_FIELDS, type CheckpointOp, encodeOps } from '../../src/protocol/checkpoint.ts';
import { useFreshDatabase } from '../helpers/database-fixture.ts';

const fx = useFreshDatabase();

describe('trellis.checkpoint_op and the TS checkpoint ops', () => {
  it('have the same fields', async () => {
    const { rows } = await fx.db.pool.query<{ name: string }>(
      `select attname as name from pg_attribute
        where attrelid = 'trellis.checkpoint_op'::regclass and attnum > 0 and not attisdropped order by attnum`);
    assert.deepEqual(rows.map((r) => r.name).sort(), [...CHECKPOINT_OP_FIELDS].sort());
  });

  it('an encoded step, child and end op keep every field through jsonb_populate_recordset', async () => {
    const fence = { run: crypto.randomUUID(), token: crypto.randomUUID(), execution: 2 };
    const ops: CheckpointOp[] = [
      { ...fence, op: 'step', seq: 1, name: 's', kind: 'signal', status: 'completed', output: '{"a":1}', error: { name: 'E', message: 'm' },
        attempts: 3, ms: 4, signal: 5, delivered: 6 },
      { ...fence, op: 'child', seq: 2, name: 'c', child: crypto.randomUUID(), workflow: 'w', version: '1', input: '[1]', key: 'k', queue: 'q',
        close: 'abandon', metadata: { traceparent: 't' } },
      { ...fence, op: 'release', delay_ms: 7, error: { name: 'E', message: 'm' }, failure: true, seen_cancel: true },
      { ...fence, op: 'continue', input: '{"n":2}', keep: true },
    ];
    const { rows } = await fx.db.pool.query<Record<string, unknown>>(
      'select to_jsonb(o) as o from jsonb_populate_recordset(null::trellis.checkpoint_op, $1::jsonb) as o', [encodeOps(ops)]);
    for (const [i, op] of ops.entries()) {
      const read = (rows[i] as { o: Record<string, unknown> }).o;
      for (const [field, value] of Object.entries(op)) {
        const expected = field === 'output' || field === 'input' ? JSON.parse(value as string) : value;
        assert.deepEqual(read[field], expected, `${op.op}.${field}`);
      }
    }
  });
});
