/**
 * The outbox (sql/700_events.sql): events_read's order and horizon (a
 * transaction that commits late is never skipped), filters, durable
 * consumers (advanced only by ack), bad input, the events setting, purges
 * of events with their runs and of consumed events.
 */
import assert from 'node:assert/strict';
import { beforeEach, describe, it } from 'node:test';
import { readdir, readFile } from 'node:fs/promises';
import pg from 'pg';
import { waitFor } from '../helpers/wait.ts';
import { useFreshDatabase } from '../helpers/database-fixture.ts';

const fx = useFreshDatabase({
  virtualClock: true,
  setUp: () => sql(`select trellis.workflow_register('[{"name":"w","version":"1","queue":"default"},{"name":"v","version":"1","queue":"default"}]')`),
});
const sql = async (text: string, values: unknown[] = []) => (await fx.db.pool.query(text, values)).rows;
const start = async (workflow = 'w') =>
  (await sql(`select trellis.run_start($1, '{}', '{"queue":"nobody"}') as id`, [workflow]))[0].id as string;
const read = (after: string | null, limit = 100, filter: unknown = {}) =>
  sql('select * from trellis.events_read($1, $2, $3)', [after, limit, JSON.stringify(filter)]);
/**
 * Await `n` rows of `query`: events become readable once every older
 * transaction on the server has ended, and other test files run
 * transactions of their own on the same server.
 */
const atLeast = <T>(n: number, query: () => Promise<T[]>) =>
  waitFor(async () => {
    const rows = await query();
    return rows.length >= n ? rows : undefined;
  }, { what: `${n} events` });

beforeEach(async () => {
  await sql('truncate trellis.events, trellis.event_consumers, trellis.signals, trellis.steps, trellis.runs');
  await sql(`select trellis.setting_set('events', 'true')`);
});

describe('events_read', () => {
  it('returns the events in commit-safe order with a cursor that resumes after each', async () => {
    const a = await start();
    const b = await start('v');
    const all = await atLeast(2, () => read(null));
    assert.deepEqual(all.map((e) => [e.run_id, e.kind, e.workflow]), [[a, 'started', 'w'], [b, 'started', 'v']]);
    assert.match(all[0].cursor, /^\d+:\d+$/);
    assert.deepEqual((await read(all[0].cursor)).map((e) => e.run_id), [b]);
    assert.deepEqual(await read(all[1].cursor), []);
    assert.deepEqual((await read(null, 1)).map((e) => e.run_id), [a]);
    assert.deepEqual((await read(null, 100, { workflows: ['v'] })).map((e) => e.run_id), [b]);
    assert.deepEqual((await read(null, 100, { kinds: ['completed'] })), []);
    assert.deepEqual((await read(null, 100, { run_id: a })).map((e) => e.run_id), [a]);
  });

  it('never skips an event that a concurrent transaction commits after a newer one was read', async () => {
    const late = new pg.Client({ connectionString: fx.db.url });
    await late.connect();
    try {
      // The late transaction takes its transaction id first and writes its event...
      await late.query('begin');
      await late.query(`select trellis.run_start('w', '{}', '{"queue":"nobody"}')`);
      // ...then a newer transaction writes and commits an event of its own.
      const early = await start();
      // While the late one is open, neither event is handed out: the newer
      // one is above the horizon (the oldest running transaction).
      assert.deepEqual(await read(null), []);
      await late.query('commit');
      const events = await atLeast(2, () => read(null));
      assert.equal(events.length, 2, 'both events, once the late one committed');
      assert.equal(events[1].run_id, early, 'ordered by transaction id: the late transaction began first');
      // A reader that kept its cursor before the commit gets both too.
      assert.deepEqual((await read(events[0].cursor)).map((e) => e.run_id), [early]);
    } finally {
      await late.end();
    }
  });

  it('a cursor taken while a transaction is open still yields that transaction\'s event after it commits', async () => {
    const first = await start();
    const [seen] = await atLeast(1, () => read(null));
    assert.equal(seen.run_id, first);
    const late = new pg.Client({ connectionString: fx.db.url });
    await late.connect();
    try {
      await late.query('begin');
      const { rows: [{ id: lateRun }] } = await late.query(`select trellis.run_start('w', '{}', '{"queue":"nobody"}') as id`);
      const after = await start();
      const whileOpen = await read(seen.cursor);
      assert.deepEqual(whileOpen, [], 'nothing past the open transaction');
      await late.query('commit');
      assert.deepEqual((await atLeast(2, () => read(seen.cursor))).map((e) => e.run_id), [lateRun, after]);
    } finally {
      await late.end();
    }
  });

  it('refuses a malformed cursor, a cursor from the future, a limit out of range and a bad filter with TR001', async () => {
    await assert.rejects(read('12'), { code: 'TR001', message: /not <xid>:<id>/ });
    await assert.rejects(read(`${'9'.repeat(18)}:1`), { code: 'TR001', message: /from the future/ });
    await assert.rejects(read(null, 0), { code: 'TR001', message: /limit/ });
    await assert.rejects(read(null, 10001), { code: 'TR001', message: /limit/ });
    await assert.rejects(read(null, 10, { workflow: 'w' }), { code: 'TR001', message: /unknown event filter/ });
    await assert.rejects(read(null, 10, { kinds: 'completed' }), { code: 'TR001' });
    await assert.rejects(read(null, 10, { kinds: ['completed', 'bogus'] }), { code: 'TR001', message: /no event is of kind 'bogus'/ });
    await assert.rejects(read(null, 10, { workflows: ["it's'; drop table trellis.events; --"] }), { code: 'TR001', message: /invalid workflow name/ });
    await assert.rejects(read(null, 10, { workflows: ['w', 'x'.repeat(5000)] }), { code: 'TR001' });
    await assert.rejects(read(null, 10, { run_id: 'x'.repeat(500) }), (e: Error) => e.message.length < 200);
  });

  it('writes nothing while the events setting is off', async () => {
    await sql(`select trellis.setting_set('events', 'false')`);
    await start();
    assert.deepEqual(await sql('select * from trellis.events'), []);
    await assert.rejects(sql(`select trellis.setting_set('events', '1')`), { code: 'TR001' });
  });
});

