/**
 * The privilege matrix of sql/950_grants.sql, each cell tried with a login
 * role that is a member of one Trellis role: trellis_client starts, signals,
 * cancels and reads runs (the TS client end to end) but cannot read a lease
 * token, checkpoint, complete or fail a run, or change trellis.runs;
 * trellis_worker executes runs (the TS worker end to end) but cannot touch
 * the clock or the settings; trellis_reader only reads; a role with no
 * Trellis role can execute nothing (EXECUTE is revoked from PUBLIC).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { z } from 'zod';
import { createClient } from '../../src/client/client.ts';
import { RUN_COLUMNS } from '../../src/db/tables.ts';
import { ConfigurationError, DatabaseError } from '../../src/errors.ts';
import { createWorker } from '../../src/worker/worker.ts';
import { defineWorkflow } from '../../src/workflow/define.ts';
import { silentLogger } from '../../src/protocol/logger.ts';
import { createDatabase, freshDatabase, type TestDatabase, testPool } from '../helpers/db.ts';
import { migrate } from '../../src/schema/install.ts';
import { tableConnector } from '../../src/connectors/table-connector.ts';
import { waitFor } from '../helpers/wait.ts';

let db: TestDatabase;
const suffix = crypto.randomUUID().replaceAll('-', '').slice(0, 10);
const logins = { client: `tr_client_${suffix}`, worker: `tr_worker_${suffix}`, reader: `tr_reader_${suffix}`, nobody: `tr_nobody_${suffix}` };
const pools: pg.Pool[] = [];

function poolAs(role: keyof typeof logins): pg.Pool {
  const url = new URL(db.url);
  url.username = logins[role];
  url.password = 'pw';
  const pool = testPool({ connectionString: url.toString(), max: 4 });
  pool.on('error', () => undefined);
  pools.push(pool);
  return pool;
}

before(async () => {
  db = await freshDatabase();
  for (const [role, login] of Object.entries(logins)) {
    const member = role === 'nobody' ? '' : ` in role trellis_${role}`;
    await db.pool.query(`create role ${login} login password 'pw'${member}`);
  }
});
after(async () => {
  for (const pool of pools) await pool.end();
  await db.close();
  const admin = new pg.Client({ connectionString: db.url.replace(/\/[^/]*$/, '/postgres') });
  await admin.connect();
  for (const login of Object.values(logins)) await admin.query(`drop role if exists ${login}`);
  await admin.end();
});

const order = defineWorkflow({ name: 'privileged-order', input: z.object({ n: z.number() }) }, async (ctx, { n }) =>
  ctx.step('charge', () => n * 2));

async function denied(pool: pg.Pool, text: string, values: unknown[] = []): Promise<void> {
  const error = await pool.query(text, values).then(() => undefined, (e: { code?: string | undefined }) => e);
  assert.ok(error, `allowed: ${text}`);
  assert.equal(error.code, '42501', `${text}: ${String(error)}`);
}

describe('privileges (sql/950_grants.sql)', () => {
  it('RUN_COLUMNS is every column of trellis.runs but lease_token', async () => {
    const { rows } = await db.pool.query(`select attname from pg_attribute where attrelid = 'trellis.runs'::regclass
                                            and attnum > 0 and not attisdropped order by attname`);
    assert.deepEqual(rows.map((r) => r.attname).filter((c) => c !== 'lease_token'), [...RUN_COLUMNS].sort());
  });

  it('trellis_client and trellis_worker run a workflow end to end through the TS client and worker', async () => {
    const client = createClient({ pool: poolAs('client'), logger: silentLogger, handoff: false });
    const worker = createWorker({ pool: poolAs('worker'), workflows: [order], logger: silentLogger });
    try {
      await worker.start();
      const run = await client.start(order, { n: 21 }, { key: 'o-1' });
      assert.equal(await run.result({ timeout: '20s' }), 42);
      const read = await client.get(run.id);
      assert.equal(read?.status, 'completed');
      assert.equal((await client.list({ workflow: 'privileged-order' })).runs.length, 1);
      assert.equal((await client.history(run.id)).length, 1);
      const waiting = await client.start(order, { n: 1 }, { runAt: new Date(Date.now() + 3_600_000) });
      await client.cancel(waiting.id);
    } finally {
      await worker.stop();
      await client.close();
    }
  });

  it('migrate() from a worker or client login at boot: nothing to do is no error; something to install is a ConfigurationError naming the owner', async () => {
    // The README's "safe from every replica at boot": a replica's pool is often its own login, not the owner.
    for (const role of ['worker', 'client'] as const) {
      const result = await migrate(poolAs(role));
      assert.deepEqual([result.applied, result.functionsApplied], [[], false], role);
    }
    // A schema behind this code's functions (a revision to install): the owner's job.
    await db.pool.query(`update trellis.schema_info set sql_hash = 'older'`);
    try {
      await assert.rejects(migrate(poolAs('worker')), (e) => e instanceof ConfigurationError && /Run it as the schema's owner/.test(e.message));
    } finally {
      await migrate(db.pool);
    }
  });

  it('a worker on a role that cannot checkpoint (trellis_client, none) is refused at start with ConfigurationError, registering nothing', async () => {
    for (const role of ['client', 'reader'] as const) {
      const other = defineWorkflow({ name: `unserved-${role}`, input: z.object({}) }, async () => 1);
      const worker = createWorker({ pool: poolAs(role), workflows: [other], logger: silentLogger });
      await assert.rejects(worker.start(), (e) => e instanceof ConfigurationError && /grant it trellis_worker/.test(e.message), role);
      assert.equal((await db.pool.query('select count(*)::int as n from trellis.workflows where name = $1', [other.name])).rows[0].n, 0, role);
    }
  });

  it('trellis_client cannot read a lease token, checkpoint, complete or fail a run, claim, or change runs directly', async () => {
    const pool = poolAs('client');
    const [{ id }] = (await db.pool.query(`select trellis.run_start('privileged-order', '{"n":1}', '{"queue":"q-priv"}') as id`)).rows;
    const [held] = (await db.pool.query(
      `select id, lease_token from trellis.run_claim('w', array['q-priv'], '{privileged-order}', '{1}', 1, '1 hour')`)).rows;
    assert.equal(held.id, id);
    await denied(pool, 'select lease_token from trellis.runs');
    await denied(pool, 'select * from trellis.runs');
    await denied(pool, `update trellis.runs set status = 'completed' where id = $1`, [id]);
    await denied(pool, 'delete from trellis.steps');
    await denied(pool, `insert into trellis.runs (workflow, version, queue, status, input) values ('privileged-order', '1', 'q', 'pending', '{}')`);
    await denied(pool, 'select trellis.checkpoint_apply($1)', [JSON.stringify([{ op: 'complete', run: id, token: held.lease_token, output: 'forged' }])]);
    await denied(pool, `select trellis.run_complete($1, $2, '"forged"')`, [id, held.lease_token]);
    await denied(pool, `select trellis.run_fail($1, $2, '{}')`, [id, held.lease_token]);
    await denied(pool, `select trellis.step_record($1, $2, 0, 'charge', 'completed')`, [id, held.lease_token]);
    await denied(pool, `select * from trellis.run_claim('x', array['q-priv'], '{privileged-order}', '{1}', 1, '1 hour')`);
    await denied(pool, `select * from trellis.run_heartbeat_many(array[$1::uuid], array[$2::uuid], '1 hour')`, [id, held.lease_token]);
    await denied(pool, 'select trellis.clock_use_virtual()');
    await denied(pool, `select trellis.setting_set('max_payload_bytes', '1')`);
    const { rows } = await db.pool.query('select status, output from trellis.runs where id = $1', [id]);
    assert.deepEqual(rows[0], { status: 'running', output: null }, 'the run is untouched');
  });

  it('trellis_worker cannot switch the clock or change settings', async () => {
    const pool = poolAs('worker');
    await denied(pool, 'select trellis.clock_use_virtual()');
    await denied(pool, `select trellis.clock_advance('1 hour')`);
    await denied(pool, `select trellis.setting_set('max_payload_bytes', '1')`);
    // Nor around setting_set, with plain DML on the tables behind it.
    await denied(pool, `update trellis.settings set value = '2147483647' where key = 'max_payload_bytes'`);
    await denied(pool, `insert into trellis.settings (key, value) values ('max_lease_expiries', '0')`);
    await denied(pool, `delete from trellis.settings`);
    await denied(pool, `delete from trellis.run_transitions`);
    await denied(pool, `insert into trellis.run_transitions (from_status, to_status, event, via) values ('completed', 'pending', 'revived', 'me')`);
    assert.equal((await pool.query(`select count(*)::int as n from trellis.settings`)).rows[0].n > 0, true, 'it still reads them');
  });

  it('trellis_reader reads runs (not their lease tokens) and steps, and can change nothing', async () => {
    const pool = poolAs('reader');
    const { rows } = await pool.query(`select ${RUN_COLUMNS.join(', ')} from trellis.runs`);
    assert.ok(rows.length >= 1);
    await pool.query('select * from trellis.steps');
    await denied(pool, 'select lease_token from trellis.runs');
    await denied(pool, `select trellis.run_start('privileged-order', '{"n":1}', '{}')`);
    await denied(pool, `select trellis.signal_send(gen_random_uuid(), 'x', '{}')`);
    await denied(pool, `update trellis.runs set priority = 1`);
  });

  it('trellis_client and trellis_reader can watch for run_finished; a role with neither cannot', async () => {
    for (const role of ['client', 'reader'] as const) {
      const c = await poolAs(role).connect();
      try {
        await c.query('select trellis.run_finished_watch()');
        const held = await c.query(`select count(*)::int as n from pg_locks where locktype = 'advisory' and pid = pg_backend_pid()
                                      and classid = 1414679634 and granted`);
        assert.equal(held.rows[0].n, 8, role);
        assert.equal((await c.query('select trellis.run_finished_unwatch() as held')).rows[0].held, true, role);
      } finally {
        c.release();
      }
    }
    await denied(poolAs('nobody'), 'select trellis.run_finished_watch()');
  });

  it('trellis_client and trellis_reader read a run\'s values (run_value, run_values) and requests (run_request); a role with neither cannot', async () => {
    const id = (await db.pool.query(`select id from trellis.runs limit 1`)).rows[0].id as string;
    for (const role of ['client', 'reader'] as const) {
      const pool = poolAs(role);
      const { rows } = await pool.query(`select status, value, set_at from trellis.run_value($1, 'k')`, [id]);
      assert.equal(rows.length, 1, role);
      assert.equal(rows[0].set_at, null, role);
      assert.deepEqual((await pool.query('select * from trellis.run_values($1)', [id])).rows, [], role);
      const { rows: request } = await pool.query(`select received, read, reply, lost from trellis.run_request($1, 'r-1')`, [id]);
      assert.deepEqual(request, [{ received: false, read: false, reply: null, lost: false }], role);
      await assert.rejects(pool.query(`select * from trellis.run_request($1, '')`, [id]), (e: { code?: string | undefined }) => e.code === 'TR001', role);
    }
    await denied(poolAs('nobody'), `select * from trellis.run_request($1, 'r-1')`, [id]);
    await denied(poolAs('nobody'), `select * from trellis.run_value($1, 'k')`, [id]);
    await denied(poolAs('nobody'), 'select * from trellis.run_values($1)', [id]);
  });

  it('trellis_client changes a run\'s metadata (run_set_metadata); trellis_reader and a role with neither cannot', async () => {
    const id = (await db.pool.query(`select id from trellis.runs where scrubbed_at is null limit 1`)).rows[0].id as string;
    const { rows } = await poolAs('client').query(`select trellis.run_set_metadata($1, '{"marked":"by a client"}') as m`, [id]);
    assert.equal(rows[0].m.marked, 'by a client');
    await denied(poolAs('reader'), `select trellis.run_set_metadata($1, '{"a":1}')`, [id]);
    await denied(poolAs('nobody'), `select trellis.run_set_metadata($1, '{"a":1}')`, [id]);
    assert.equal((await db.pool.query('select metadata->>\'a\' as a from trellis.runs where id = $1', [id])).rows[0].a, null);
  });

  it('trellis_client signals with start (signal_with_start); trellis_reader and a role with neither cannot', async () => {
    const call = `select * from trellis.signal_with_start('privileged-order', '{"n":1}', '{"key":"priv-sws","run_at":"2999-01-01T00:00:00Z"}', 'poke', '1')`;
    const [row] = (await poolAs('client').query(call)).rows;
    assert.equal(row.started, true);
    assert.equal((await poolAs('client').query(call)).rows[0].run_id, row.run_id);
    await denied(poolAs('reader'), call);
    await denied(poolAs('nobody'), call);
    const { rows } = await db.pool.query(`select count(*)::int as n from trellis.signals where run_id = $1`, [row.run_id]);
    assert.equal(rows[0].n, 2);
  });

  it('trellis_client sends a request to a key\'s run (request_send); trellis_reader and a role with neither cannot', async () => {
    await poolAs('client').query(`select * from trellis.signal_with_start('privileged-order', '{"n":1}', '{"key":"priv-req","run_at":"2999-01-01T00:00:00Z"}', 'poke', '1')`);
    const call = `select run_id, delivered from trellis.request_send('privileged-order', 'priv-req', 'poke', '2', 'req-1')`;
    const [row] = (await poolAs('client').query(call)).rows;
    assert.equal(row.delivered, true);
    assert.deepEqual((await poolAs('client').query(call)).rows[0], { run_id: row.run_id, delivered: false });
    await denied(poolAs('reader'), call);
    await denied(poolAs('nobody'), call);
  });

  it('trellis_client and trellis_reader preview a bulk control (run_control_preview); a role with neither cannot', async () => {
    const call = `select count(*)::int as n from trellis.run_control_preview('cancel', '{"all": true}')`;
    const expected = (await db.pool.query(call)).rows[0].n as number;
    assert.ok(expected > 0);
    assert.equal((await poolAs('client').query(call)).rows[0].n, expected);
    assert.equal((await poolAs('reader').query(call)).rows[0].n, expected);
    await denied(poolAs('nobody'), call);
  });

  it('trellis_client reads a table connector (its horizon is trellis.xact_horizon); a role with no Trellis role cannot', async () => {
    await db.pool.query(`create table public.priv_events (id bigserial primary key, tx xid8 not null default pg_current_xact_id(),
      foreign_id text not null, type text not null, payload jsonb not null default '{}')`);
    await db.pool.query(`grant select on public.priv_events to ${logins.client}, ${logins.nobody}`);
    await db.pool.query(`insert into public.priv_events (foreign_id, type) values ('a', 'paid')`);
    const connector = tableConnector({ name: 'priv', table: 'public.priv_events' });
    const pool = poolAs('client');
    const read = await waitFor(async () => {
      const r = await connector.read(pool, null, 10);
      return r.events.length ? r : undefined;
    }, { what: 'the row below the horizon' });
    assert.deepEqual(read.events.map((e) => [e.foreignId, e.type]), [['a', 'paid']]);
    await denied(poolAs('nobody'), 'select trellis.xact_horizon()');
  });

  it('a role with no Trellis role can execute no Trellis function', async () => {
    const pool = poolAs('nobody');
    await denied(pool, `select trellis.run_start('privileged-order', '{"n":1}', '{}')`);
    const client = createClient({ pool, logger: silentLogger });
    try {
      const error = await client.start(order, { n: 1 }).then(() => undefined, (e: unknown) => e);
      assert.ok(error instanceof DatabaseError, String(error));
      assert.equal(error.details.sqlstate, '42501');
    } finally {
      await client.close();
    }
  });

  it('the writing application functions are SECURITY DEFINER with a pinned search_path', async () => {
    const { rows } = await db.pool.query(`select proname, prosecdef, proconfig from pg_proc
      where pronamespace = 'trellis'::regnamespace and proname in ('run_start', 'signal_send', 'run_cancel', 'workflow_register')`);
    assert.equal(rows.length, 4);
    for (const r of rows) {
      assert.equal(r.prosecdef, true, r.proname);
      assert.ok(r.proconfig.includes('search_path=pg_catalog, trellis, pg_temp'), `${r.proname}: ${r.proconfig}`);
    }
  });

  it('every PL/pgSQL entry point runs under that same search_path, and leaves the session its own', async () => {
    // One path for every caller keeps the cached plans of the helpers they
    // share (a plan is dropped when the path it was made under changes):
    // see sql/950_grants.sql.
    const { rows } = await db.pool.query(`select p.proname, p.proconfig from pg_proc p join pg_language l on l.oid = p.prolang
      where p.pronamespace = 'trellis'::regnamespace and l.lanname = 'plpgsql' and left(p.proname, 1) <> '_'`);
    assert.ok(rows.length > 40, `only ${rows.length} entry points`);
    for (const name of ['run_claim', 'checkpoint_apply', 'run_start_claimed', 'run_heartbeat_many', 'role_acquire', 'hook_claim']) {
      assert.ok(rows.some((r) => r.proname === name), name);
    }
    for (const r of rows) assert.ok(r.proconfig?.includes('search_path=pg_catalog, trellis, pg_temp'), `${r.proname}: ${r.proconfig}`);
    const client = await db.pool.connect();
    try {
      await client.query('set search_path = public');
      await client.query(`select * from trellis.run_claim('path-check', '{default}', '{}', '{}', 1, '1 minute')`);
      assert.equal((await client.query('show search_path')).rows[0].search_path, 'public');
    } finally {
      await client.query('reset search_path');
      client.release();
    }
  });

  it('the recipe of docs/testing.md switches a database of your own: alter database set trellis.test_database, then a new session', async () => {
    const mine = await createDatabase();
    const admin = new pg.Client({ connectionString: db.url });
    await admin.connect();
    await admin.query(`alter database ${mine.name} reset trellis.test_database`);
    const owner = new pg.Client({ connectionString: mine.url });
    await owner.connect();
    try {
      await migrate(owner);
      const recipe = `begin; set local trellis.virtual_clock = 'allowed'; select trellis.clock_use_virtual(); commit;`;
      await assert.rejects(owner.query(recipe), { code: 'TR004' }, 'without the mark the recipe alone fails');
      await owner.query('rollback');
      await admin.query(`alter database ${mine.name} set trellis.test_database = 'on'`);
      const fresh = new pg.Client({ connectionString: mine.url });
      await fresh.connect();
      try {
        await fresh.query(recipe);
        const { rows } = await fresh.query(`select prosrc from pg_proc where oid = 'trellis.now()'::regprocedure`);
        assert.match(rows[0].prosrc, /trellis\.clock/);
      } finally {
        await fresh.end();
      }
    } finally {
      await owner.end();
      await admin.end();
      await mine.drop();
    }
  });

  it('the virtual clock cannot be switched on in a database the test kit did not make, even by its owner', async () => {
    const other = await createDatabase();
    const admin = new pg.Client({ connectionString: db.url });
    await admin.connect();
    await admin.query(`alter database ${other.name} reset trellis.test_database`);
    await admin.end();
    const owner = new pg.Client({ connectionString: other.url });
    await owner.connect();
    try {
      await migrate(owner);
      await owner.query('begin');
      await owner.query(`set local trellis.virtual_clock = 'allowed'`);
      await assert.rejects(owner.query('select trellis.clock_use_virtual()'), { code: 'TR004', message: /test kit created/ });
      await owner.query('rollback');
      const { rows } = await owner.query(`select prosrc from pg_proc where oid = 'trellis.now()'::regprocedure`);
      assert.doesNotMatch(rows[0].prosrc, /trellis\.clock/);
    } finally {
      await owner.end();
      await other.drop();
    }
  });
});

