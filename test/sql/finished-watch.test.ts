/**
 * The result watchers of sql/210_wakeups.sql (decision 0029):
 * trellis:run_finished is sent only while a session watches
 * (run_finished_watch), and a watch taken while an unwatched end is in flight
 * waits for that transaction, so a watcher that reads after its watch never
 * misses an end. Absence is shown with a sentinel: NOTIFYs are delivered in
 * commit order, so a run_finished sent before the sentinel arrives first.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import pg from 'pg';
import { useFreshDatabase } from '../helpers/database-fixture.ts';
import { sentinelListener } from '../helpers/sentinel.ts';
import { waitFor } from '../helpers/wait.ts';

const fx = useFreshDatabase({ setUp: (db) => db.pool.query(`select trellis.workflow_register('[{"name":"w","version":"1","queue":"default"}]')`) });
const sql = async (text: string, values: unknown[] = []) => (await fx.db.pool.query(text, values)).rows;
let queues = 0;

/** A run held by a worker, in a queue of its own. */
async function held(): Promise<{ id: string; token: string }> {
  const queue = `fw${++queues}`;
  await sql('select trellis.run_start($1, $2, $3)', ['w', '{}', JSON.stringify({ queue })]);
  const [row] = await sql(`select id, lease_token from trellis.run_claim('w1', array[$1], '{w}', '{1}', 1, '30 seconds')`, [queue]);
  return { id: row.id, token: row.lease_token };
}

const listener = () => sentinelListener(fx.db.url, 'trellis:run_finished');

const watchedShards = async (client: pg.Client) =>
  Number((await client.query(`select count(*)::int as n from pg_locks where locktype = 'advisory' and pid = pg_backend_pid()
                                  and classid = 1414679634 and mode = 'ShareLock' and granted`)).rows[0].n);

describe('trellis:run_finished only while watched', () => {
  it('an end notifies nobody while no session watches, and notifies once one does', async () => {
    const l = await listener();
    try {
      const a = await held();
      await sql('select trellis.run_complete($1, $2, null)', [a.id, a.token]);
      const b = await held();
      await sql(`select trellis.run_fail($1, $2, '{}')`, [b.id, b.token]);
      assert.deepEqual(await l.until(), [], 'unwatched: no run_finished');
      await l.client.query('select trellis.run_finished_watch()');
      const c = await held();
      await sql('select trellis.run_complete($1, $2, null)', [c.id, c.token]);
      const d = await held();
      await sql(`select trellis.checkpoint_apply($1)`, [JSON.stringify([{ op: 'complete', run: d.id, token: d.token, output: 1 }])]);
      const e = await held();
      await sql(`select trellis.run_cancel($1, 'stop')`, [e.id]);
      // e is held by a worker: run_cancel only requests it; its worker ends it.
      await sql(`select trellis.checkpoint_apply($1)`, [JSON.stringify([{ op: 'cancelled', run: e.id, token: e.token, error: { name: 'CancelledError', message: 'stop' } }])]);
      const queue = `fw${++queues}`;
      const [{ id: f }] = await sql('select trellis.run_start($1, $2, $3) as id', ['w', '{}', JSON.stringify({ queue })]);
      await sql(`select trellis.run_cancel($1, 'never started')`, [f]);
      assert.deepEqual(await l.until(), [c.id, d.id, e.id, f], 'watched: each end notifies');
    } finally {
      await l.close();
    }
  });

  it('is idempotent per session, ends with run_finished_unwatch or the session, and is per session', async () => {
    const l = await listener();
    const other = new pg.Client({ connectionString: fx.db.url });
    await other.connect();
    try {
      await l.client.query('select trellis.run_finished_watch()');
      await l.client.query('select trellis.run_finished_watch()');
      assert.equal(await watchedShards(l.client), 8);
      await other.query('select trellis.run_finished_watch()');
      assert.equal((await l.client.query('select trellis.run_finished_unwatch() as held')).rows[0].held, true);
      assert.equal(await watchedShards(l.client), 0, 'both watches of the session released');
      assert.equal((await l.client.query('select trellis.run_finished_unwatch() as held')).rows[0].held, false);
      const a = await held();
      await sql('select trellis.run_complete($1, $2, null)', [a.id, a.token]);
      assert.deepEqual(await l.until(), [a.id], 'another session still watches');
      await other.end();
      // The other session's locks go with it (its backend may take a moment to exit).
      await waitFor(async () => Number((await sql(`select count(*)::int as n from pg_locks where locktype = 'advisory'
                                                    and database = (select oid from pg_database where datname = current_database())
                                                    and classid = 1414679634`))[0].n) === 0, { what: 'the session\'s locks released' });
      const b = await held();
      await sql('select trellis.run_complete($1, $2, null)', [b.id, b.token]);
      assert.deepEqual(await l.until(), [], 'nobody watches');
    } finally {
      await l.close();
      await other.end().catch(() => undefined);
    }
  });

  it('a watch taken while an unwatched end is in flight waits for its commit, so a read after it sees the end', async () => {
    const l = await listener();
    const ender = await fx.db.pool.connect();
    try {
      const a = await held();
      await ender.query('begin');
      await ender.query('select trellis.run_complete($1, $2, null)', [a.id, a.token]);
      const pid = Number((await l.client.query('select pg_backend_pid() as pid')).rows[0].pid);
      const watch = l.client.query('select trellis.run_finished_watch()');
      await waitFor(async () => (await sql(`select wait_event_type = 'Lock' as w from pg_stat_activity where pid = $1`, [pid]))[0]?.w === true,
        { what: 'the watch waiting for the ending transaction' });
      await ender.query('commit');
      await watch;
      assert.equal((await l.client.query('select status from trellis.runs where id = $1', [a.id])).rows[0].status, 'completed');
      assert.deepEqual(await l.until(), [], 'that end notified nobody: the read is what saw it');
      const b = await held();
      await sql('select trellis.run_complete($1, $2, null)', [b.id, b.token]);
      assert.deepEqual(await l.until(), [b.id]);
    } finally {
      await ender.query('rollback').catch(() => undefined);
      ender.release();
      await l.close();
    }
  });

  it('a checkpoint that ends more than 200 runs notifies their ids in chunks of 200, each once', async () => {
    const l = await listener();
    try {
      await l.client.query('select trellis.run_finished_watch()');
      const queue = `fw${++queues}`;
      await sql(`select trellis.run_start('w', '{}', $1) from generate_series(1, 205)`, [JSON.stringify({ queue })]);
      const held = await sql(`select id, lease_token from trellis.run_claim('w1', array[$1], '{w}', '{1}', 205, '30 seconds')`, [queue]);
      assert.equal(held.length, 205);
      await sql('select trellis.checkpoint_apply($1)', [JSON.stringify(held.map((r) => ({ op: 'complete', run: r.id, token: r.lease_token, output: 1 })))]);
      const heard = await l.until();
      assert.deepEqual(heard.map((p) => p.split(',').length).sort((a, b) => a - b), [5, 200]);
      assert.deepEqual(heard.flatMap((p) => p.split(',')).sort(), held.map((r) => r.id as string).sort());
    } finally {
      await l.close();
    }
  });
});
