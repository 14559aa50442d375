/**
 * Found by the fault suite's fuzzing (F11/F12): trellis.workflow_input_error
 * is granted to trellis_client but ran as the caller, and the caller may
 * not execute the name check it calls, so every call from a client login
 * failed with 42501 (permission denied for function _check_name) instead
 * of answering. It runs as its owner now, like the other client functions.
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
