/**
 * The SQL contract of input and signal checks (sql/050_shapes.sql,
 * 100_workflows.sql, 200_runs.sql, 400_signals.sql): a registration stores
 * its input shape and compiled predicate; run_start and run_start_claimed
 * refuse an input that does not match (TR001, nothing written) unless
 * input_checked is set; a child start is not checked; workflow_input_error
 * says why without starting; bad shapes are refused at registration. A
 * version that declares its signals takes only those, with matching
 * payloads; one that declares none takes any.
 */
import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import { z } from 'zod';
import { inputShape } from '../../src/workflow/input-shape.ts';
import { useFreshDatabase } from '../helpers/database-fixture.ts';

const fx = useFreshDatabase({ setUp: () => register([{ name: 'order', version: '1', queue: 'default', input_schema: inputShape(order) }]) });
const sql = async (text: string, values: unknown[] = []) => (await fx.db.pool.query(text, values)).rows;
const count = async () => Number((await sql('select count(*) as n from trellis.runs'))[0].n);
const register = (workflows: unknown) => sql('select trellis.workflow_register($1)', [JSON.stringify(workflows)]);
const start = (workflow: string, input: unknown, options: Record<string, unknown> = {}) =>
  sql('select trellis.run_start($1, $2::jsonb, $3::jsonb) as id', [workflow, JSON.stringify(input), JSON.stringify(options)]);

const order = z.object({ orderId: z.string().min(1), items: z.array(z.object({ sku: z.string(), qty: z.int().positive() })).min(1) });

