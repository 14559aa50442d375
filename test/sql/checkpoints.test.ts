import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { before, describe, it } from 'node:test';
import pg from 'pg';
import { useFreshDatabase } from '../helpers/database-fixture.ts';
import { backendId, lockWaiting } from '../helpers/lock-wait.ts';
import { waitFor } from '../helpers/wait.ts';

type Held = { id: string; token: string; queue: string };

const fx = useFreshDatabase({ setUp: (db) => db.pool.query(`select trellis.workflow_register('[{"name":"w","version":"1","queue":"default"}]')`) });

const sql = async (text: string, values: unknown[] = []) => (await fx.db.pool.query(text, values)).rows;
let queues = 0;

/** Start a run in a queue of its own (so claims never see other tests' runs). */
async function pending(): Promise<{ id: string; queue: string }> {
  const queue = `q${++queues}`;
  const [row] = await sql('select trellis.run_start($1, $2, $3) as id', ['w', '{}', JSON.stringify({ queue })]);
  return { id: row.id, queue };
}

async function claimOne(queue: string, worker = 'w1', lease = '30 seconds'): Promise<Held | undefined> {
  const claim = `select id, lease_token from trellis.run_claim($1, array[$2], '{w}', '{1}', 1, $3::interval)`;
  const [row] = await sql(claim, [worker, queue, lease]);
  return row ? { id: row.id, token: row.lease_token, queue } : undefined;
}

async function held(lease = '30 seconds'): Promise<Held> {
  const { queue } = await pending();
  return (await claimOne(queue, 'w1', lease)) as Held;
}

const RUN = `select status, output, error, failures, attempt, lease_token, lease_expires_at, finished_at,
                    run_at > now() + interval '59 minutes' as later from trellis.runs where id = $1`;
const run = async (id: string) => (await sql(RUN, [id]))[0];
const steps = (id: string) => sql('select seq, name, status, output, attempts from trellis.steps where run_id = $1 order by seq', [id]);
/** checkpoint_apply; returns the refused leases as 'run/token'. */
const apply = async (ops: unknown) =>
  (await sql('select run_id, token from trellis.checkpoint_apply($1)', [JSON.stringify(ops)])).map((r) => `${r.run_id}/${r.token}`);
const recordStep = (h: Held, seq: number, name: string, status: string, output: unknown = null) =>
  sql('select trellis.step_record($1, $2, $3, $4, $5, $6)', [h.id, h.token, seq, name, status, JSON.stringify(output)]);

describe('run_complete, run_fail, run_release', () => {
  it('run_complete moves a running run to completed with its output and drops the lease', async () => {
    const h = await held();
    await sql(`select trellis.run_complete($1, $2, '{"total":42}')`, [h.id, h.token]);
    const r = await run(h.id);
    assert.equal(r.status, 'completed');
    assert.deepEqual(r.output, { total: 42 });
    assert.equal(r.lease_token, null);
    assert.ok(r.finished_at instanceof Date);
  });

  it('run_fail moves a running run to failed with its error', async () => {
    const h = await held();
    await sql(`select trellis.run_fail($1, $2, '{"name":"Error","message":"boom"}')`, [h.id, h.token]);
    const r = await run(h.id);
    assert.equal(r.status, 'failed');
    assert.deepEqual(r.error, { name: 'Error', message: 'boom' });
    assert.ok(r.finished_at instanceof Date);
  });

  it('run_release returns a running run to pending, claimable again at once', async () => {
    const h = await held();
    await sql('select trellis.run_release($1, $2)', [h.id, h.token]);
    assert.equal((await run(h.id)).status, 'pending');
    assert.equal((await claimOne(h.queue))?.id, h.id);
  });

  it('run_release with a delay makes the run pending later and not claimable now', async () => {
    const h = await held();
    await sql(`select trellis.run_release($1, $2, interval '1 hour')`, [h.id, h.token]);
    const r = await run(h.id);
    assert.equal(r.status, 'pending');
    assert.equal(r.later, true);
    assert.equal(await claimOne(h.queue), undefined);
  });

  it('run_release with a 30-day delay schedules the run 30 days ahead', async () => {
    const h = await held();
    await sql(`select trellis.run_release($1, $2, interval '30 days')`, [h.id, h.token]);
    const [r] = await sql(`select run_at > now() + interval '29 days' as ok from trellis.runs where id = $1`, [h.id]);
    assert.equal(r.ok, true);
  });

  it('run_release with failure counts a failed attempt and forgets failed steps but keeps completed ones', async () => {
    const h = await held();
    await recordStep(h, 0, 'charge', 'completed', { paid: true });
    await recordStep(h, 1, 'ship', 'failed');
    await sql(`select trellis.run_release($1, $2, '0', '{"message":"ship failed"}', true)`, [h.id, h.token]);
    const r = await run(h.id);
    assert.equal(r.status, 'pending');
    assert.equal(r.failures, 1);
    assert.deepEqual(r.error, { message: 'ship failed' });
    assert.deepEqual(await steps(h.id), [{ seq: 0, name: 'charge', status: 'completed', output: { paid: true }, attempts: 1 }]);
  });

  it('refuses to complete a pending run (TR004), a run twice (TR004) and an unknown run (TR002)', async () => {
    const p = await pending();
    await assert.rejects(sql('select trellis.run_complete($1, $2, null)', [p.id, randomUUID()]), { code: 'TR004' });
    assert.equal((await run(p.id)).status, 'pending');

    const h = await held();
    await sql(`select trellis.run_complete($1, $2, '1')`, [h.id, h.token]);
    await assert.rejects(sql(`select trellis.run_complete($1, $2, '2')`, [h.id, h.token]), { code: 'TR004' });
    await assert.rejects(sql(`select trellis.run_fail($1, $2, '{}')`, [h.id, h.token]), { code: 'TR004' });
    assert.deepEqual((await run(h.id)).output, 1);

    await assert.rejects(sql('select trellis.run_complete($1, $2, null)', [randomUUID(), randomUUID()]), { code: 'TR002' });
  });
});