describe('the transaction id of an event', () => {
  /** Run `body` in one transaction of its own; returns that transaction's id. */
  async function inTransaction(body: (c: pg.PoolClient) => Promise<unknown>): Promise<string> {
    const c = await fx.db.pool.connect();
    try {
      await c.query('begin');
      const { rows: [{ xid }] } = await c.query('select pg_current_xact_id()::text as xid');
      await body(c);
      await c.query('commit');
      return xid as string;
    } finally {
      c.release();
    }
  }

  it('is the id of the transaction that wrote it, for every writer: a start, a step, a move and a purge, over many buckets', async () => {
    // Keyed runs land in different buckets (on Citus, shards on different worker
    // nodes): the writers' statements are pushed down there, where the column's
    // default would read a worker node's transaction id, not this transaction's.
    const keys = Array.from({ length: 8 }, (_, i) => `xid-${i}`);
    const xidsOf = async () => Object.fromEntries((await sql(
      `select kind, array_agg(distinct xid::text) as xids, count(*)::int as n from trellis.events group by kind`))
      .map((r) => [r.kind, { xids: r.xids, n: r.n }]));
    const started = await inTransaction(async (c) => {
      for (const key of keys) await c.query(`select trellis.run_start('w', '{}', $1)`, [JSON.stringify({ key, queue: 'nobody' })]);
    });
    const held = await sql(`select id, lease_token, execution from trellis.run_claim('xid', '{nobody}', '{w}', '{1}', 10, '30 seconds')`);
    assert.equal(held.length, keys.length);
    const checkpointed = await inTransaction((c) => c.query('select * from trellis.checkpoint_apply($1)', [JSON.stringify(held.flatMap((r) => [
      { op: 'step', run: r.id, token: r.lease_token, execution: r.execution, seq: 1, name: 's', kind: 'step', status: 'completed', output: '1', attempts: 1, ms: 1 },
      { op: 'complete', run: r.id, token: r.lease_token, execution: r.execution, output: '1' },
    ]))]));
    assert.deepEqual(await xidsOf(), {
      started: { xids: [started], n: keys.length },
      step_completed: { xids: [checkpointed], n: keys.length },
      completed: { xids: [checkpointed], n: keys.length },
    });
    await sql(`select trellis.clock_advance('2 hours')`);
    const purged = await inTransaction((c) => c.query(`select trellis.run_purge('1 hour')`));
    assert.deepEqual(await xidsOf(), { purged: { xids: [purged], n: keys.length } });
  });

  it('is written by every insert into trellis.events in sql/, never left to the column\'s default', async () => {
    const dir = new URL('../../sql/', import.meta.url);
    const inserts: string[] = [];
    for (const file of (await readdir(dir)).filter((f) => f.endsWith('.sql'))) {
      const text = await readFile(new URL(file, dir), 'utf8');
      for (const m of text.matchAll(/insert\s+into\s+trellis\.events\s*\(([^)]*)\)/gi)) inserts.push(`${file}: ${m[1]!.replace(/\s+/g, ' ')}`);
    }
    assert.ok(inserts.length >= 5, `the writers found: ${inserts.join('; ')}`);
    assert.deepEqual(inserts.filter((i) => !/\bxid\b/.test(i.split(': ')[1]!)), []);
  });
});