describe('input checks in SQL', () => {
  it('stores the shape and its compiled predicate at registration', async () => {
    const [row] = await sql(`select input_schema, input_path::text as path from trellis.workflows where name = 'order'`);
    assert.deepEqual(row.input_schema, inputShape(order));
    assert.match(row.path, /^strict exists/);
  });

  it('run_start takes a matching input and refuses a mismatch with TR001, writing nothing', async () => {
    const before = await count();
    await start('order', { orderId: 'o-1', items: [{ sku: 'a', qty: 2 }] });
    assert.equal(await count(), before + 1);
    for (const [input, message] of [
      [{ orderId: 'o-1', items: [{ sku: 'a', qty: 0 }] }, '$.items[0].qty: 0 must be more than 0'],
      [{ orderId: 'o-1', items: [] }, '$.items: 0 items, under the minimum of 1'],
      [{ items: [{ sku: 'a', qty: 1 }] }, '$.orderId: required'],
      [null, '$: expected object, got null'],
      ['{"orderId": "o-1"}', '$: expected object, got string'],
    ] as const) {
      await assert.rejects(start('order', input), (error: { code?: string | undefined; message?: string | undefined }) => {
        assert.equal(error.code, 'TR001');
        assert.equal(error.message, `input of order version 1 does not match its schema: ${message}`);
        return true;
      });
    }
    assert.equal(await count(), before + 1, 'nothing written');
  });

  it('run_start_claimed refuses a mismatch the same way, leasing nothing', async () => {
    const before = await count();
    await assert.rejects(sql(`select * from trellis.run_start_claimed('order', '{"orderId": 1}', '{}', 'w-1', '30 seconds')`), { code: 'TR001' });
    assert.equal(await count(), before);
  });

  it('input_checked skips the check (the TypeScript client validated against the schema itself); it must be a boolean', async () => {
    const before = await count();
    await start('order', { orderId: 7 }, { input_checked: true });
    assert.equal(await count(), before + 1);
    await assert.rejects(start('order', { orderId: 7 }, { input_checked: false }), { code: 'TR001' });
    await assert.rejects(start('order', { orderId: 'o', items: [{ sku: 'a', qty: 1 }] }, { input_checked: 'yes' }),
      /input_checked must be true or false/);
    assert.equal(await count(), before + 1);
  });

  it('does not check a child start (its parent validated it, and its checkpoint must not fail)', async () => {
    const [{ id: parent }] = await start('order', { orderId: 'p', items: [{ sku: 'a', qty: 1 }] });
    const [{ id }] = await sql(`select trellis._run_start('order', '{"orderId": 1}', '{}', gen_random_uuid(), $1, 1, 'cancel', null, null, null) as id`, [parent]);
    assert.equal((await sql('select input from trellis.runs where id = $1', [id]))[0].input.orderId, 1);
  });

  it('workflow_input_error says why without starting, and raises TR002 for an unknown workflow or version', async () => {
    const before = await count();
    const error = async (input: unknown, version: string | null = null) =>
      (await sql('select trellis.workflow_input_error($1, $2::jsonb, $3) as e', ['order', JSON.stringify(input), version]))[0].e;
    assert.equal(await error({ orderId: 'o', items: [{ sku: 'a', qty: 1 }] }), null);
    assert.equal(await error({ orderId: 'o', items: [{ sku: 'a', qty: 1.5 }] }, '1'), '$.items[0].qty: expected an integer, got 1.5');
    await assert.rejects(sql(`select trellis.workflow_input_error('nope', '{}')`), { code: 'TR002' });
    await assert.rejects(sql(`select trellis.workflow_input_error('order', '{}', '9')`), { code: 'TR002' });
    await assert.rejects(sql(`select trellis.workflow_input_error('bad''name', '{}')`), { code: 'TR001' });
    assert.equal(await count(), before);
  });

  it('keeps the stored shape for an item without input_schema, and stores none for null', async () => {
    await register([{ name: 'kept', version: '1', input_schema: { type: 'object' } }]);
    await register([{ name: 'kept', version: '1' }]);
    await assert.rejects(start('kept', []), { code: 'TR001' });
    await register([{ name: 'kept', version: '1', input_schema: null }]);
    await start('kept', []);
    const [row] = await sql(`select input_schema, input_path from trellis.workflows where name = 'kept'`);
    assert.deepEqual([row.input_schema, row.input_path], [null, null]);
  });

  it('a version registered without a shape (an older Trellis, another schema library) takes any input', async () => {
    await register([{ name: 'plain', version: '1' }]);
    const before = await count();
    await start('plain', 'anything');
    assert.equal(await count(), before + 1);
  });

  it('refuses a bad shape at registration with TR001 and changes nothing', async () => {
    const rows = async () => (await sql(`select name, input_schema from trellis.workflows order by name, version`));
    const before = await rows();
    let deep: unknown = { type: 'number' };
    for (let i = 0; i < 70; i++) deep = { type: 'object', properties: { a: deep } };
    for (const shape of ['text', 12, [1], deep]) {
      await assert.rejects(register([{ name: 'order', version: '1', input_schema: shape }]), { code: 'TR001' });
    }
    await assert.rejects(register([{ name: 'order', version: '1', input_schema: { enum: ['x'.repeat(1_100_000)] } }]), { code: 'TR001' });
    assert.deepEqual(await rows(), before);
  });

  it('without a compiled predicate (one the compiler could not write), the walk alone decides, the same way', async () => {
    await register([{ name: 'walked', version: '1', input_schema: inputShape(order) }]);
    await sql(`update trellis.workflows set input_path = null where name = 'walked'`);
    const before = await count();
    await start('walked', { orderId: 'o', items: [{ sku: 'a', qty: 1 }] });
    await assert.rejects(start('walked', { orderId: 'o', items: [{ sku: 'a', qty: -1 }] }),
      /does not match its schema: \$\.items\[0\]\.qty: -1 must be more than 0/);
    assert.equal(await count(), before + 1);
  });
});

