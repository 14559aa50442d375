/** sql/730_models.sql: machine_trigger's refusal of a second unfinished run per foreign id, under concurrency. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import pg from 'pg';
import { useFreshDatabase } from '../helpers/database-fixture.ts';
import { waitFor } from '../helpers/wait.ts';

const fx = useFreshDatabase({ setUp: (db) => db.pool.query(`select trellis.workflow_register('[{"name":"m","version":"1","queue":"default"}]')`) });

const INPUT = '{"status": "a", "object": {}}';

/** Two sessions of their own, each in a transaction, ended after `body`. */
async function twoSessions(body: (a: pg.Client, b: pg.Client) => Promise<void>): Promise<void> {
  const a = new pg.Client({ connectionString: fx.db.url });
  const b = new pg.Client({ connectionString: fx.db.url });
  await a.connect();
  await b.connect();
  try {
    await a.query('begin');
    await b.query('begin');
    await body(a, b);
  } finally {
    await a.end();
    await b.end();
  }
}

/** Until session `b` waits (on a lock here; on a Citus cluster on a worker's, seen here as a wait on it). */
const waiting = (b: pg.Client, what: string) => waitFor(async () => (await fx.db.pool.query(
  `select count(*)::int as n from pg_stat_activity where state = 'active' and wait_event is not null and pid = $1`,
  [(b as unknown as { processID: number }).processID])).rows[0].n === 1, { what });

