/**
 * run_release_owned: a worker gives back the runs leased to it that it does
 * not know of (a claim whose commit outcome was unknown, a previous process
 * with the same id), keeping the ones it holds.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { useFreshDatabase } from '../helpers/database-fixture.ts';

const fx = useFreshDatabase({ setUp: (db) => db.pool.query(`select trellis.workflow_register('[{"name":"w","version":"1","queue":"default"}]')`) });

const sql = async (text: string, values: unknown[] = []) => (await fx.db.pool.query(text, values)).rows;

async function leased(worker: string, queue: string): Promise<string> {
  await sql('select trellis.run_start($1, $2, $3)', ['w', '{}', JSON.stringify({ queue })]);
  const [row] = await sql(`select id from trellis.run_claim($1, array[$2], '{w}', '{1}', 1, '1 hour')`, [worker, queue]);
  return row.id;
}

describe('run_release_owned', () => {
  it("makes the worker's other runs pending now and keeps the listed ones and other workers' runs", async () => {
    const kept = await leased('w-a', 'ro1');
    const lost = await leased('w-a', 'ro2');
    const others = await leased('w-b', 'ro3');
    const [{ n }] = await sql('select trellis.run_release_owned($1, $2::uuid[]) as n', ['w-a', [kept]]);
    assert.equal(n, 1);
    const rows = await sql('select id, status, lease_owner, lease_token from trellis.runs where id = any($1::uuid[]) order by queue', [[kept, lost, others]]);
    assert.deepEqual(rows.map((r) => [r.id, r.status, r.lease_owner]), [[kept, 'running', 'w-a'], [lost, 'pending', null], [others, 'running', 'w-b']]);
    assert.equal(rows[1].lease_token, null);
    const [again] = await sql('select trellis.run_release_owned($1, $2::uuid[]) as n', ['w-a', [kept]]);
    assert.equal(again.n, 0, 'nothing left to give back');
  });

  it('refuses a NULL, empty or huge worker id', async () => {
    for (const worker of [null, '', 'x'.repeat(201)]) {
      await assert.rejects(sql('select trellis.run_release_owned($1, null)', [worker]), (e: { code?: string | undefined }) => e.code === 'TR001');
    }
  });
});