describe('signal checks in SQL', () => {
  const send = (run: string, name: string, payload: unknown, id: string | null = null) =>
    sql('select trellis.signal_send($1, $2, $3::jsonb, $4) as sent', [run, name, JSON.stringify(payload), id]);
  const signals = async (run: string) => Number((await sql('select count(*) as n from trellis.signals where run_id = $1', [run]))[0].n);
  const approved = z.object({ by: z.string().min(1) });

  before(async () => {
    await register([{ name: 'approval', version: '1', input_schema: true, signals: { approved: inputShape(approved), poke: true } }]);
  });

  it('takes a declared signal with a matching payload, and any payload for a signal declared without a schema', async () => {
    const [{ id }] = await start('approval', {});
    assert.equal((await send(id, 'approved', { by: 'ada' }))[0].sent, true);
    assert.equal((await send(id, 'poke', [1, 'anything']))[0].sent, true);
    assert.equal(await signals(id), 2);
  });

  it('refuses an undeclared signal and a payload that does not match with TR001, buffering nothing and leaving the run as it was', async () => {
    const [{ id }] = await start('approval', {});
    await sql(`update trellis.runs set status = 'waiting', run_at = 'infinity' where id = $1`, [id]);
    await assert.rejects(send(id, 'rejected', {}), (error: { code?: string | undefined; message?: string | undefined }) => {
      assert.equal(error.code, 'TR001');
      assert.equal(error.message, 'approval version 1 does not wait for signal rejected (it declares: approved, poke)');
      return true;
    });
    await assert.rejects(send(id, 'approved', { by: '' }, 'mail-1'), (error: { code?: string | undefined; message?: string | undefined }) => {
      assert.equal(error.code, 'TR001');
      assert.equal(error.message, 'payload of signal approved does not match its schema: $.by: length 0, under the minimum length 1');
      return true;
    });
    await assert.rejects(send(id, 'approved', null), { code: 'TR001' });
    assert.equal(await signals(id), 0);
    assert.equal((await sql('select status from trellis.runs where id = $1', [id]))[0].status, 'waiting');
    // The refused id was not recorded: a good payload with it is taken.
    assert.equal((await send(id, 'approved', { by: 'ada' }, 'mail-1'))[0].sent, true);
  });

  it('bounds what a run buffers: TR005 past 10,000 unconsumed signals or 16 x max_payload_bytes of payloads, buffering nothing more', async () => {
    // A claim hands a run all its unconsumed signals as one value: a flood
    // past what PostgreSQL can build (256 MB) failed every claim that picked
    // the run, and the other runs of those claims, for good.
    const [{ id }] = await start('approval', {});
    const kb = 'x'.repeat(1000);
    const [{ before }] = await sql(`select value as before from trellis.settings where key = 'max_payload_bytes'`);
    await sql(`select trellis.setting_set('max_payload_bytes', '1100')`);
    try {
      for (let i = 0; i < 17; i++) assert.equal((await send(id, 'poke', kb))[0].sent, true); // 17 x 1,002 bytes, of 17,600
      await assert.rejects(send(id, 'poke', kb), (error: { code?: string | undefined; message?: string | undefined }) => {
        assert.equal(error.code, 'TR005');
        assert.match(error.message ?? '', /already buffers 17 unconsumed signals of 17034 bytes; a run buffers at most 10000 signals and 17600 bytes/);
        return true;
      });
      assert.equal((await send(id, 'poke', 'small'))[0].sent, true, 'a payload that still fits is taken');
      assert.equal(await signals(id), 18);
      // Consumed signals do not count.
      await sql(`update trellis.signals set consumed_at = now(), consumed_seq = 0 where run_id = $1`, [id]);
      assert.equal((await send(id, 'poke', kb))[0].sent, true);
    } finally {
      await sql(`select trellis.setting_set('max_payload_bytes', $1)`, [JSON.stringify(before)]);
    }
    const [{ id: other }] = await start('approval', {});
    await sql(`insert into trellis.signals (bucket, run_id, name, payload, created_at)
               select r.bucket, r.id, 'poke', '1', now() from trellis.runs r, generate_series(1, 9999) where r.id = $1`, [other]);
    assert.equal((await send(other, 'poke', 1))[0].sent, true);
    await assert.rejects(send(other, 'poke', 1), { code: 'TR005' });
    assert.equal(await signals(other), 10000);
  });

  it('a version that declares no signals takes any signal, as before; null removes a declaration', async () => {
    await register([{ name: 'open', version: '1', signals: { ping: true } }]);
    const [{ id }] = await start('open', {});
    await assert.rejects(send(id, 'other', 1), { code: 'TR001' });
    await register([{ name: 'open', version: '1', signals: null }]);
    assert.equal((await send(id, 'other', 1))[0].sent, true);
    await register([{ name: 'open', version: '1' }]);
    assert.equal((await send(id, 'another', 1))[0].sent, true);
  });

  it('refuses bad signal declarations at registration with TR001 and changes nothing', async () => {
    const before = await sql(`select signal_schemas from trellis.workflows where name = 'approval'`);
    for (const bad of [[1], 'x', { "bad'name": true }, { ok: 1 }, { ok: 'text' }]) {
      await assert.rejects(register([{ name: 'approval', version: '1', signals: bad }]), { code: 'TR001' });
    }
    assert.deepEqual(await sql(`select signal_schemas from trellis.workflows where name = 'approval'`), before);
  });
});