describe('machine_trigger', () => {
  it('two concurrent triggers of one foreign id: the second waits for the first to commit, then is refused with TR004', async () => {
    await twoSessions(async (a, b) => {
      await a.query(`select trellis.machine_trigger('m', 'f-1', $1)`, [INPUT]);
      const second = b.query(`select trellis.machine_trigger('m', 'f-1', $1)`, [INPUT]).then(() => 'started', (e: { code?: string | undefined }) => e.code);
      await waitFor(async () => (await fx.db.pool.query(
        `select count(*)::int as n from pg_stat_activity where wait_event_type = 'Lock' and wait_event = 'advisory' and pid = $1`,
        [(b as unknown as { processID: number }).processID])).rows[0].n === 1, { what: 'the second trigger waiting on the advisory lock' });
      await a.query('commit');
      assert.equal(await second, 'TR004');
    });
    const { rows } = await fx.db.pool.query(`select metadata from trellis.runs where workflow = 'm'`);
    assert.deepEqual(rows.map((r) => r.metadata), [{ foreign_id: 'f-1' }]);
  });

  it('a trigger that rolls back leaves the foreign id free; other foreign ids never wait', async () => {
    const c = await fx.db.pool.connect();
    try {
      await c.query('begin');
      await c.query(`select trellis.machine_trigger('m', 'f-2', $1)`, [INPUT]);
      await fx.db.pool.query(`select trellis.machine_trigger('m', 'f-3', $1)`, [INPUT]);
      await c.query('rollback');
    } finally {
      c.release();
    }
    await fx.db.pool.query(`select trellis.machine_trigger('m', 'f-2', $1)`, [INPUT]);
    const { rows } = await fx.db.pool.query(`select metadata->>'foreign_id' as f from trellis.runs where workflow = 'm' order by 1`);
    assert.deepEqual(rows.map((r) => r.f), ['f-1', 'f-2', 'f-3']);
  });

  it('refuses a bad key, a bad foreign id and bad options with TR001, writing nothing', async () => {
    for (const [fid, options] of [['f-4', '{"key": 7}'], ['f-4', '{"key": ""}'], ['', '{}'], ['x'.repeat(513), '{}'], ['f-4', '[]'], ['f-4', '{"metadata": 3}']]) {
      await assert.rejects(fx.db.pool.query(`select trellis.machine_trigger('m', $1, $2, $3)`, [fid, INPUT, options]),
        (e: { code?: string | undefined }) => e.code === 'TR001');
    }
    assert.equal((await fx.db.pool.query(`select count(*)::int as n from trellis.runs where metadata->>'foreign_id' = 'f-4'`)).rows[0].n, 0);
  });

  it('a keyed trigger is idempotent: a repeat returns the run its key started, even after it finished, and writes nothing', async () => {
    const first = (await fx.db.pool.query(`select trellis.machine_trigger('m', 'f-5', $1, '{"key": "evt-1"}') as id`, [INPUT])).rows[0].id;
    // Unfinished: an unkeyed trigger is refused, the repeat of the keyed one is not.
    await assert.rejects(fx.db.pool.query(`select trellis.machine_trigger('m', 'f-5', $1)`, [INPUT]), (e: { code?: string | undefined }) => e.code === 'TR004');
    assert.equal((await fx.db.pool.query(`select trellis.machine_trigger('m', 'f-5', $1, '{"key": "evt-1"}') as id`, [INPUT])).rows[0].id, first);
    await fx.db.pool.query(`select trellis.run_cancel($1, 'done with it')`, [first]);
    assert.equal((await fx.db.pool.query(`select trellis.machine_trigger('m', 'f-5', $1, '{"key": "evt-1"}') as id`, [INPUT])).rows[0].id, first);
    // The key of another foreign id's run: refused.
    await assert.rejects(fx.db.pool.query(`select trellis.machine_trigger('m', 'f-6', $1, '{"key": "evt-1"}')`, [INPUT]),
      (e: { code?: string | undefined }) => e.code === 'TR004');
    assert.equal((await fx.db.pool.query(`select count(*)::int as n from trellis.runs where workflow = 'm' and metadata->>'foreign_id' in ('f-5', 'f-6')`)).rows[0].n, 1);
  });

  it('two concurrent keyed triggers with one key and different foreign ids: the second waits, then is refused with TR004', async () => {
    await twoSessions(async (a, b) => {
      const first = (await a.query(`select trellis.machine_trigger('m', 'k-a', $1, '{"key": "evt-race"}') as id`, [INPUT])).rows[0].id;
      const second = b.query(`select trellis.machine_trigger('m', 'k-b', $1, '{"key": "evt-race"}') as id`, [INPUT])
        .then((r) => `answered ${r.rows[0].id === first ? 'with the other foreign id\'s run' : 'with a run'}`, (e: { code?: string | undefined }) => e.code);
      await waiting(b, 'the second trigger waiting for the first');
      await a.query('commit');
      assert.equal(await second, 'TR004');
    });
    const { rows } = await fx.db.pool.query(`select metadata->>'foreign_id' as f from trellis.runs where workflow = 'm' and metadata->>'foreign_id' in ('k-a', 'k-b')`);
    assert.deepEqual(rows.map((r) => r.f), ['k-a']);
  });

  it('two transactions that each trigger twice (keys crossing foreign ids) do not deadlock: the one that waited gets TR004', async () => {
    await twoSessions(async (a, b) => {
      await a.query(`select trellis.machine_trigger('m', 'd-x', $1, '{"key": "d-k1"}')`, [INPUT]);
      const second = b.query(`select trellis.machine_trigger('m', 'd-x', $1, '{"key": "d-k2"}')`, [INPUT]).then(() => 'started', (e: { code?: string | undefined }) => e.code);
      await waiting(b, 'the second transaction waiting on d-x');
      await a.query(`select trellis.machine_trigger('m', 'd-y', $1, '{"key": "d-k2"}')`, [INPUT]);
      await a.query('commit');
      assert.equal(await second, 'TR004');
    });
  });

  it('machine_callback refuses (TR001) a status the run\'s version declares no callback for, also when it declares no signals (not a machine)', async () => {
    await fx.db.pool.query(`select trellis.workflow_register('[{"name":"plain","version":"1","queue":"default"}]')`);
    await fx.db.pool.query(`select trellis.machine_trigger('plain', 'p-1', '{}')`);
    await assert.rejects(fx.db.pool.query(`select trellis.machine_callback('plain', 'p-1', 'placed', '{}')`),
      (e: { code?: string | undefined; message: string }) => e.code === 'TR001' && /plain has no callback for status 'placed'/.test(e.message));
    assert.equal((await fx.db.pool.query(`select count(*)::int as n from trellis.signals`)).rows[0].n, 0);
  });

  it('refuses an input that sets since (what a continue-as-new carries for status_since), writing nothing', async () => {
    await assert.rejects(fx.db.pool.query(`select trellis.machine_trigger('m', 'f-7', $1)`, ['{"status": "a", "object": {}, "since": "2000-01-01T00:00:00Z"}']),
      (e: { code?: string | undefined; message?: string }) => e.code === 'TR001' && /since is set by the machine itself/.test(e.message ?? ''));
    assert.equal((await fx.db.pool.query(`select count(*)::int as n from trellis.runs where metadata->>'foreign_id' = 'f-7'`)).rows[0].n, 0);
  });
});