describe('step events and event payloads', () => {
  it('carry a step\'s output or error only for versions that declare event_payloads, in one checkpoint of both', async () => {
    await sql(`select trellis.workflow_register('[{"name":"paid","version":"1","queue":"default","event_payloads":true},
      {"name":"hooked","version":"1","queue":"default","hooks":["onComplete"]}]')`);
    const ids = { w: await start('w'), paid: await start('paid'), hooked: await start('hooked') };
    const held = await sql(`select id, lease_token from trellis.run_claim('ev', '{nobody}', '{w,paid,hooked}', '{1,1,1}', 10, '30 seconds')`);
    assert.equal(held.length, 3);
    await sql('select * from trellis.checkpoint_apply($1)', [JSON.stringify(held.flatMap((r) => [
      { op: 'step', run: r.id, token: r.lease_token, seq: 0, name: 'ok', kind: 'step', status: 'completed', output: { v: 1 } },
      { op: 'step', run: r.id, token: r.lease_token, seq: 1, name: 'bad', kind: 'step', status: 'failed', error: { message: 'no' } },
    ]))]);
    const events = await atLeast(6, () => read(null, 100, { kinds: ['step_completed', 'step_failed'] }));
    const body = (run: string, kind: string) => events.find((e) => e.run_id === run && e.kind === kind)?.body;
    assert.deepEqual(body(ids.paid, 'step_completed'), { seq: 0, name: 'ok', attempts: 1, execution: 1, output: { v: 1 } });
    assert.deepEqual(body(ids.paid, 'step_failed'), { seq: 1, name: 'bad', attempts: 1, execution: 1, error: { message: 'no' } });
    for (const run of [ids.w, ids.hooked]) {
      assert.deepEqual(body(run, 'step_completed'), { seq: 0, name: 'ok', attempts: 1, execution: 1 });
      assert.deepEqual(body(run, 'step_failed'), { seq: 1, name: 'bad', attempts: 1, execution: 1 });
    }
  });
});

describe('durable consumers', () => {
  it('read from their stored position, which only an ack moves', async () => {
    const a = await start();
    await sql(`select trellis.event_consumer_create('mailer')`);
    const b = await start();
    const first = await atLeast(1, () => sql(`select * from trellis.event_consumer_read('mailer', 1)`));
    assert.deepEqual(first.map((e) => e.run_id), [a]);
    assert.deepEqual((await sql(`select * from trellis.event_consumer_read('mailer', 1)`)).map((e) => e.run_id), [a], 'no ack, no progress');
    await sql(`select trellis.event_consumer_ack('mailer', $1)`, [first[0].cursor]);
    assert.deepEqual((await atLeast(1, () => sql(`select * from trellis.event_consumer_read('mailer')`))).map((e) => e.run_id), [b]);
    // An ack never moves the position back.
    const [{ pos }] = await sql(`select trellis.event_consumer_ack('mailer', '0:0') as pos`);
    assert.equal(pos, first[0].cursor);
    // 'now' starts after everything final (a and b are: both were read).
    await sql(`select trellis.event_consumer_create('late', 'now')`);
    assert.deepEqual(await sql(`select * from trellis.event_consumer_read('late')`), []);
    const c = await start();
    assert.deepEqual((await atLeast(1, () => sql(`select * from trellis.event_consumer_read('late')`))).map((e) => e.run_id), [c]);
  });

  it('refuses an unknown consumer with TR002 and a future ack with TR001', async () => {
    await assert.rejects(sql(`select * from trellis.event_consumer_read('nobody')`), { code: 'TR002', message: /nobody/ });
    await assert.rejects(sql(`select trellis.event_consumer_ack('nobody', '1:1')`), { code: 'TR002' });
    await sql(`select trellis.event_consumer_create('c')`);
    await assert.rejects(sql(`select trellis.event_consumer_ack('c', $1)`, [`${'9'.repeat(18)}:1`]), { code: 'TR001', message: /future/ });
    // A transaction still open is past what any read can have returned.
    const open = new pg.Client({ connectionString: fx.db.url });
    await open.connect();
    try {
      await open.query('begin');
      const { rows: [{ x }] } = await open.query('select pg_current_xact_id()::text as x');
      await assert.rejects(sql(`select trellis.event_consumer_ack('c', $1)`, [`${x}:1`]), { code: 'TR001', message: /future|past what a read/ });
      await open.query('rollback');
    } finally {
      await open.end();
    }
    await assert.rejects(sql(`select trellis.event_consumer_create($1)`, ["bad'name"]), { code: 'TR001' });
  });
});

