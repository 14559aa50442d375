/**
 * The indexes of trellis.runs that a run's status changes write (issue 18):
 * a status change is never a HOT update, so each version of a runs row adds
 * an entry to every index whose predicate it meets. A claimed (running) run
 * is kept out of the listing-by-status index, and the due-time index is
 * gone (run_next_due reads runs_claim_idx); listing running runs still works.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { createClient } from '../../src/index.ts';
import { useFreshDatabase } from '../helpers/database-fixture.ts';

const fx = useFreshDatabase({ setUp: (db) => db.pool.query(`select trellis.workflow_register('[{"name":"w","version":"1","queue":"default"}]')`) });

/** The indexes of trellis.runs whose predicate the row of run `id` meets (all of them get an entry for its version). */
async function indexesHolding(id: string): Promise<string[]> {
  const { rows } = await fx.db.pool.query<{ name: string; pred: string | null }>(
    `select c.relname as name, pg_get_expr(i.indpred, i.indrelid) as pred
       from pg_index i join pg_class c on c.oid = i.indexrelid
      where i.indrelid = 'trellis.runs'::regclass order by 1`);
  const out: string[] = [];
  for (const r of rows) {
    const meets = r.pred === null ? true
      : (await fx.db.pool.query(`select (${r.pred}) as m from trellis.runs where id = $1`, [id])).rows[0].m === true;
    if (meets) out.push(r.name);
  }
  return out;
}

describe('indexes of trellis.runs written by status changes', () => {
  it('a pending run has entries in the primary key, both listing indexes and the claim index', async () => {
    const { rows: [{ id }] } = await fx.db.pool.query(`select trellis.run_start('w', '{}') as id`);
    assert.deepEqual(await indexesHolding(id), [
      'runs_claim_idx', 'runs_pkey', 'runs_status_created_idx', 'runs_workflow_created_idx']);
  });

  it('a claim (pending -> running) adds entries to three indexes: no listing-by-status entry', async () => {
    await fx.db.pool.query(`select trellis.run_start('w', '{}', '{"queue": "claimed"}')`);
    const { rows: [run] } = await fx.db.pool.query(`select id from trellis.run_claim('wk', '{claimed}', '{w}', '{1}', 1, '5 minutes')`);
    assert.deepEqual(await indexesHolding(run.id), ['runs_lease_idx', 'runs_pkey', 'runs_workflow_created_idx']);
  });

  it('listing running runs (alone and with another status) still finds them, newest first', async () => {
    const client = createClient({ pool: fx.db.pool });
    after(() => client.close());
    await fx.db.pool.query(`select trellis.run_start('w', '{}', '{"queue": "listed"}') from generate_series(1, 3)`);
    const { rows: claimed } = await fx.db.pool.query(`select id from trellis.run_claim('wk', '{listed}', '{w}', '{1}', 2, '5 minutes')`);
    const { runs: running } = await client.list({ queue: 'listed', status: 'running' });
    assert.deepEqual(running.map((r) => r.id).sort(), claimed.map((r) => r.id).sort());
    const { runs: both } = await client.list({ queue: 'listed', status: ['pending', 'running'] });
    assert.equal(both.length, 3);
    const created = both.map((r) => r.createdAt.getTime());
    assert.deepEqual(created, [...created].sort((a, b) => b - a));
  });
});
