/**
 * Found by the fault suite's fuzzing (F11/F12): trellis.workflow_input_error
 * is granted to trellis_client but ran as the caller, and the caller may
 * not execute the name check it calls, so every call from a client login
 * failed with 42501 (permission denied for function _check_name) instead
 * of answering. It runs as its owner now, like the other client functions.
 *
 * The internal helpers a client login reached are typed too: the
 * input-shape helpers (_input_error, _shape_error) are no longer granted to
 * it (called directly they met PostgreSQL's own errors: a malformed
 * jsonpath argument, 42501 on the helpers they call), and _setting_int,
 * which the client calls itself, raises TR008 for a stored setting that is
 * not an integer (it raised 22P02, which read as bad input of whatever
 * start or checkpoint met it).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { freshDatabase, type TestDatabase, testPool } from '../helpers/db.ts';

let db: TestDatabase;
let asClient: pg.Pool;
const login = `tr_iecl_${crypto.randomUUID().replaceAll('-', '').slice(0, 10)}`;
before(async () => {
  db = await freshDatabase();
  await db.pool.query(`create role ${login} login password 'pw' in role trellis_client`);
  await db.pool.query(`select trellis.workflow_register('[{"name": "shaped", "version": "1", "input_schema": {"type": "object", "required": ["n"], "properties": {"n": {"type": "number"}}}}]')`);
  const url = new URL(db.url);
  url.username = login;
  url.password = 'pw';
  asClient = testPool({ connectionString: url.toString(), max: 1 });
});
after(async () => {
  await asClient?.end();
  await db?.close();
  const admin = new pg.Client({ connectionString: db.url.replace(/\/[^/]*$/, '/postgres') });
  await admin.connect();
  await admin.query(`drop role if exists ${login}`);
  await admin.end();
});

describe('workflow_input_error from a trellis_client login', () => {
  it('answers, and refuses a bad name or an unknown workflow with a typed error', async () => {
    const q = (sql: string, params: unknown[]) => asClient.query<{ e: string | null }>(sql, params);
    assert.equal((await q(`select trellis.workflow_input_error($1, $2) as e`, ['shaped', { n: 1 }])).rows[0]!.e, null);
    assert.match((await q(`select trellis.workflow_input_error($1, $2) as e`, ['shaped', { n: 'x' }])).rows[0]!.e ?? '', /\$\.n/);
    await assert.rejects(q(`select trellis.workflow_input_error($1, '{}')`, ['nope']), { code: 'TR002' });
    await assert.rejects(q(`select trellis.workflow_input_error($1, '{}')`, [`x'); drop table trellis.runs; --`]), { code: 'TR001' });
  });
});

describe('internal helpers a trellis_client login reaches', () => {
  it('may not execute the input-shape helpers; the owner-rights functions still check shapes for it', async () => {
    const { rows } = await db.pool.query<{ f: string; ok: boolean }>(
      `select f, has_function_privilege($1, f, 'execute') as ok
         from unnest(array['trellis._input_error(jsonb, jsonpath, jsonb)', 'trellis._shape_error(jsonb, jsonb)',
                           'trellis._setting_int(text, integer)', 'trellis.run_start(text, jsonb, jsonb)']) f`, [login]);
    assert.deepEqual(Object.fromEntries(rows.map((r) => [r.f, r.ok])), {
      'trellis._input_error(jsonb, jsonpath, jsonb)': false,
      'trellis._shape_error(jsonb, jsonb)': false,
      'trellis._setting_int(text, integer)': true,
      'trellis.run_start(text, jsonb, jsonb)': true,
    });
    await assert.rejects(asClient.query(`select trellis.run_start('shaped', '{"n": "x"}')`), { code: 'TR001', message: /\$\.n/ });
  });

  it('_setting_int raises TR008 for a stored setting that is not an integer, directly and through run_start, quoting a bounded prefix', async () => {
    const q = (sql: string) => asClient.query(sql);
    assert.equal((await q(`select trellis._setting_int('no_such_setting', 7) as v`)).rows[0].v, 7);
    assert.equal((await q(`select trellis._setting_int(null, 7) as v`)).rows[0].v, 7);
    const { rows: [saved] } = await db.pool.query(`select value from trellis.settings where key = 'max_payload_bytes'`);
    try {
      // Written around setting_set (which refuses it), as an operator's UPDATE could.
      await db.pool.query(`insert into trellis.settings (key, value) values ('max_payload_bytes', to_jsonb(repeat('x', 5000)))
                           on conflict (key) do update set value = excluded.value`);
      const refused = { code: 'TR008', message: (m: string) => /setting max_payload_bytes is not an integer/.test(m) && m.length < 300 };
      await assert.rejects(q(`select trellis._setting_int('max_payload_bytes', 7)`), (e: Error & { code?: string | undefined }) =>
        e.code === refused.code && refused.message(e.message));
      await assert.rejects(q(`select trellis.run_start('shaped', '{"n": 1}')`), (e: Error & { code?: string | undefined }) =>
        e.code === refused.code && refused.message(e.message));
      await db.pool.query(`update trellis.settings set value = '"2147483648"' where key = 'max_payload_bytes'`);
      await assert.rejects(q(`select trellis._setting_int('max_payload_bytes', 7)`), { code: 'TR008' });
      await db.pool.query(`update trellis.settings set value = '"4096"' where key = 'max_payload_bytes'`);
      assert.equal((await q(`select trellis._setting_int('max_payload_bytes', 7) as v`)).rows[0].v, 4096);
      await db.pool.query(`update trellis.settings set value = '-12' where key = 'max_payload_bytes'`);
      assert.equal((await q(`select trellis._setting_int('max_payload_bytes', 7) as v`)).rows[0].v, -12);
    } finally {
      if (saved) await db.pool.query(`update trellis.settings set value = $1 where key = 'max_payload_bytes'`, [saved.value]);
      else await db.pool.query(`delete from trellis.settings where key = 'max_payload_bytes'`);
    }
  });
});