describe('retention of events', () => {
  it('a purged run takes its events with it and leaves one purged event', async () => {
    const id = await start();
    await sql(`select trellis.run_cancel($1)`, [id]);
    await sql(`select trellis.clock_advance('2 hours')`);
    assert.equal((await sql(`select trellis.run_purge('1 hour') as n`))[0].n, 1);
    assert.deepEqual((await atLeast(1, () => read(null))).map((e) => e.kind), ['purged']);
  });

  it('purges consumed events past the retention in batches, never one a consumer still needs', async () => {
    for (let i = 0; i < 5; i++) await start();
    await sql(`select trellis.event_consumer_create('slow')`);
    const events = await atLeast(5, () => read(null));
    await sql(`select trellis.event_consumer_ack('slow', $1)`, [events[2].cursor]);
    await sql(`select trellis.clock_advance('2 days')`);
    assert.equal((await sql(`select trellis.events_purge('1 day', 2) as n`))[0].n, 2, 'a batch of 2');
    assert.equal((await sql(`select trellis.events_purge('1 day', 100) as n`))[0].n, 1, 'up to the consumer');
    assert.deepEqual((await read(null)).map((e) => e.cursor), events.slice(3).map((e) => e.cursor));
    await sql(`select trellis.event_consumer_drop('slow')`);
    await sql(`select trellis.retention_set('1 day')`);
    await sql(`select trellis.run_purge_due(1000)`);
    // (The cutoff read first: on Citus the test kit's clock, a read of a reference table, cannot run inside a shard's query.)
    const [{ cutoff }] = await sql(`select trellis.now() - interval '1 day' as cutoff`);
    assert.deepEqual(await sql(`select * from trellis.events where kind <> 'purged' and created_at < $1`, [cutoff]), []);
    await sql(`select trellis.retention_set(null)`);
  });

  it('events_purge_due: a batch of events past the retention (the default, else the longest per-workflow one); null with none set; bad limits refused', async () => {
    for (let i = 0; i < 5; i++) await start();
    await atLeast(5, () => read(null));
    await sql(`select trellis.clock_advance('3 hours')`);
    assert.equal((await sql(`select trellis.events_purge_due(2) as n`))[0].n, null, 'no retention set: nothing purged');
    assert.equal((await read(null)).length, 5);
    await sql(`select trellis.retention_set('4 hours', 'w')`);
    assert.equal((await sql(`select trellis.events_purge_due(2) as n`))[0].n, 0, 'younger than the longest workflow retention');
    await sql(`select trellis.retention_set('1 hour')`);
    assert.equal((await sql(`select trellis.events_purge_due(2) as n`))[0].n, 2, 'a batch of 2, past the default');
    assert.equal((await sql(`select trellis.events_purge_due(2) as n`))[0].n, 2);
    assert.equal((await sql(`select trellis.events_purge_due(2) as n`))[0].n, 1, 'a short batch: the last');
    assert.deepEqual(await read(null), []);
    for (const bad of ['0', '-1', '100001', 'null']) {
      await assert.rejects(sql(`select trellis.events_purge_due(${bad})`), { code: 'TR001' }, bad);
    }
    await sql(`select trellis.retention_set(null)`);
    await sql(`select trellis.retention_set(null, 'w')`);
  });
});

