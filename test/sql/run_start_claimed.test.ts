/**
 * trellis.run_start_claimed: a start whose run is leased at once to a worker
 * in the caller's process (no NOTIFY, no claim), and everything it must not
 * do: lease a run a repeated key returns, lease a run due later, write
 * anything on bad input.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import pg from 'pg';
import { useFreshDatabase } from '../helpers/database-fixture.ts';
import { waitFor } from '../helpers/wait.ts';

const fx = useFreshDatabase({
  setUp: (db) => db.pool.query(`select trellis.workflow_register('[{"name":"orders","version":"1","queue":"default"}]')`),
});

const sql = async (text: string, values: unknown[] = []) => (await fx.db.pool.query(text, values)).rows;
const counts = async () => (await sql(`select (select count(*) from trellis.runs)::int as runs, (select count(*) from trellis.steps)::int as steps`))[0];
const startClaimed = (options: object, worker: string | null = 'w-local', lease = '30 seconds', input = '{"n":1}') =>
  sql(`select * from trellis.run_start_claimed('orders', $1::jsonb, $2::jsonb, $3, $4::interval)`, [input, JSON.stringify(options), worker, lease]);
const run = async (id: string) => (await sql(
  `select status, attempt, lease_token, lease_owner, extract(epoch from lease_expires_at - started_at)::float8 as lease, started_at, queue, input
     from trellis.runs where id = $1`, [id]))[0];

describe('run_start_claimed', () => {
  it('inserts the run running, attempt 1, leased to the worker, and returns what a claim would', async () => {
    const [got] = await startClaimed({ queue: 'hand-1', metadata: { tenant: 'a' } }, 'w-local', '20 seconds', '{"b":1,"aa":2}');
    assert.equal(got.claimed, true);
    assert.equal(got.workflow, 'orders');
    assert.equal(got.version, '1');
    // The stored (jsonb) input, so a replay elsewhere sees the same object.
    assert.deepEqual(Object.keys(got.input), ['b', 'aa']);
    assert.deepEqual(got.metadata, { tenant: 'a' });
    const r = await run(got.id);
    assert.equal(r.status, 'running');
    assert.equal(r.attempt, 1);
    assert.equal(r.lease_owner, 'w-local');
    assert.equal(r.lease_token, got.lease_token);
    assert.equal(r.lease, 20);
    assert.equal(r.queue, 'hand-1');
    assert.ok(r.started_at instanceof Date);
  });

  it('notifies no worker (a plain start does)', async () => {
    const listener = new pg.Client({ connectionString: fx.db.url });
    await listener.connect();
    try {
      const heard: string[] = [];
      listener.on('notification', (n) => heard.push(n.payload ?? ''));
      await listener.query(`listen "trellis:run_ready"`);
      await startClaimed({ queue: 'hand-quiet' });
      // Notifications arrive in commit order: the marker comes after anything the start sent.
      await sql(`select pg_notify('trellis:run_ready', 'marker')`);
      await waitFor(() => heard.includes('marker'), { what: 'the marker notification' });
      assert.deepEqual(heard, ['marker']);
      await sql(`select trellis.run_start('orders', '{}', '{"queue":"hand-loud"}')`);
      await sql(`select pg_notify('trellis:run_ready', 'marker-2')`);
      await waitFor(() => heard.includes('marker-2'), { what: 'the second marker' });
      assert.deepEqual(heard, ['marker', 'hand-loud', 'marker-2']);
    } finally {
      await listener.end();
    }
  });

  it('leases nothing for a repeated key: the existing run comes back unclaimed and untouched', async () => {
    const [first] = await startClaimed({ key: 'k-1', queue: 'hand-2' }, 'w-a');
    const [again] = await startClaimed({ key: 'k-1', queue: 'hand-2' }, 'w-b');
    assert.equal(again.id, first.id);
    assert.equal(again.claimed, false);
    assert.equal(again.lease_token, null);
    const r = await run(first.id);
    assert.equal(r.lease_owner, 'w-a');
    assert.equal(r.lease_token, first.lease_token);
    // Also when the same worker starts the same key again (the token tells them apart).
    const [third] = await startClaimed({ key: 'k-1', queue: 'hand-2' }, 'w-a');
    assert.equal(third.claimed, false);
  });

  it('leaves a run due later pending, as run_start would', async () => {
    const [got] = await startClaimed({ queue: 'hand-3', run_at: new Date(Date.now() + 3_600_000).toISOString() });
    assert.equal(got.claimed, false);
    const r = await run(got.id);
    assert.equal(r.status, 'pending');
    assert.equal(r.attempt, 0);
    assert.equal(r.lease_owner, null);
  });

  it('is not claimable by another worker while the lease holds, and is reclaimed as attempt 2 once it expires', async () => {
    const [got] = await startClaimed({ queue: 'hand-4' }, 'w-dead', '1 second');
    const claim = `select id, attempt, lease_token from trellis.run_claim('w-other', '{hand-4}', '{orders}', '{1}', 10, '30 seconds')`;
    assert.deepEqual(await sql(claim), []);
    const reclaimed = await waitFor(async () => (await sql(claim))[0], { timeout: 5000, what: 'the expired lease to be reclaimed' });
    assert.equal(reclaimed.id, got.id);
    assert.equal(reclaimed.attempt, 2);
    assert.notEqual(reclaimed.lease_token, got.lease_token);
    assert.equal((await run(got.id)).lease_owner, 'w-other');
  });

  for (const [what, options, worker, lease, code] of [
    ['no worker', {}, null, '30 seconds', 'TR001'],
    ['an empty worker id', {}, '', '30 seconds', 'TR001'],
    ['a lease under a second', {}, 'w', '10 milliseconds', 'TR001'],
    ['a lease over a day', {}, 'w', '2 days', 'TR001'],
    ['an unknown option', { queue: 'x', bogus: 1 }, 'w', '30 seconds', 'TR001'],
    ["a queue with a quote and SQL in it", { queue: "q'; drop table trellis.runs; --" }, 'w', '30 seconds', 'TR001'],
    ['an unknown version', { version: '9' }, 'w', '30 seconds', 'TR002'],
  ] as const) {
    it(`refuses ${what} with ${code} and writes nothing`, async () => {
      const before = await counts();
      await assert.rejects(startClaimed(options, worker, lease), (e: { code?: string | undefined }) => e.code === code);
      assert.deepEqual(await counts(), before);
    });
  }
});