describe('step_record', () => {
  it('never overwrites a completed step', async () => {
    const h = await held();
    await recordStep(h, 0, 'charge', 'completed', 'first');
    await recordStep(h, 0, 'charge', 'completed', 'second');
    await recordStep(h, 0, 'charge', 'retrying', 'third');
    assert.deepEqual(await steps(h.id), [{ seq: 0, name: 'charge', status: 'completed', output: 'first', attempts: 1 }]);
  });

  it('overwrites a retrying step with its completed result', async () => {
    const h = await held();
    await recordStep(h, 0, 'charge', 'retrying');
    await sql(`select trellis.step_record($1, $2, 0, 'charge', 'completed', '"paid"', null, 3)`, [h.id, h.token]);
    assert.deepEqual(await steps(h.id), [{ seq: 0, name: 'charge', status: 'completed', output: 'paid', attempts: 3 }]);
  });

  it('refuses bad step names, statuses and kinds with TR001 and writes nothing', async () => {
    const h = await held();
    for (const name of [`it's`, 'a;b', '"x"', ' lead', '']) {
      await assert.rejects(recordStep(h, 0, name, 'completed'), { code: 'TR001' }, name);
    }
    await assert.rejects(recordStep(h, 0, 'ok', 'done'), { code: 'TR001' });
    const magic = `select trellis.step_record($1, $2, 0, 'ok', 'completed', null, null, 1, 'magic')`;
    await assert.rejects(sql(magic, [h.id, h.token]), { code: 'TR001' });
    await assert.rejects(recordStep(h, -1, 'ok', 'completed'), { code: 'TR001' });
    assert.deepEqual(await steps(h.id), []);
  });
});

describe('run_heartbeat', () => {
  it('extends a held lease and returns the new expiry', async () => {
    const h = await held('5 seconds');
    const [{ at }] = await sql(`select trellis.run_heartbeat($1, $2, interval '1 hour') as at`, [h.id, h.token]);
    const r = await run(h.id);
    assert.equal(r.lease_expires_at.getTime(), at.getTime());
    assert.ok(at.getTime() > Date.now() + 3_000_000);
  });

  it('refuses a pending run with TR004 and an unknown run with TR002', async () => {
    const p = await pending();
    await assert.rejects(sql(`select trellis.run_heartbeat($1, $2, '1 minute')`, [p.id, randomUUID()]), { code: 'TR004' });
    await assert.rejects(sql(`select trellis.run_heartbeat($1, $2, '1 minute')`, [randomUUID(), randomUUID()]), { code: 'TR002' });
  });

  it('refuses a null or sub-second lease with TR001 and keeps the current expiry', async () => {
    const h = await held();
    const before = (await run(h.id)).lease_expires_at.getTime();
    for (const lease of [null, '0', '-1 minute']) {
      await assert.rejects(sql('select trellis.run_heartbeat($1, $2, $3::interval)', [h.id, h.token, lease]), { code: 'TR001' }, `${lease}`);
      await assert.rejects(sql('select trellis.run_heartbeat_many($1, $2, $3::interval)', [[h.id], [h.token], lease]), { code: 'TR001' });
    }
    assert.equal((await run(h.id)).lease_expires_at?.getTime(), before);
  });
});

