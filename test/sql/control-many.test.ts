/**
 * The SQL contract of the bulk controls (sql/520_control_many.sql, decision
 * 0037): run_cancel_many, run_retry_many, run_pause_many and run_resume_many
 * apply the one-run control to every run a filter matches that it applies
 * to, in id order, in batches; a run that changed between the read and its
 * lock is passed over; a bad filter or limit is refused with nothing changed;
 * trellis_client may call them, a role with no Trellis role may not.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import pg from 'pg';
import { useFreshDatabase } from '../helpers/database-fixture.ts';
import { backendId, lockWaiting } from '../helpers/lock-wait.ts';
import { waitFor } from '../helpers/wait.ts';

const fx = useFreshDatabase({
  setUp: (db) => db.pool.query('select trellis.workflow_register($1)', [JSON.stringify([
    { name: 'bulk', version: '1', queue: 'bulk-q' }, { name: 'other', version: '1', queue: 'bulk-q' },
  ])]),
});

const sql = async (text: string, values: unknown[] = []) => (await fx.db.pool.query(text, values)).rows;
const one = async (text: string, values: unknown[] = []) => (await sql(text, values))[0];
let queues = 0;

/** Runs of `workflow` in a queue of their own: `n` pending, then the first `running` of them claimed. */
async function runs(n: number, options: { workflow?: string; running?: number } = {}): Promise<{ queue: string; ids: string[]; tokens: Map<string, string> }> {
  const queue = `bq${++queues}`;
  const workflow = options.workflow ?? 'bulk';
  const ids = (await sql(`select trellis.run_start($1, jsonb_build_object('i', i), jsonb_build_object('queue', $2::text)) as id
                            from generate_series(1, $3) i`, [workflow, queue, n])).map((r) => r.id as string);
  const tokens = new Map<string, string>();
  if (options.running) {
    for (const r of await sql(`select id, lease_token from trellis.run_claim('w1', array[$1], array[$2], '{1}', $3, '30 seconds')`,
      [queue, workflow, options.running])) tokens.set(r.id, r.lease_token);
  }
  return { queue, ids, tokens };
}
const statuses = async (ids: string[]) => Object.fromEntries((await sql(`select id, status from trellis.runs where id = any ($1)`, [ids]))
  .map((r) => [r.id, r.status]));
const sorted = (ids: string[]) => [...ids].sort();

async function fail(id: string, token: string): Promise<void> {
  await sql('select * from trellis.checkpoint_apply($1)', [JSON.stringify([{ op: 'fail', run: id, token, error: { name: 'Error', message: 'no' } }])]);
}

