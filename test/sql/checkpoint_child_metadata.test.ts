import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, it } from 'node:test';
import { useFreshDatabase } from '../helpers/database-fixture.ts';

const fx = useFreshDatabase({ setUp: (db) => db.pool.query(`select trellis.workflow_register('[{"name":"w","version":"1","queue":"default"}]')`) });

const sql = async (text: string, values: unknown[] = []) => (await fx.db.pool.query(text, values)).rows;
let queues = 0;

/** A run of its own queue, claimed: its id and lease token. */
async function held(): Promise<{ id: string; token: string }> {
  const queue = `cm${++queues}`;
  await sql('select trellis.run_start($1, $2, $3)', ['w', '{}', JSON.stringify({ queue })]);
  const [row] = await sql(`select id, lease_token from trellis.run_claim('w1', array[$1], '{w}', '{1}', 1, '30 seconds')`, [queue]);
  return { id: row.id, token: row.lease_token };
}

const apply = (ops: unknown) => sql('select * from trellis.checkpoint_apply($1)', [JSON.stringify(ops)]);

describe('checkpoint_apply child op metadata', () => {
  it('starts the child run with the metadata the op carries (the trace context)', async () => {
    const parent = await held();
    const child = randomUUID();
    const metadata = { traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01', tracestate: 'vendor=x' };
    await apply([{ op: 'child', run: parent.id, token: parent.token, seq: 0, name: 'c', child, workflow: 'w', input: {}, metadata }]);
    const [row] = await sql('select metadata, parent_run_id from trellis.runs where id = $1', [child]);
    assert.deepEqual(row.metadata, metadata);
    assert.equal(row.parent_run_id, parent.id);
  });

  it('starts the child with empty metadata when the op carries none', async () => {
    const parent = await held();
    const child = randomUUID();
    await apply([{ op: 'child', run: parent.id, token: parent.token, seq: 0, name: 'c', child, workflow: 'w', input: {} }]);
    assert.deepEqual((await sql('select metadata from trellis.runs where id = $1', [child]))[0].metadata, {});
  });

  it('refuses metadata that is not an object with TR001 and writes nothing', async () => {
    const parent = await held();
    const child = randomUUID();
    await assert.rejects(
      apply([{ op: 'child', run: parent.id, token: parent.token, seq: 0, name: 'c', child, workflow: 'w', input: {}, metadata: ['not', 'an', 'object'] }]),
      (e: { code?: string | undefined; message?: string | undefined }) => e.code === 'TR001' && /metadata must be a JSON object/.test(e.message ?? ''),
    );
    assert.equal((await sql('select count(*)::int as n from trellis.runs where id = $1', [child]))[0].n, 0);
    assert.equal((await sql('select count(*)::int as n from trellis.steps where run_id = $1', [parent.id]))[0].n, 0);
  });
});
