import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import pg from 'pg';
import { useFreshDatabase } from '../helpers/database-fixture.ts';
import { backendId, lockWaiting } from '../helpers/lock-wait.ts';
import { waitFor } from '../helpers/wait.ts';

const fx = useFreshDatabase({
  setUp: (db) => db.pool.query(`select trellis.workflow_register('[{"name":"orders","version":"1","queue":"default"}]')`),
});

const count = async () => Number((await fx.db.pool.query('select count(*) from trellis.runs')).rows[0].count);

describe('run_start', () => {
  it('returns the same run for a repeated key', async () => {
    const before = await count();
    const first = (await fx.db.pool.query(`select trellis.run_start('orders', '{"n":1}', '{"key":"order-41"}') as id`)).rows[0].id;
    const again = (await fx.db.pool.query(`select trellis.run_start('orders', '{"n":2}', '{"key":"order-41"}') as id`)).rows[0].id;
    assert.equal(again, first);
    assert.equal((await count()) - before, 1);
  });

  it('a repeated key writes no queue row for a queue new to it, and nothing else', async () => {
    const queueRow = async (name: string) => Number((await fx.db.pool.query('select count(*) from trellis.queues where name = $1', [name])).rows[0].count);
    const first = (await fx.db.pool.query(`select trellis.run_start('orders', '{}', '{"key":"order-q1"}') as id`)).rows[0].id;
    const before = await count();
    const again = (await fx.db.pool.query(`select trellis.run_start('orders', '{}', '{"key":"order-q1","queue":"brand-new-queue"}') as id`)).rows[0].id;
    assert.equal(again, first);
    assert.equal(await count(), before);
    assert.equal(await queueRow('brand-new-queue'), 0);
    await fx.db.pool.query(`select trellis.run_start('orders', '{}', '{"key":"order-q2","queue":"brand-new-queue"}')`);
    assert.equal(await queueRow('brand-new-queue'), 1, 'a new run makes its queue\'s row');
  });

  it('a start waiting on a key whose first start rolls back makes the new queue row itself', async () => {
    const holder = new pg.Client({ connectionString: fx.db.url });
    const waiter = new pg.Client({ connectionString: fx.db.url, application_name: 'queue-row-waiter' });
    await holder.connect();
    await waiter.connect();
    try {
      const waiterId = await backendId(waiter);
      await holder.query('begin');
      await holder.query(`select trellis.run_start('orders', '{}', '{"key":"order-q3","queue":"rolled-back-queue"}')`);
      const started = waiter.query(`select trellis.run_start('orders', '{}', '{"key":"order-q3","queue":"rolled-back-queue"}') as id`);
      await waitFor(() => lockWaiting(fx.db.pool, waiterId), { what: 'the second start to wait on the key' });
      await holder.query('rollback');
      const { id } = (await started).rows[0];
      assert.equal((await fx.db.pool.query(`select queue from trellis.runs where id = $1`, [id])).rows[0].queue, 'rolled-back-queue');
      assert.equal(Number((await fx.db.pool.query(`select count(*) from trellis.queues where name = 'rolled-back-queue'`)).rows[0].count), 1);
    } finally {
      await holder.end();
      await waiter.end();
    }
  });

  // 50 callers on 50 connections, all blocked behind an open transaction that
  // started the same key, then released at once: by its commit (they all get
  // its run) or by its rollback (they race for the key among themselves).
  for (const release of ['commit', 'rollback'] as const) {
    it(`50 concurrent callers on their own connections, released together by a ${release}, start exactly one run`, async () => {
      const key = `order-${release}-${crypto.randomUUID()}`;
      const options = JSON.stringify({ key });
      const holder = new pg.Client({ connectionString: fx.db.url });
      const callers = Array.from({ length: 50 }, () => new pg.Client({ connectionString: fx.db.url, application_name: key.slice(0, 60) }));
      await Promise.all([holder, ...callers].map((c) => c.connect()));
      try {
        await holder.query('begin');
        const held = (await holder.query(`select trellis.run_start('orders', '{}', $1) as id`, [options])).rows[0].id as string;
        const ids = Promise.all(callers.map((c) =>
          c.query(`select trellis.run_start('orders', '{}', $1) as id`, [options]).then((r) => r.rows[0].id as string)));
        // Every caller is waiting on the holder's uncommitted row before we let go.
        await waitFor(async () => Number((await fx.db.pool.query(
          `select count(*) from pg_stat_activity
            where datname = current_database() and application_name = $1 and wait_event_type = 'Lock'`,
          [key.slice(0, 60)])).rows[0].count) === 50, { timeout: 10_000, what: '50 blocked callers' });
        await holder.query(release);
        const got = await ids;
        assert.equal(new Set(got).size, 1, `distinct ids: ${new Set(got).size}`);
        const { rows } = await fx.db.pool.query(`select id from trellis.runs where workflow = 'orders' and key = $1`, [key]);
        assert.equal(rows.length, 1);
        assert.equal(got[0], rows[0].id);
        if (release === 'commit') assert.equal(rows[0].id, held);
        else assert.notEqual(rows[0].id, held);
      } finally {
        await Promise.all([holder, ...callers].map((c) => c.end()));
      }
    });
  }

  describe('from a trigger on an application table', () => {
    before(async () => {
      await fx.db.pool.query(`
        create table public.app_orders (id serial primary key, ref text not null);
        create function public.app_orders_start() returns trigger language plpgsql as $$
        begin
          perform trellis.run_start('orders', jsonb_build_object('ref', new.ref),
                                    jsonb_build_object('key', 'app-order-' || new.id));
          return null;
        end $$;
        create trigger app_orders_start after insert on public.app_orders
          for each row execute function public.app_orders_start();`);
    });
    const byKey = (a: { key: string }, b: { key: string }) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0);
    const runsOf = async (refs: string[]) => (await fx.db.pool.query(
      `select key, input->>'ref' as ref from trellis.runs where input->>'ref' = any($1)`, [refs])).rows.sort(byKey);

    it('a rolled-back insert leaves no run', async () => {
      const client = await fx.db.pool.connect();
      try {
        await client.query('begin');
        await client.query(`insert into public.app_orders (ref) values ('rolled-back-1'), ('rolled-back-2')`);
        // The trigger did start them, inside the transaction.
        assert.equal((await client.query(`select count(*)::int as n from trellis.runs where input->>'ref' like 'rolled-back-%'`)).rows[0].n, 2);
        await client.query('rollback');
      } finally {
        client.release();
      }
      assert.deepEqual(await runsOf(['rolled-back-1', 'rolled-back-2']), []);
    });

    it('a committed multi-row insert starts exactly one run per row', async () => {
      const refs = ['multi-a', 'multi-b', 'multi-c'];
      const before = await count();
      const { rows: inserted } = await fx.db.pool.query(
        'insert into public.app_orders (ref) select unnest($1::text[]) returning id, ref', [refs]);
      assert.equal(inserted.length, 3);
      assert.equal((await count()) - before, 3);
      assert.deepEqual(await runsOf(refs),
        inserted.map((r) => ({ key: `app-order-${r.id}`, ref: r.ref })).sort(byKey));
    });
  });

  it('refuses an unknown workflow with TR002 and writes nothing', async () => {
    const before = await count();
    await assert.rejects(fx.db.pool.query(`select trellis.run_start('nope', '{}')`), { code: 'TR002' });
    assert.equal(await count(), before);
  });

  it('refuses names with quotes or SQL in them with TR001', async () => {
    const before = await count();
    for (const name of [`o'rders`, 'orders; drop table trellis.runs', '"x"', '', ' lead']) {
      await assert.rejects(fx.db.pool.query('select trellis.run_start($1, $2)', [name, '{}']), { code: 'TR001' }, name);
    }
    await assert.rejects(
      fx.db.pool.query(`select trellis.run_start('orders', '{}', '{"queue":"q''; select 1"}')`),
      { code: 'TR001' },
    );
    assert.equal(await count(), before);
  });

  it('refuses malformed JSON with a data exception (22P02)', async () => {
    await assert.rejects(fx.db.pool.query(`select trellis.run_start('orders', '{bad')`), { code: '22P02' });
  });

  it('refuses an oversized input with TR005', async () => {
    await fx.db.pool.query(`select trellis.setting_set('max_payload_bytes', '1000')`);
    try {
      await assert.rejects(
        fx.db.pool.query('select trellis.run_start($1, $2)', ['orders', JSON.stringify({ blob: 'x'.repeat(5000) })]),
        { code: 'TR005' },
      );
    } finally {
      await fx.db.pool.query(`select trellis.setting_set('max_payload_bytes', '1048576')`);
    }
  });

  it('is rolled back with the caller transaction', async () => {
    const client = await fx.db.pool.connect();
    try {
      await client.query('begin');
      const id = (await client.query(`select trellis.run_start('orders', '{}') as id`)).rows[0].id;
      await client.query('rollback');
      assert.equal((await fx.db.pool.query('select 1 from trellis.runs where id = $1', [id])).rowCount, 0);
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
        fx.db.pool.query(`select trellis.run_start('orders', '{}', $1)`, [JSON.stringify(options)]),
        { code: 'TR001' },
        JSON.stringify(options),
      );
    }
    await assert.rejects(fx.db.pool.query(`select trellis.run_start('orders', '{}', '[]')`), { code: 'TR001' });
    assert.equal(await count(), before);
  });

  it('reads a JSON null for any option as the option not given (its default), as a SQL caller passing its unset values would', async () => {
    const options = { key: null, key_policy: null, queue: null, version: null, priority: null, run_at: null, metadata: null,
      concurrency_key: null, deadline: null, time_limit: null, input_checked: null, coalesce_notify: null };
    const { rows: [{ id }] } = await fx.db.pool.query(`select trellis.run_start('orders', '{}', $1) as id`, [JSON.stringify(options)]);
    const { rows: [run] } = await fx.db.pool.query(
      `select key, queue, priority, metadata, concurrency_key, deadline_at, run_at <= trellis.now() as due from trellis.runs where id = $1`, [id]);
    assert.deepEqual(run, { key: null, queue: 'default', priority: 0, metadata: {}, concurrency_key: null, deadline_at: null, due: true });
  });

  it('notifies trellis:run_ready with the queue of a run due now, but not of a run due later', async () => {
    const listener = new pg.Client({ connectionString: fx.db.url });
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
      await fx.db.pool.query(`select trellis.run_start('orders', '{}', '{"queue":"later-queue","run_at":"2999-01-01T00:00:00Z"}')`);
      await fx.db.pool.query(`select trellis.run_start('orders', '{}', '{"queue":"now-queue"}')`);
      await arrived;
      assert.deepEqual(payloads, ['now-queue']);
    } finally {
      await listener.end();
    }
  });
});
