/**
 * A hook delivery keeps the run's status and error as the transition that
 * wrote it left them (hook_deliveries.at_event, migration 000025): an
 * onPause delivered after the run was resumed still gets `paused` and the
 * pause's reason, not the run as it is by then. A parked delivery is made
 * pending again by hook_retry (on a Citus cluster too, where its row lock
 * by id alone was refused).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { useFreshDatabase } from '../helpers/database-fixture.ts';

const fx = useFreshDatabase({
  setUp: (db) => db.pool.query(`select trellis.workflow_register('[{"name":"hp","version":"1","queue":"hq","hooks":["onPause","onComplete"]}]')`),
});
const sql = async (text: string, values: unknown[] = []) => (await fx.db.pool.query(text, values)).rows;

const claim = async () => {
  const [row] = await sql(`select id, lease_token as token from trellis.run_claim('w1', '{hq}', '{hp}', '{1}', 1, '30 seconds')`);
  return row as { id: string; token: string };
};
const apply = (ops: unknown) => sql('select * from trellis.checkpoint_apply($1)', [JSON.stringify(ops)]);
const hooks = () => sql(`select hook, status, error from trellis.hook_claim('hw', '{hp}', '{1}', 10, '1 minute')`);

describe('hook deliveries', () => {
  it('carry the status and error of the transition that wrote them, after the run moved on', async () => {
    await sql(`select trellis.run_start('hp', '{}')`);
    const run = await claim();
    await apply([{ op: 'pause', run: run.id, token: run.token, error: { name: 'Error', message: 'need a look' } }]);
    await sql('select trellis.run_resume($1)', [run.id]);
    const again = await claim();
    assert.equal(again.id, run.id, 'resumed and running again before its onPause was delivered');
    const [pause] = await hooks();
    assert.deepEqual({ hook: pause.hook, status: pause.status, reason: pause.error?.message },
      { hook: 'onPause', status: 'paused', reason: 'need a look' });
    await apply([{ op: 'complete', run: again.id, token: again.token, output: 1 }]);
    const [complete] = await hooks();
    assert.deepEqual({ hook: complete.hook, status: complete.status, error: complete.error },
      { hook: 'onComplete', status: 'completed', error: null });
  });

  it('a parked delivery is pending again after hook_retry, with its attempts counted afresh, and only a parked one', async () => {
    await sql(`select trellis.run_start('hp', '{}')`);
    const run = await claim();
    await apply([{ op: 'complete', run: run.id, token: run.token, output: 2 }]);
    const [d] = await sql(`select id, attempts from trellis.hook_claim('hw', '{hp}', '{1}', 10, '1 minute') where run_id = $1`, [run.id]);
    assert.equal(await sql(`select trellis.hook_failed($1, 'hw', $2, '{"message": "down"}', null) as s`, [d.id, d.attempts])
      .then((r) => r[0].s), 'parked');
    assert.equal((await sql('select trellis.hook_retry($1) as s', [d.id]))[0].s, 'pending');
    assert.deepEqual((await sql('select status, attempts from trellis.hook_deliveries where id = $1', [d.id]))[0], { status: 'pending', attempts: 0 });
    await assert.rejects(fx.db.pool.query('select trellis.hook_retry($1)', [d.id]), { code: 'TR004', message: /is pending, not parked/ });
    await assert.rejects(fx.db.pool.query('select trellis.hook_retry(-1)'), { code: 'TR002' });
  });

  it('a delivery whose lease keeps expiring (its worker dies in the hook) is parked at max_lease_expiries, not claimed for ever', async () => {
    await sql(`select trellis.setting_set('max_lease_expiries', '3')`);
    try {
      await sql(`select trellis.run_start('hp', '{}')`);
      const run = await claim();
      await apply([{ op: 'complete', run: run.id, token: run.token, output: 3 }]);
      const take = async () => (await sql(`select id, attempts from trellis.hook_claim('hw', '{hp}', '{1}', 10, '1 minute') where run_id = $1`, [run.id]))[0];
      const expire = (id: number) => sql(`update trellis.hook_deliveries set lease_expires_at = now() - interval '1 second' where id = $1`, [id]);
      const first = await take();
      for (let n = 1; n <= 2; n++) {
        await expire(first.id);
        const again = await take();
        assert.equal(again?.id, first.id, `claimed again after expiry ${n}`);
      }
      await expire(first.id);
      assert.equal(await take(), undefined, 'the third expiry parks it');
      const [row] = await sql('select status, lease_expiries, last_error from trellis.hook_deliveries where id = $1', [first.id]);
      assert.equal(row.status, 'parked');
      assert.equal(row.lease_expiries, 3);
      assert.equal(row.last_error.name, 'LeaseExpiredError');
      assert.match(row.last_error.message, /expired 3 times/);
      assert.equal((await sql('select trellis.hook_retry($1) as s', [first.id]))[0].s, 'pending');
      assert.deepEqual((await sql('select status, attempts, lease_expiries from trellis.hook_deliveries where id = $1', [first.id]))[0],
        { status: 'pending', attempts: 0, lease_expiries: 0 }, 'an operator\'s retry counts afresh');
    } finally {
      await sql(`select trellis.setting_set('max_lease_expiries', '5')`);
    }
  });
});

describe('hook deliveries and retention', () => {
  it('a run whose hook is not delivered yet (pending, or parked) is kept by every purge; delivered, it is purged', async () => {
    await sql(`select trellis.run_start('hp', '{}')`);
    const run = await claim();
    await apply([{ op: 'complete', run: run.id, token: run.token, output: 3 }]);
    const purgeAll = async () => Number((await sql(`select trellis.run_purge('0 seconds', 1000, 'hp') as n`))[0].n)
      + Number((await sql(`select trellis.run_purge('0 seconds', 1000) as n`))[0].n);
    const exists = async () => (await sql('select 1 from trellis.runs where id = $1', [run.id])).length === 1;
    await sql(`select pg_sleep(0.01)`);
    // Pending (never claimed): kept.
    await purgeAll();
    assert.equal(await exists(), true, 'kept while its onComplete is pending');
    // Parked after failing: kept for the operator.
    const [d] = await sql(`select id, attempts from trellis.hook_claim('hw', '{hp}', '{1}', 10, '1 minute') where run_id = $1`, [run.id]);
    assert.equal((await sql(`select trellis.hook_failed($1, 'hw', $2, '{"message": "down"}', null) as s`, [d.id, d.attempts]))[0].s, 'parked');
    // The workers' purge too (retention_set's least is a second: the run is older than that after this wait).
    await sql(`select trellis.retention_set('1 second')`);
    await sql(`select pg_sleep(1.05)`);
    await sql('select trellis.run_purge_due(1000)');
    await purgeAll();
    assert.equal(await exists(), true, 'kept while its onComplete is parked');
    // Retried and delivered: purged.
    await sql('select trellis.hook_retry($1)', [d.id]);
    const [again] = await sql(`select id, attempts from trellis.hook_claim('hw', '{hp}', '{1}', 10, '1 minute') where run_id = $1`, [run.id]);
    await sql(`select trellis.hook_done($1, 'hw', $2)`, [again.id, again.attempts]);
    await sql(`select pg_sleep(0.01)`);
    assert.ok(Number((await sql('select trellis.run_purge_due(1000) as n'))[0].n) >= 1);
    assert.equal(await exists(), false, 'purged once delivered');
    await sql(`select trellis.retention_set(null)`);
  });
});
