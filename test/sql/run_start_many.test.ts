/**
 * trellis.run_start_many: many starts of one workflow in one call, each as
 * run_start would make it, all or nothing, an error naming its item.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import pg from 'pg';
import { useFreshDatabase } from '../helpers/database-fixture.ts';
import { waitFor } from '../helpers/wait.ts';

const fx = useFreshDatabase({
  setUp: (db) => db.pool.query(`select trellis.workflow_register($1)`, [JSON.stringify([{ name: 'w', version: '1', queue: 'default',
    input_schema: { type: 'object', required: ['n'], properties: { n: { type: 'number' } } } }])]),
});
const sql = async (text: string, values: unknown[] = []) => (await fx.db.pool.query(text, values)).rows;
const many = (runs: unknown) => sql('select ordinality, id from trellis.run_start_many($1, $2) order by ordinality', ['w', JSON.stringify(runs)]);
const count = async () => (await sql('select count(*)::int as n from trellis.runs'))[0].n as number;

describe('run_start_many', () => {
  it('starts each item as run_start would, in order, with its own options; a repeated key gives the existing run', async () => {
    const [existing] = await sql(`select trellis.run_start('w', '{"n": 0}', '{"key": "k-0"}') as id`);
    const rows = await many([
      { input: { n: 1 }, options: { queue: 'many-a', priority: 5 } },
      { input: { n: 2 }, options: { key: 'k-0' } },
      { input: { n: 3 }, options: { time_limit: '1 hour', metadata: { batch: 7 } } },
      { input: { n: 4 } },
    ]);
    assert.deepEqual(rows.map((r) => r.ordinality), [1, 2, 3, 4]);
    assert.equal(rows[1].id, existing.id);
    const runs = await sql(`select id, queue, priority, input, metadata, deadline_at is not null as deadline, status from trellis.runs
                             where id = any ($1) order by input->>'n'`, [rows.map((r) => r.id)]);
    assert.deepEqual(runs.map((r) => [r.input.n, r.queue, r.priority, r.metadata, r.deadline, r.status]), [
      [0, 'default', 0, {}, false, 'pending'],
      [1, 'many-a', 5, {}, false, 'pending'],
      [3, 'default', 0, { batch: 7 }, true, 'pending'],
      [4, 'default', 0, {}, false, 'pending'],
    ]);
  });

  it('commits with the caller\'s transaction, and one NOTIFY per queue reaches a listener', async () => {
    const listener = new pg.Client({ connectionString: fx.db.url });
    await listener.connect();
    const c = await fx.db.pool.connect();
    try {
      const heard: string[] = [];
      listener.on('notification', (n) => heard.push(n.payload ?? ''));
      await listener.query(`listen "trellis:run_ready"`);
      const before = await count();
      await c.query('begin');
      await c.query('select * from trellis.run_start_many($1, $2)', ['w', JSON.stringify([1, 2, 3].map((n) => ({ input: { n }, options: { queue: 'many-tx' } })))]);
      await c.query('rollback');
      assert.equal(await count(), before, 'rolled back with the caller');
      await c.query('begin');
      await c.query('select * from trellis.run_start_many($1, $2)', ['w', JSON.stringify([1, 2, 3].map((n) => ({ input: { n }, options: { queue: 'many-tx' } })))]);
      await c.query('commit');
      assert.equal(await count(), before + 3);
      await sql(`select pg_notify('trellis:run_ready', 'marker')`);
      await waitFor(() => heard.includes('marker'), { what: 'the marker notification' });
      assert.deepEqual(heard, ['many-tx', 'marker'], 'the three starts of one queue notify once');
    } finally {
      c.release();
      await listener.end();
    }
  });

  it('refuses bad input with its SQLSTATE and the item it came from, and starts nothing', async () => {
    const before = await count();
    const cases: [unknown, string, RegExp][] = [
      [{ input: { n: 1 } }, 'TR001', /expects a JSON array/],
      [[{ input: { n: 1 } }, { input: { n: 'two' } }], 'TR001', /^run 2: input of w version 1 does not match its schema/],
      [[{ input: { n: 1 } }, { input: { n: 2 }, options: { priority: 1.5 } }], 'TR001', /^run 2: priority must be an integer/],
      [[{ input: { n: 1 }, options: { bogus: true } }], 'TR001', /^run 1: unknown run_start option/],
      [[{ input: { n: 1 }, extra: 1 }], 'TR001', /^run 1: each run is an object of input and options/],
      [['just a string'], 'TR001', /^run 1: each run is an object/],
      [Array.from({ length: 1001 }, (_, n) => ({ input: { n } })), 'TR001', /at most 1000 runs/],
    ];
    for (const [runs, code, message] of cases) {
      await assert.rejects(many(runs), (e: { code?: string | undefined; message: string }) => {
        assert.equal(e.code, code, e.message);
        assert.match(e.message, message);
        return true;
      });
    }
    await assert.rejects(sql(`select * from trellis.run_start_many(null, '[{"input": {}}]')`), (e: { code?: string | undefined; message: string }) =>
      e.code === 'TR001' && /^invalid workflow name/.test(e.message), 'a call-level error names no item');
    await assert.rejects(sql(`select * from trellis.run_start_many('nope', '[{"input": {}}]')`), (e: { code?: string | undefined; message: string }) =>
      e.code === 'TR002' && /^unknown workflow 'nope'/.test(e.message));
    assert.equal(await count(), before);
    assert.deepEqual(await many([]), []);
  });
});
