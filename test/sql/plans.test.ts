/**
 * sql/900_plans.sql: the hot functions keep generic plans and never choose a
 * sequential scan, so a session that first calls them on a new, unanalyzed
 * database does not keep whole-table scans of trellis.runs as it grows.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import pg from 'pg';
import { useFreshDatabase } from '../helpers/database-fixture.ts';

const fx = useFreshDatabase({ setUp: (db) => db.pool.query(`select trellis.workflow_register('[{"name":"w","version":"1","queue":"default"}]')`) });

const HOT = [
  'run_claim', 'checkpoint_apply', '_run_start', 'run_start_claimed', 'run_heartbeat_many',
  '_wake_child_waiters', 'signal_send', 'run_next_due', '_purge_workflow',
];

describe('plans of the hot functions', () => {
  it('each has plan_cache_mode = force_generic_plan, enable_seqscan = off and jit = off', async () => {
    const { rows } = await fx.db.pool.query<{ proname: string; proconfig: string[] | null }>(
      `select p.proname, p.proconfig from pg_proc p join pg_namespace n on n.oid = p.pronamespace
        where n.nspname = 'trellis' and p.proname = any ($1)`, [HOT]);
    assert.deepEqual(rows.map((r) => r.proname).sort(), [...HOT].sort());
    for (const r of rows) {
      assert.ok(r.proconfig?.includes('plan_cache_mode=force_generic_plan'), `${r.proname}: ${r.proconfig}`);
      assert.ok(r.proconfig?.includes('enable_seqscan=off'), `${r.proname}: ${r.proconfig}`);
      // A sequential scan left in them costs 1e10 under enable_seqscan = off: with JIT it was compiled at every call.
      assert.ok(r.proconfig?.includes('jit=off'), `${r.proname}: ${r.proconfig}`);
    }
  });

  it('a completing checkpoint on a new, unanalyzed database reads trellis.runs by index only', async (t) => {
    const c = new pg.Client({ connectionString: fx.db.url });
    await c.connect();
    try {
      // auto_explain shows the plans of the statements inside the function (LOAD needs a superuser).
      const { rows: [me] } = await c.query('select rolsuper from pg_roles where rolname = current_user');
      assert.equal(me.rolsuper, true, 'this test needs a superuser (npm test on the embedded server is one)');
      const notes: string[] = [];
      c.on('notice', (n) => notes.push(n.message ?? ''));
      await c.query(`load 'auto_explain'`);
      await c.query(`set auto_explain.log_min_duration = 0; set auto_explain.log_nested_statements = on; set auto_explain.log_level = notice`);
      const { rows: [run] } = await c.query(`select * from trellis.run_start_claimed('w', '{}', '{}', 'wk', '30 seconds')`);
      const f = { run: run.id, token: run.lease_token, execution: 1 };
      notes.length = 0;
      const { rows: refused } = await c.query('select * from trellis.checkpoint_apply($1::jsonb)', [JSON.stringify([
        { ...f, op: 'step', seq: 1, name: 'first', kind: 'step', status: 'completed', attempts: 1, ms: 0, delivered: 1 },
        { ...f, op: 'complete' },
      ])]);
      assert.deepEqual(refused, []);
      const { rows: [done] } = await c.query('select status from trellis.runs where id = $1', [run.id]);
      assert.equal(done.status, 'completed');
      const plans = notes.join('\n');
      t.diagnostic(`${notes.length} plans`);
      assert.match(plans, /on runs/, 'auto_explain reported the statements on trellis.runs');
      assert.doesNotMatch(plans, /Seq Scan on (runs|steps)\b/);
    } finally {
      await c.end();
    }
  });

  it('the fence of a checkpoint reads the runs of its ops, not every running run', async (t) => {
    const c = new pg.Client({ connectionString: fx.db.url });
    await c.connect();
    try {
      await c.query(`select count(trellis.run_start('w', '{}', '{}')) from generate_series(1, 300)`);
      // Statistics taken while every run is pending, as autovacuum takes
      // them in a busy queue: they estimate ~1 running run.
      await c.query('analyze trellis.runs');
      const { rows: held } = await c.query(`select id, lease_token from trellis.run_claim('wk', '{default}', '{w}', '{1}', 300, '5 minutes')`);
      assert.equal(held.length, 300);
      const [run] = held;
      // Index entries of trellis.runs read by this transaction so far.
      const fetched = async () => Number((await c.query(`select sum(pg_stat_get_xact_tuples_returned(indexrelid)) as n
        from pg_index where indrelid = 'trellis.runs'::regclass`)).rows[0].n);
      await c.query('begin');
      const before = await fetched();
      const f = { run: run.id, token: run.lease_token, execution: 1 };
      const { rows: refused } = await c.query('select * from trellis.checkpoint_apply($1::jsonb)', [JSON.stringify([
        { ...f, op: 'step', seq: 1, name: 'first', kind: 'step', status: 'completed', attempts: 1, ms: 0, delivered: 1 },
        { ...f, op: 'complete' },
      ])]);
      const read = (await fetched()) - before;
      await c.query('commit');
      t.diagnostic(`index entries read: ${read}`);
      assert.deepEqual(refused, []);
      // A handful of probes by id (lock, fence, step, move), not the 300 running runs.
      assert.ok(read < 50, `a checkpoint of one run read ${read} index entries of trellis.runs with 300 running`);
      // The same for a heartbeat and the poll of cancel and pause requests.
      const [other] = held.slice(1);
      await c.query('begin');
      const b2 = await fetched();
      const { rows: beat } = await c.query(`select * from trellis.run_heartbeat_many($1::uuid[], $2::uuid[], '5 minutes')`, [[other.id], [other.lease_token]]);
      const { rows: asked } = await c.query('select * from trellis.run_requests($1::uuid[], $2::uuid[])', [[other.id], [other.lease_token]]);
      const read2 = (await fetched()) - b2;
      await c.query('commit');
      assert.equal(beat.length, 1);
      assert.equal(asked.length, 0);
      assert.ok(read2 < 20, `a heartbeat and a request poll of one run read ${read2} index entries of trellis.runs with 300 running`);
    } finally {
      await c.end();
    }
  });
});
