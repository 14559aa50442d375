/**
 * The distributed paths (sql/160_buckets.sql: row locks one bucket at a time,
 * taken when the setting 'distributed' is on, as on a Citus cluster) keep
 * every engine contract on one node too: claims, fenced checkpoints, timers,
 * signals, heartbeats, lease expiry and the cancel cascade. npm run
 * test:citus runs the same paths on a real cluster.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, it } from 'node:test';
import { useFreshDatabase } from '../helpers/database-fixture.ts';
import { waitFor } from '../helpers/wait.ts';

const fx = useFreshDatabase({
  setUp: async () => {
    await fx.db.pool.query(`select trellis.setting_set('distributed', 'true')`);
    await fx.db.pool.query(`select trellis.workflow_register('[{"name":"w","version":"1","queue":"dq"},{"name":"kid","version":"1","queue":"dq-kids"},
      {"name":"hooked","version":"1","queue":"dq-h","hooks":["onComplete"]}]')`);
  },
});

const sql = async (text: string, values: unknown[] = []) => (await fx.db.pool.query(text, values)).rows;
const claim = (queue: string, limit: number, lease = '30 seconds') =>
  sql(`select id, lease_token, history, signals from trellis.run_claim('dw', array[$1], '{w}', '{1}', $2, $3::interval)`,
    [queue, limit, lease]);
const apply = (ops: unknown[]) => sql('select run_id, token from trellis.checkpoint_apply($1)', [JSON.stringify(ops)]);
const status = async (id: string) => (await sql('select status from trellis.runs where id = $1', [id]))[0]?.status;

describe('the distributed paths on one node', () => {
  it('refuses a distributed setting that is not a boolean (TR001)', async () => {
    await assert.rejects(sql(`select trellis.setting_set('distributed', '1')`), (e: { code?: string | undefined }) => e.code === 'TR001');
  });

  it('claims each run of many buckets once, fences checkpoints by token and completes them', async () => {
    await sql(`select trellis.run_start('w', '{}', jsonb_build_object('queue', 'dq-a', 'key', 'k' || g)) from generate_series(1, 40) g`);
    const first = await claim('dq-a', 25);
    const second = await claim('dq-a', 25);
    assert.equal(first.length, 25);
    assert.equal(second.length, 15);
    const ids = new Set([...first, ...second].map((r) => r.id));
    assert.equal(ids.size, 40);
    const buckets = await sql(`select count(distinct bucket) as n from trellis.runs where queue = 'dq-a'`);
    assert.ok(Number(buckets[0].n) > 10, `buckets: ${buckets[0].n}`);
    const held = [...first, ...second];
    const stale = await apply([
      ...held.flatMap((r) => [
        { op: 'step', run: r.id, token: r.lease_token, seq: 0, name: 's', kind: 'step', status: 'completed', output: 1 },
        { op: 'complete', run: r.id, token: r.lease_token, output: 2 },
      ]),
      { op: 'complete', run: held[0].id, token: randomUUID(), output: 3 },
    ]);
    assert.equal(stale.length, 1);
    const done = await sql(`select count(*) filter (where status = 'completed') as n, max(output::text) as o
                              from trellis.runs where queue = 'dq-a'`);
    assert.deepEqual([Number(done[0].n), done[0].o], [40, '2']);
    assert.equal(Number((await sql(`select count(*) from trellis.steps s join trellis.runs r on r.bucket = s.bucket and r.id = s.run_id
                                      where r.queue = 'dq-a'`))[0].count), 40);
  });

  it('wakes a waiting run by signal and by timer, and gives an expired lease to the next claim', async () => {
    const [a] = await sql(`select trellis.run_start('w', '{}', '{"queue":"dq-b"}') as id`);
    const [b] = await sql(`select trellis.run_start('w', '{}', '{"queue":"dq-b"}') as id`);
    const held = await claim('dq-b', 2);
    const token = (id: string) => held.find((r) => r.id === id)!.lease_token;
    await apply([{ op: 'wait', run: a.id, token: token(a.id), delay_ms: null },
                 { op: 'wait', run: b.id, token: token(b.id), delay_ms: 0 }]);
    assert.equal(await status(a.id), 'waiting');
    assert.equal((await sql(`select trellis.signal_send($1, 'go', '1')`, [a.id]))[0].signal_send, true);
    assert.equal(await status(a.id), 'pending');
    const again = await claim('dq-b', 5, '1 second');
    assert.deepEqual(again.map((r) => r.id).sort(), [a.id, b.id].sort());
    assert.equal(again.find((r) => r.id === a.id)!.signals.length, 1);
    const beat = await sql(`select id from trellis.run_heartbeat_many($1::uuid[], $2::uuid[], '30 seconds')`,
      [again.map((r) => r.id), again.map((r) => r.lease_token)]);
    assert.equal(beat.length, 2);
    // The lease of b lapses (moved back in time): the next claim takes it again with a new token.
    await sql(`update trellis.runs set lease_expires_at = now() - interval '1 second' where id = $1`, [b.id]);
    const retaken = await claim('dq-b', 5);
    assert.deepEqual(retaken.map((r) => r.id), [b.id]);
    assert.notEqual(retaken[0].lease_token, again.find((r) => r.id === b.id)!.lease_token);
  });

  it('cancels a parent with its children in other buckets (the cascade and its locks go bucket by bucket)', async () => {
    const [p] = await sql(`select trellis.run_start('w', '{}', '{"queue":"dq-c","key":"parent-c"}') as id`);
    const [held] = await claim('dq-c', 1);
    const kids = [randomUUID(), randomUUID()];
    await apply([
      { op: 'child', run: p.id, token: held.lease_token, seq: 0, name: 'c0', child: kids[0], workflow: 'kid', input: {}, key: 'kid-0' },
      { op: 'child', run: p.id, token: held.lease_token, seq: 1, name: 'c1', child: kids[1], workflow: 'kid', input: {}, key: 'kid-1' },
      { op: 'wait', run: p.id, token: held.lease_token, delay_ms: null },
    ]);
    const spread = await sql('select count(distinct bucket) as n from trellis.runs where id = any ($1::uuid[])', [[p.id, ...kids]]);
    assert.ok(Number(spread[0].n) >= 2, 'the keyed children should land in other buckets than their parent');
    await sql(`select trellis.run_cancel($1, 'stop')`, [p.id]);
    assert.deepEqual(await Promise.all(kids.map(status)), ['cancelled', 'cancelled']);
    assert.equal(await status(p.id), 'pending');
  });

  it('wakes a parent waiting on a keyed child in another bucket, and a release after a failure forgets the failed call', async () => {
    const [p] = await sql(`select trellis.run_start('w', '{}', '{"queue":"dq-d","key":"parent-d"}') as id`);
    const [held] = await claim('dq-d', 1);
    const kid = randomUUID();
    await apply([
      { op: 'child', run: p.id, token: held.lease_token, seq: 0, name: 'c0', child: kid, workflow: 'kid', input: {}, key: 'kid-d' },
      { op: 'wait', run: p.id, token: held.lease_token, delay_ms: null },
    ]);
    assert.equal(await status(p.id), 'waiting');
    const [k] = await sql(`select id, lease_token from trellis.run_claim('dw', '{dq-kids}', '{kid}', '{1}', 5, '30 seconds')`);
    assert.equal(k.id, kid);
    await apply([{ op: 'complete', run: kid, token: k.lease_token, output: 7 }]);
    assert.equal(await status(p.id), 'pending', 'woken by its child');
    const [again] = await claim('dq-d', 1);
    await apply([
      { op: 'step', run: p.id, token: again.lease_token, seq: 1, name: 's', kind: 'step', status: 'failed', error: { message: 'x' } },
      { op: 'release', run: p.id, token: again.lease_token, delay_ms: 0, failure: true },
    ]);
    const steps = await sql('select seq from trellis.steps where run_id = $1 order by seq', [p.id]);
    assert.deepEqual(steps.map((s) => s.seq), [0], 'the failed call is forgotten, the child call kept');
    assert.equal(await status(p.id), 'pending');
  });

  it('purges, claims hook deliveries and claims a flow-controlled queue one bucket at a time', async () => {
    await sql(`select trellis.run_start('hooked', '{}', jsonb_build_object('queue', 'dq-h', 'key', 'h' || g)) from generate_series(1, 6) g`);
    const held = await sql(`select id, lease_token from trellis.run_claim('dw', '{dq-h}', '{hooked}', '{1}', 10, '30 seconds')`);
    assert.equal(held.length, 6);
    await apply(held.map((r) => ({ op: 'complete', run: r.id, token: r.lease_token, output: 1 })));
    const hooks = await sql(`select id, run_id, status from trellis.hook_claim('dw', '{hooked}', '{1}', 4, '30 seconds')`);
    assert.equal(hooks.length, 4);
    assert.ok(hooks.every((h) => h.status === 'completed'));
    const rest = await sql(`select id, run_id from trellis.hook_claim('dw', '{hooked}', '{1}', 10, '30 seconds')`);
    assert.equal(rest.length, 2, 'the first claim\'s deliveries are leased');
    // A run whose hook is not delivered is kept: the first four are delivered, the other two still run.
    for (const h of hooks) await sql(`select trellis.hook_done($1, 'dw', 1)`, [h.id]);
    const purged = await sql(`select trellis.run_purge('0 seconds', 6, 'hooked') as n`);
    assert.equal(purged[0].n, 4);
    assert.deepEqual((await sql(`select id from trellis.runs where workflow = 'hooked' order by id`)).map((r) => r.id),
      rest.map((h) => h.run_id).sort(), 'the two with a delivery in flight are kept');

    await sql(`select trellis.queue_set('dq-f', '{"concurrency": 3, "key_concurrency": 1}')`);
    await sql(`select trellis.run_start('w', '{}', jsonb_build_object('queue', 'dq-f', 'key', 'f' || g, 'concurrency_key', 'k' || (g % 2)))
                 from generate_series(1, 8) g`);
    const first = await claim('dq-f', 10);
    assert.equal(first.length, 2, 'one per concurrency key');
    const keys = await sql('select distinct concurrency_key from trellis.runs where id = any ($1::uuid[])', [first.map((r) => r.id)]);
    assert.equal(keys.length, 2);
    assert.equal((await claim('dq-f', 10)).length, 0);
  });

  it('reads the outbox with the cursor\'s horizon (no worker nodes here: nothing is prepared elsewhere)', async () => {
    const [{ id }] = await sql(`select trellis.run_start('w', '{}', '{"queue":"dq-outbox","key":"outbox"}') as id`);
    // Other files' open transactions on the server hold the horizon back for a moment.
    const events = await waitFor(async () => {
      const rows = await sql(`select run_id, kind from trellis.events_read(null, 10000, '{}') where run_id = $1`, [id]);
      return rows.length ? rows : undefined;
    }, { what: 'the started event' });
    assert.deepEqual(events, [{ run_id: id, kind: 'started' }]);
  });
});