describe('run_cancel_many, run_retry_many, run_pause_many, run_resume_many', () => {
  it('cancel: pending runs end at once, running ones are asked; finished runs and other queues are not touched', async () => {
    const a = await runs(4, { running: 1 });
    const b = await runs(2);
    const [runningId] = [...a.tokens.keys()];
    const done = a.ids.find((id) => id !== runningId)!;
    await sql('select trellis.run_cancel($1)', [done]);
    const rows = await sql(`select * from trellis.run_cancel_many($1, 'bulk stop')`, [JSON.stringify({ queue: a.queue })]);
    assert.deepEqual(rows.map((r) => r.id), sorted(a.ids.filter((id) => id !== done)), 'the finished run is not examined');
    for (const r of rows) {
      assert.equal(r.changed, true);
      assert.equal(r.status, r.id === runningId ? 'running' : 'cancelled');
    }
    assert.ok((await one('select cancel_requested_at from trellis.runs where id = $1', [runningId])).cancel_requested_at);
    assert.ok(Object.values(await statuses(b.ids)).every((s) => s === 'pending'));
    // The reason is the one-run control's.
    const other = a.ids.find((id) => id !== done && id !== runningId)!;
    assert.match(JSON.stringify((await one('select error from trellis.runs where id = $1', [other])).error), /bulk stop/);
    // Again: the running run was asked already, nothing else is left.
    assert.deepEqual(await sql(`select * from trellis.run_cancel_many($1)`, [JSON.stringify({ queue: a.queue })]), []);
  });

  it('pages in id order: each matching run is examined once across batches', async () => {
    const a = await runs(7);
    const seen: string[] = [];
    let after: string | null = null;
    for (;;) {
      const rows: { id: string; changed: boolean }[] = await sql('select * from trellis.run_pause_many($1, null, 3, $2)', [JSON.stringify({ queue: a.queue }), after]);
      seen.push(...rows.map((r) => r.id));
      if (rows.length < 3) break;
      after = rows.at(-1)!.id;
    }
    assert.deepEqual(seen, sorted(a.ids));
    assert.ok(Object.values(await statuses(a.ids)).every((s) => s === 'paused'));
    const resumed = await sql('select * from trellis.run_resume_many($1, 10000)', [JSON.stringify({ queue: a.queue, status: 'paused' })]);
    assert.deepEqual(resumed.map((r) => [r.status, r.changed]), a.ids.map(() => ['pending', true]));
  });

  it('retry: failed runs run again; a scrubbed run and one whose key was taken are passed over', async () => {
    const a = await runs(3, { running: 3 });
    for (const [id, token] of a.tokens) await fail(id, token);
    const [scrubbed, keyed, plain] = a.ids as [string, string, string];
    await sql('select trellis.run_scrub($1)', [scrubbed]);
    await sql(`update trellis.runs set former_key = 'k', key = null where id = $1`, [keyed]);
    const rows = await sql(`select * from trellis.run_retry_many('{"status": "failed", "workflow": "bulk"}') where id = any ($1)`, [a.ids]);
    assert.deepEqual(rows.map((r) => [r.id, r.status, r.changed]), [[plain, 'pending', true]]);
    assert.deepEqual(await statuses(a.ids), { [scrubbed]: 'failed', [keyed]: 'failed', [plain]: 'pending' });
    const events = await sql(`select kind from trellis.events where run_id = $1 order by xid, id`, [plain]);
    assert.equal(events.at(-1)!.kind, 'retried');
  });

  it('filters by version, key, creation time, metadata and ids; {"all": true} takes every run', async () => {
    const a = await runs(3);
    const b = await runs(2, { workflow: 'other' });
    await sql(`select trellis.run_start('bulk', '{}', '{"key": "only-me", "queue": "kq"}')`);
    assert.deepEqual((await sql(`select status from trellis.run_pause_many('{"key": "only-me", "workflow": "bulk"}')`)).map((r) => r.status), ['paused']);
    const byIds = await sql('select id from trellis.run_pause_many($1)', [JSON.stringify({ ids: [a.ids[0], b.ids[0]] })]);
    assert.deepEqual(byIds.map((r) => r.id), sorted([a.ids[0]!, b.ids[0]!]));
    const future = await sql(`select id from trellis.run_pause_many('{"created_after": "2999-01-01T00:00:00Z"}')`);
    assert.deepEqual(future, []);
    const byWorkflow = await sql(`select id from trellis.run_pause_many('{"workflow": "other", "version": "1", "created_before": "2999-01-01T00:00:00Z"}')`);
    assert.deepEqual(byWorkflow.map((r) => r.id), [b.ids[1]]);
    const tagged = await sql(`select trellis.run_start('bulk', '{}', '{"queue": "mq", "metadata": {"tenant": "acme", "tier": {"plan": "gold"}}}') as id`);
    await sql(`select trellis.run_start('bulk', '{}', '{"queue": "mq", "metadata": {"tenant": "other"}}')`);
    const byMetadata = await sql(`select id from trellis.run_pause_many('{"metadata": {"tier": {"plan": "gold"}}}')`);
    assert.deepEqual(byMetadata.map((r) => r.id), [tagged[0].id]);
    const all = await sql(`select id from trellis.run_resume_many('{"all": true}', 10000)`);
    assert.ok(all.length >= 4);
    assert.ok(Object.values(await statuses([...a.ids, ...b.ids])).every((s) => s === 'pending'));
  });

  it('a run that changed between the read and its lock is returned unchanged', async () => {
    const a = await runs(1);
    const [id] = a.ids as [string];
    const holder = await fx.db.pool.connect();
    const bulk = await fx.db.pool.connect();
    try {
      await holder.query('begin');
      await holder.query('select trellis.run_pause($1)', [id]);
      // The bulk call read the run as pending (the pause is not committed) and waits for its lock.
      const pid = await backendId(bulk);
      const call = bulk.query('select * from trellis.run_cancel_many($1)', [JSON.stringify({ queue: a.queue, status: 'pending' })]);
      await waitFor(() => lockWaiting(fx.db.pool, pid), { what: 'the bulk cancel waiting for the run' });
      await holder.query(`select trellis.run_cancel($1)`, [id]);
      await holder.query('commit');
      const rows = (await call).rows;
      assert.deepEqual(rows.map((r) => [r.id, r.status, r.changed]), [[id, 'cancelled', false]]);
    } finally {
      await holder.query('rollback').catch(() => undefined);
      holder.release();
      bulk.release();
    }
  });

  it('refuses a bad filter or limit with TR001, changing nothing', async () => {
    const a = await runs(2);
    for (const [filter, message] of [
      ['{}', /names at least one of/],
      ['{"all": false}', /names at least one of/],
      ['{"workflow": null}', /names at least one of/],
      ['[]', /a run filter is a JSON object/],
      ['{"wokflow": "bulk"}', /unknown run filter key\(s\): 'wokflow'/],
      ['{"status": "done"}', /no run is 'done'/],
      ['{"status": [1]}', /a status or an array of statuses/],
      ['{"created_after": "yesterday-ish"}', /created_after 'yesterday-ish' is not a timestamp/],
      ['{"ids": ["not-a-uuid"]}', /ids is an array of run ids/],
      ['{"workflow": "bulk\'; drop table trellis.runs; --"}', /workflow/],
      ['{"queue": 7}', /are strings/],
      ['{"all": "yes"}', /all must be true or false/],
      ['{"metadata": {}}', /names at least one of/],
      ['{"metadata": [1]}', /metadata is a JSON object/],
    ] as const) {
      await assert.rejects(sql('select * from trellis.run_cancel_many($1)', [filter]),
        (e: any) => e.code === 'TR001' && message.test(e.message), filter);
    }
    for (const limit of [0, 10001, null]) {
      await assert.rejects(sql('select * from trellis.run_cancel_many($1, null, $2)', [JSON.stringify({ queue: a.queue }), limit]),
        (e: any) => e.code === 'TR001' && /limit must be from 1 to 10000/.test(e.message), String(limit));
    }
    await assert.rejects(sql('select * from trellis.run_cancel_many(null)'), { code: 'TR001' });
    assert.ok(Object.values(await statuses(a.ids)).every((s) => s === 'pending'));
  });

  it('run_control_preview lists the runs a control would change, changing and locking nothing; the real call changes those', async () => {
    const a = await runs(5, { running: 2 });
    const [done] = [...a.tokens].slice(0, 1);
    await fail(done![0], done![1]);
    await sql(`update trellis.runs set cancel_requested_at = now() where id = $1`, [[...a.tokens.keys()][1]]);
    const eventsBefore = (await one('select count(*)::int as n from trellis.events')).n;
    const preview = async (action: string, limit = 1000, after: string | null = null) =>
      (await sql('select id, workflow, status from trellis.run_control_preview($1, $2, $3, $4)', [action, JSON.stringify({ queue: a.queue }), limit, after]));
    const cancel = await preview('cancel');
    // The failed run and the running run already asked to cancel are left out.
    assert.deepEqual(cancel.map((r) => r.id), sorted(a.ids.filter((id) => id !== done![0] && id !== [...a.tokens.keys()][1])));
    assert.ok(cancel.every((r) => r.workflow === 'bulk' && r.status === 'pending'));
    assert.deepEqual((await preview('retry')).map((r) => r.id), [done![0]]);
    // Pages as the real call does.
    const paged: string[] = [];
    for (let after: string | null = null; ;) {
      const page = await preview('cancel', 2, after);
      paged.push(...page.map((r) => r.id as string));
      if (page.length < 2) break;
      after = page[1]!.id;
    }
    assert.deepEqual(paged, cancel.map((r) => r.id));
    // Nothing changed, and nothing is held: inside a transaction that previewed, every run can still be locked (nowait).
    assert.equal((await one('select count(*)::int as n from trellis.events')).n, eventsBefore);
    const other = new pg.Client({ connectionString: fx.db.url });
    await other.connect();
    try {
      await other.query('begin');
      await other.query('select * from trellis.run_control_preview($1, $2)', ['cancel', JSON.stringify({ queue: a.queue })]);
      // One at a time by bucket and id (a cluster locks rows only so).
      for (const r of await sql('select bucket, id from trellis.runs where id = any ($1)', [a.ids])) {
        assert.equal((await sql('select id from trellis.runs where bucket = $1 and id = $2 for update nowait', [r.bucket, r.id])).length, 1);
      }
      await other.query('rollback');
    } finally {
      await other.end();
    }
    const changed = (await sql('select id from trellis.run_cancel_many($1) where changed', [JSON.stringify({ queue: a.queue })])).map((r) => r.id);
    assert.deepEqual(sorted(changed), cancel.map((r) => r.id));
    for (const [action, filter, message] of [
      ['stop', '{"all": true}', /a control is cancel, retry, pause or resume, not 'stop'/],
      [null, '{"all": true}', /a control is cancel/],
      ['cancel', '{}', /names at least one of/],
      ['cancel', '{"wokflow": "bulk"}', /unknown run filter key/],
    ] as const) {
      await assert.rejects(sql('select * from trellis.run_control_preview($1, $2)', [action, filter]), (e: any) => e.code === 'TR001' && message.test(e.message));
    }
    await assert.rejects(sql(`select * from trellis.run_control_preview('cancel', '{"all": true}', 0)`), (e: any) => e.code === 'TR001' && /limit/.test(e.message));
  });

  it('trellis_client may call them; a role with no Trellis role may not', async () => {
    const a = await runs(1);
    const suffix = crypto.randomUUID().replaceAll('-', '').slice(0, 10);
    const roles = { client: `tr_bulk_client_${suffix}`, nobody: `tr_bulk_nobody_${suffix}` };
    await sql(`create role ${roles.client} login password 'pw' in role trellis_client`);
    await sql(`create role ${roles.nobody} login password 'pw'`);
    const as = (role: string) => {
      const url = new URL(fx.db.url);
      url.username = role;
      url.password = 'pw';
      return new pg.Client({ connectionString: url.toString() });
    };
    const client = as(roles.client);
    const nobody = as(roles.nobody);
    try {
      await client.connect();
      await nobody.connect();
      await assert.rejects(nobody.query('select * from trellis.run_pause_many($1)', [JSON.stringify({ queue: a.queue })]), { code: '42501' });
      const rows = (await client.query('select * from trellis.run_pause_many($1)', [JSON.stringify({ queue: a.queue })])).rows;
      assert.deepEqual(rows.map((r) => r.status), ['paused']);
    } finally {
      await client.end().catch(() => undefined);
      await nobody.end().catch(() => undefined);
      await sql(`drop role ${roles.client}`);
      await sql(`drop role ${roles.nobody}`);
    }
  });
});