describe('a stale lease token', () => {
  // A run claimed by 'old' with a 1 s lease, reclaimed by 'new' once it expired.
  let stale: { id: string; oldToken: string; newToken: string; queue: string };
  before(async () => {
    const h = await held('1 second');
    const taken = await waitFor(() => claimOne(h.queue, 'new'), { timeout: 5000, what: 'the expired lease to be reclaimed' });
    stale = { id: h.id, oldToken: h.token, newToken: taken.token, queue: h.queue };
  });
  const snapshot = async () => ({ run: await run(stale.id), steps: await steps(stale.id) });

  it('is refused with TR003 by every fenced write, and nothing changes', async () => {
    const before = await snapshot();
    assert.equal(before.run.lease_token, stale.newToken);
    const { id, oldToken } = stale;
    for (const write of [
      `select trellis.step_record($1, $2, 0, 'charge', 'completed', '1')`,
      `select trellis.run_complete($1, $2, '1')`,
      `select trellis.run_fail($1, $2, '{}')`,
      `select trellis.run_release($1, $2, '0', null, true)`,
      `select trellis.run_heartbeat($1, $2, '1 hour')`,
    ]) {
      await assert.rejects(sql(write, [id, oldToken]), { code: 'TR003' }, write);
    }
    assert.deepEqual(await snapshot(), before);
  });

  it('makes run_heartbeat_many return only the runs still held', async () => {
    const h = await held();
    const before = (await run(stale.id)).lease_expires_at.getTime();
    const many = `select id from trellis.run_heartbeat_many($1, $2, '1 hour') as id`;
    const got = await sql(many, [[stale.id, h.id], [stale.oldToken, h.token]]);
    assert.deepEqual(got.map((r) => r.id), [h.id]);
    assert.equal((await run(stale.id)).lease_expires_at.getTime(), before);
  });

  it('makes checkpoint_apply apply the held run and return the stale one, writing nothing of it', async () => {
    const good = await held();
    const before = await snapshot();
    const refused = await apply([
      { op: 'step', run: good.id, token: good.token, seq: 0, name: 'a', kind: 'step', status: 'completed', output: 1 },
      { op: 'step', run: stale.id, token: stale.oldToken, seq: 0, name: 'a', kind: 'step', status: 'completed', output: 1 },
      { op: 'complete', run: good.id, token: good.token, output: 'done' },
      { op: 'complete', run: stale.id, token: stale.oldToken, output: 'done' },
    ]);
    assert.deepEqual(refused, [`${stale.id}/${stale.oldToken}`]);
    assert.equal((await run(good.id)).status, 'completed');
    assert.equal((await steps(good.id)).length, 1);
    assert.deepEqual(await snapshot(), before);
  });

  // Last: if the fence is broken, this completes the stale run.
  it('is refused even when the same batch holds the run under its current token', async () => {
    const refused = await apply([
      { op: 'step', run: stale.id, token: stale.newToken, seq: 5, name: 'fresh', kind: 'step', status: 'completed', output: 1 },
      { op: 'complete', run: stale.id, token: stale.oldToken, output: 'from the zombie' },
    ]);
    const r = await run(stale.id);
    assert.equal(r.status, 'running', `the stale complete was applied (refused: ${JSON.stringify(refused)})`);
    assert.equal(r.lease_token, stale.newToken);
    assert.deepEqual(refused, [`${stale.id}/${stale.oldToken}`], 'only the stale lease is refused');
    assert.equal((await steps(stale.id)).find((st) => st.seq === 5)?.status, 'completed', 'the current lease still writes');
  });
});

describe('checkpoint_apply validation', () => {
  it('records a failure under a lowered max_payload_bytes: an error may take up to 64 KiB, an output no more than the limit', async () => {
    const h = await held();
    const error = { name: 'Error', message: 'm'.repeat(3000), stack: 's'.repeat(3000) };
    await sql(`select trellis.setting_set('max_payload_bytes', '1000')`);
    try {
      await assert.rejects(apply([{ op: 'complete', run: h.id, token: h.token, output: 'o'.repeat(1200) }]), { code: 'TR005' });
      await assert.rejects(apply([{ op: 'fail', run: h.id, token: h.token, error: { name: 'Error', message: 'm'.repeat(70_000) } }]), { code: 'TR005' });
      assert.deepEqual(await apply([{ op: 'fail', run: h.id, token: h.token, error }]), []);
    } finally {
      await sql(`select trellis.setting_set('max_payload_bytes', '1048576')`);
    }
    const r = await run(h.id);
    assert.deepEqual([r.status, r.error.message.length], ['failed', 3000]);
  });

  it('refuses a non-array, malformed ops and unknown ops with TR001, writing nothing of the batch', async () => {
    const h = await held();
    const good = { op: 'step', run: h.id, token: h.token, seq: 0, name: 's', kind: 'step', status: 'completed', output: 1 };
    const bad = [
      { run: h.id, token: h.token },
      { op: 'complete', token: h.token },
      { op: 'complete', run: h.id },
      { op: 'explode', run: h.id, token: h.token },
      { ...good, seq: undefined },
      { ...good, seq: -1 },
      { ...good, kind: undefined },
      { ...good, name: undefined },
      { ...good, name: `o'clock` },
    ];
    await assert.rejects(apply({ op: 'complete', run: h.id, token: h.token }), { code: 'TR001' });
    for (const op of bad) await assert.rejects(apply([good, op]), { code: 'TR001' }, JSON.stringify(op));
    assert.deepEqual(await steps(h.id), []);
    assert.equal((await run(h.id)).status, 'running');
  });

  it('refuses an oversized output or error with TR005, writing nothing', async () => {
    const h = await held();
    const big = { blob: 'x'.repeat(5000) };
    await sql(`select trellis.setting_set('max_payload_bytes', '1000')`);
    try {
      await assert.rejects(sql('select trellis.run_complete($1, $2, $3)', [h.id, h.token, big]), { code: 'TR005' });
      // (An error may take up to 64 KiB whatever the limit: a run must be able to record its failure.)
      await assert.rejects(sql('select trellis.run_fail($1, $2, $3)', [h.id, h.token, { blob: 'x'.repeat(70_000) }]), { code: 'TR005' });
      await assert.rejects(recordStep(h, 0, 'big', 'completed', big), { code: 'TR005' });
    } finally {
      await sql(`select trellis.setting_set('max_payload_bytes', '1048576')`);
    }
    assert.equal((await run(h.id)).status, 'running');
    assert.deepEqual(await steps(h.id), []);
  });
});

