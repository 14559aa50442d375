import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { freshDatabase, type TestDatabase } from '../helpers/db.ts';

let db: TestDatabase;
before(async () => {
  db = await freshDatabase();
  await db.pool.query(`select trellis.workflow_register('[{"name":"orders","version":"1","queue":"default"}]')`);
});
after(() => db.close());

const count = async () => Number((await db.pool.query('select count(*) from trellis.runs')).rows[0].count);

describe('run_start', () => {
  it('returns the same run for a repeated key, also under 50 concurrent callers', async () => {
    const before = await count();
    const ids = await Promise.all(
      Array.from({ length: 50 }, () =>
        db.pool.query(`select trellis.run_start('orders', '{"n":1}', '{"key":"order-42"}') as id`).then((r) => r.rows[0].id as string)),
    );
    assert.equal(new Set(ids).size, 1);
    assert.equal((await count()) - before, 1);
  });

  it('refuses an unknown workflow with TR002 and writes nothing', async () => {
    const before = await count();
    await assert.rejects(db.pool.query(`select trellis.run_start('nope', '{}')`), { code: 'TR002' });
    assert.equal(await count(), before);
  });

  it('refuses names with quotes or SQL in them with TR001', async () => {
    const before = await count();
    for (const name of [`o'rders`, 'orders; drop table trellis.runs', '"x"', '', ' lead']) {
      await assert.rejects(db.pool.query('select trellis.run_start($1, $2)', [name, '{}']), { code: 'TR001' }, name);
    }
    await assert.rejects(
      db.pool.query(`select trellis.run_start('orders', '{}', '{"queue":"q''; select 1"}')`),
      { code: 'TR001' },
    );
    assert.equal(await count(), before);
  });

  it('refuses malformed JSON with a data exception (22P02)', async () => {
    await assert.rejects(db.pool.query(`select trellis.run_start('orders', '{bad')`), { code: '22P02' });
  });

  it('refuses an oversized input with TR005', async () => {
    await db.pool.query(`select trellis.setting_set('max_payload_bytes', '1000')`);
    try {
      await assert.rejects(
        db.pool.query('select trellis.run_start($1, $2)', ['orders', JSON.stringify({ blob: 'x'.repeat(5000) })]),
        { code: 'TR005' },
      );
    } finally {
      await db.pool.query(`select trellis.setting_set('max_payload_bytes', '1048576')`);
    }
  });

  it('is rolled back with the caller transaction', async () => {
    const client = await db.pool.connect();
    try {
      await client.query('begin');
      const id = (await client.query(`select trellis.run_start('orders', '{}') as id`)).rows[0].id;
      await client.query('rollback');
      assert.equal((await db.pool.query('select 1 from trellis.runs where id = $1', [id])).rowCount, 0);
    } finally {
      client.release();
    }
  });
  it('refuses unknown options and malformed key, priority, run_at or metadata with TR001', async () => {
    const before = await count();
    const bad = [
      { queue: 'default', colour: 'red' },
      { key: '' },
      { key: 'k'.repeat(513) },
      { priority: 1.5 },
      { priority: '5' },
      { priority: 32768 },
      { run_at: 'tomorrow-ish' },
      { metadata: [] },
      { metadata: 'x' },
    ];
    for (const options of bad) {
      await assert.rejects(
        db.pool.query(`select trellis.run_start('orders', '{}', $1)`, [JSON.stringify(options)]),
        { code: 'TR001' },
        JSON.stringify(options),
      );
    }
    await assert.rejects(db.pool.query(`select trellis.run_start('orders', '{}', '[]')`), { code: 'TR001' });
    assert.equal(await count(), before);
  });

  it('notifies trellis:run_ready with the queue of a run due now, but not of a run due later', async () => {
    const listener = new pg.Client({ connectionString: db.url });
    await listener.connect();
    try {
      await listener.query('listen "trellis:run_ready"');
      const payloads: string[] = [];
      // Notifications arrive in commit order: once 'now-queue' is here, 'later-queue' would have been too.
      const arrived = new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no notification for now-queue; got ${payloads}`)), 5000);
        listener.on('notification', (n) => {
          payloads.push(n.payload ?? '');
          if (n.payload === 'now-queue') resolve(clearTimeout(timer));
        });
      });
      await db.pool.query(`select trellis.run_start('orders', '{}', '{"queue":"later-queue","run_at":"2999-01-01T00:00:00Z"}')`);
      await db.pool.query(`select trellis.run_start('orders', '{}', '{"queue":"now-queue"}')`);
      await arrived;
      assert.deepEqual(payloads, ['now-queue']);
    } finally {
      await listener.end();
    }
  });
});
