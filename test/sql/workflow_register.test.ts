import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { useFreshDatabase } from '../helpers/database-fixture.ts';

const fx = useFreshDatabase();

const register = (workflows: unknown) => fx.db.pool.query('select trellis.workflow_register($1)', [JSON.stringify(workflows)]);
const registered = async (name: string) =>
  (await fx.db.pool.query('select version, queue, registered_at from trellis.workflows where name = $1 order by version', [name])).rows;
const start = async (workflow: string, options: Record<string, unknown> = {}) => {
  const { rows } = await fx.db.pool.query(`select trellis.run_start($1, '{}', $2) as id`, [workflow, JSON.stringify(options)]);
  const run = await fx.db.pool.query('select version, queue from trellis.runs where id = $1', [rows[0].id]);
  return run.rows[0] as { version: string; queue: string };
};

describe('workflow_register', () => {
  it('registers workflows, defaulting the queue to "default"', async () => {
    await register([{ name: 'orders', version: '1', queue: 'billing' }, { name: 'emails', version: 'v1' }]);
    assert.deepEqual((await registered('orders')).map((r) => [r.version, r.queue]), [['1', 'billing']]);
    assert.deepEqual((await registered('emails')).map((r) => [r.version, r.queue]), [['v1', 'default']]);
  });

  it('is idempotent: registering the same definitions again changes nothing', async () => {
    const list = [{ name: 'idem', version: '1', queue: 'q' }, { name: 'idem', version: '2', queue: 'q' }];
    await register(list);
    const first = await registered('idem');
    await register(list);
    await register([...list, ...list]);
    assert.deepEqual(await registered('idem'), first);
  });

  it('writes nothing (takes no transaction id, so its commit flushes no WAL) when the definitions are stored as they are', async () => {
    const list = [{ name: 'unchanged', version: '1', queue: 'q', input_schema: { type: 'object' }, hooks: ['onComplete'] }];
    await register(list);
    const c = await fx.db.pool.connect();
    try {
      const xid = async () => {
        await c.query('begin');
        await c.query('select trellis.workflow_register($1)', [JSON.stringify(list)]);
        const { rows } = await c.query('select pg_current_xact_id_if_assigned()::text as xid');
        await c.query('commit');
        return rows[0].xid as string | null;
      };
      assert.equal(await xid(), null);
      // A changed definition is still written (and so takes an id).
      list[0]!.queue = 'q2';
      assert.notEqual(await xid(), null);
      assert.equal((await registered('unchanged'))[0].queue, 'q2');
      assert.equal(await xid(), null);
    } finally {
      c.release();
    }
  });

  it('moves new runs of a version to its new queue when it is registered again with another queue', async () => {
    await register([{ name: 'mover', version: '1', queue: 'old' }]);
    assert.equal((await start('mover')).queue, 'old');
    await register([{ name: 'mover', version: '1', queue: 'new' }]);
    assert.equal((await start('mover')).queue, 'new');
    assert.equal((await registered('mover')).length, 1);
  });

  it('makes the most recently first-registered version the default for starts that name none', async () => {
    await register([{ name: 'versioned', version: '1' }]);
    assert.equal((await start('versioned')).version, '1');
    await register([{ name: 'versioned', version: '2' }]);
    assert.equal((await start('versioned')).version, '2');
    // Re-registering an old version (an old worker still running) does not make it the default again.
    await register([{ name: 'versioned', version: '1' }]);
    assert.equal((await start('versioned')).version, '2');
  });

  it('starts the version a start names, and refuses an unknown version with TR002', async () => {
    await register([{ name: 'pinned', version: '1' }]);
    await register([{ name: 'pinned', version: '2' }]);
    assert.equal((await start('pinned', { version: '1' })).version, '1');
    const before = Number((await fx.db.pool.query('select count(*) from trellis.runs')).rows[0].count);
    await assert.rejects(start('pinned', { version: '3' }), { code: 'TR002' });
    assert.equal(Number((await fx.db.pool.query('select count(*) from trellis.runs')).rows[0].count), before);
  });

  it('refuses a bad workflow, version or queue name with TR001 and registers none of the batch', async () => {
    const bad = [
      { name: `o'rders`, version: '1' },
      { name: 'x; drop table trellis.runs', version: '1' },
      { name: ' lead', version: '1' },
      { name: 'a'.repeat(129), version: '1' },
      { version: '1' },
      { name: 'ok', version: '' },
      { name: 'ok', version: '1"' },
      { name: 'ok' },
      { name: 'ok', version: '1', queue: 'q;1' },
      { name: 'ok', version: '1', queue: 'trailing ' },
      { name: 'ok', version: '1', Queue: 'images' }, // a misspelt key: the version's queue would be reset to default
      { name: 'ok', version: '1', queue: 'images', colour: 'red' },
      'orders',
    ];
    for (const item of bad) {
      await assert.rejects(register([{ name: 'batchmate', version: '1' }, item]), { code: 'TR001' }, JSON.stringify(item));
    }
    assert.deepEqual(await registered('batchmate'), []);
    assert.deepEqual(await registered('ok'), []);
  });

  it('refuses anything but a JSON array with TR001', async () => {
    for (const value of ['{"name":"x","version":"1"}', '"x"', '1', 'null']) {
      await assert.rejects(fx.db.pool.query('select trellis.workflow_register($1::jsonb)', [value]), { code: 'TR001' }, value);
    }
    await assert.rejects(fx.db.pool.query('select trellis.workflow_register(null)'), { code: 'TR001' });
    assert.deepEqual(await registered('x'), []);
  });
});