describe('notifications', () => {
  /** LISTEN on a dedicated connection; resolve with the first payload that matches. */
  async function listen(channel: string) {
    const client = new pg.Client({ connectionString: fx.db.url });
    await client.connect();
    // run_finished is sent only while a session watches (decision 0029).
    await client.query(`listen "${channel}"; select trellis.run_finished_watch()`);
    const payloads: string[] = [];
    client.on('notification', (n) => payloads.push(n.payload ?? ''));
    const next = (match: (payload: string) => boolean) =>
      new Promise<string>((resolve, reject) => {
        const seen = payloads.find(match);
        if (seen !== undefined) return resolve(seen);
        const timer = setTimeout(() => reject(new Error(`no matching notification on ${channel}`)), 5000);
        const onNotification = (n: pg.Notification) => {
          if (n.payload === undefined || !match(n.payload)) return;
          clearTimeout(timer);
          client.off('notification', onNotification);
          resolve(n.payload);
        };
        client.on('notification', onNotification);
      });
    return { next, close: () => client.end() };
  }

  it('run_complete and run_fail notify trellis:run_finished with the run id', async () => {
    const listener = await listen('trellis:run_finished');
    try {
      const a = await held();
      const b = await held();
      await sql('select trellis.run_complete($1, $2, null)', [a.id, a.token]);
      await sql(`select trellis.run_fail($1, $2, '{}')`, [b.id, b.token]);
      assert.equal(await listener.next((p) => p === a.id), a.id);
      assert.equal(await listener.next((p) => p === b.id), b.id);
    } finally {
      await listener.close();
    }
  });

  it('run_start notifies trellis:run_ready with the queue name', async () => {
    const listener = await listen('trellis:run_ready');
    try {
      const { queue } = await pending();
      assert.equal(await listener.next((p) => p === queue), queue);
    } finally {
      await listener.close();
    }
  });
});

describe('checkpoint_apply wait against a finishing child', () => {
  it('a parent parking while its child completes in a concurrent transaction waits for it and ends pending, not stuck waiting', async () => {
    const parent = await held();
    const childId = randomUUID();
    const childQueue = `${parent.queue}-child`;
    await apply([{ op: 'child', run: parent.id, token: parent.token, seq: 0, name: 'c', child: childId, workflow: 'w', queue: childQueue }]);
    const child = (await claimOne(childQueue)) as Held;
    assert.equal(child.id, childId);

    // The child's completion commits only after the parent's wait op has started.
    const t1 = await fx.db.pool.connect();
    try {
      await t1.query('begin');
      await t1.query('select trellis.checkpoint_apply($1)', [JSON.stringify([{ op: 'complete', run: child.id, token: child.token, output: '1' }])]);
      const t2 = await fx.db.pool.connect();
      try {
        const pid = await backendId(t2);
        const parking = t2.query('select trellis.checkpoint_apply($1)',
          [JSON.stringify([{ op: 'wait', run: parent.id, token: parent.token, delay_ms: null, signal: 0 }])]);
        await waitFor(() => lockWaiting(fx.db.pool, pid),
          { what: 'the wait op to block on the finishing child' });
        await t1.query('commit');
        await parking;
      } finally {
        t2.release();
      }
    } finally {
      t1.release();
    }
    assert.equal((await run(parent.id)).status, 'pending', 'woken by the child that finished meanwhile');
  });
});
