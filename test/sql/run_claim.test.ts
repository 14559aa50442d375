import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import pg from 'pg';
import { testPool } from '../helpers/db.ts';
import { useFreshDatabase } from '../helpers/database-fixture.ts';
import { waitFor } from '../helpers/wait.ts';
import { runClaim } from '../../src/db/runs.ts';

interface Claimed {
  id: string;
  workflow: string;
  version: string;
  attempt: number;
  failures: number;
  lease_token: string;
  lease_expires_at: Date;
  history: Record<string, unknown>[] | null;
}

interface ClaimOptions {
  limit?: number | null | undefined;
  lease?: string | null | undefined;
  served?: [string, string][] | undefined;
  on?: pg.Pool | undefined;
}

const fx = useFreshDatabase({
  setUp: (db) => db.pool.query('select trellis.workflow_register($1)', [
    JSON.stringify([
      { name: 'w', version: '1', queue: 'default' },
      { name: 'w', version: '2', queue: 'default' },
      { name: 'other', version: '1', queue: 'default' },
    ]),
  ]),
});

async function start(queue: string, options: { workflow?: string | undefined; version?: string | undefined; priority?: number | undefined; run_at?: string | undefined } = {}) {
  const { workflow = 'w', version = '1', ...rest } = options;
  const { rows } = await fx.db.pool.query('select trellis.run_start($1, $2, $3) as id', [
    workflow,
    '{}',
    JSON.stringify({ version, queue, ...rest }),
  ]);
  return rows[0].id as string;
}

async function claim(worker: string, queues: string[], options: ClaimOptions = {}): Promise<Claimed[]> {
  const { limit = 10, lease = '30 seconds', served = [['w', '1']], on = fx.db.pool } = options;
  const { rows } = await on.query<Claimed>('select * from trellis.run_claim($1, $2, $3, $4, $5, $6::interval)', [
    worker,
    queues,
    served.map((s) => s[0]),
    served.map((s) => s[1]),
    limit,
    lease,
  ]);
  return rows;
}

/** Complete claimed runs so no lease outlives its test (run_next_due reads leases of every queue). */
async function finish(runs: readonly Pick<Claimed, 'id' | 'lease_token'>[]) {
  if (!runs.length) return;
  const ops = runs.map((r) => ({ op: 'complete', run: r.id, token: r.lease_token, output: null }));
  const refused = await fx.db.pool.query('select * from trellis.checkpoint_apply($1)', [JSON.stringify(ops)]);
  assert.equal(refused.rowCount, 0, 'cleanup: every claimed run is still held');
}

const ids = (runs: readonly { id: string }[]) => runs.map((r) => r.id).sort();

describe('run_claim', () => {
  it('commits asynchronously only when asked (p_async_commit), and only the transaction it runs in', async () => {
    const c = await fx.db.pool.connect();
    try {
      const setting = async () => (await c.query('show synchronous_commit')).rows[0].synchronous_commit;
      await start('async-commit');
      await c.query('begin');
      const first = await c.query(`select * from trellis.run_claim('w1', '{async-commit}', '{w}', '{1}', 10, '30 seconds')`);
      assert.equal(await setting(), 'on', 'by default a claim commits like any transaction');
      const claimed = await c.query(`select * from trellis.run_claim('w1', '{async-commit}', '{w}', '{1}', 10, '30 seconds', true)`);
      assert.equal(await setting(), 'off', 'inside the claiming transaction');
      await c.query('commit');
      assert.equal(await setting(), 'on', 'the next transaction is synchronous again');
      await finish([...first.rows, ...claimed.rows]);
    } finally {
      c.release();
    }
  });

  it('claims only due pending runs of the served (workflow, version) pairs in the given queues', async () => {
    const due = await start('serve');
    const v2 = await start('serve', { version: '2' });
    await start('serve', { run_at: '2999-01-01T00:00:00Z' });
    await start('elsewhere');
    await start('serve', { workflow: 'other' });

    const got = await claim('w1', ['serve']);
    assert.deepEqual(ids(got), [due]);
    assert.deepEqual(await claim('w1', ['serve']), [], 'a running run is not claimed again');

    // Pairs are matched position by position, not as a cross product: (w, 2) and (other, 9).
    const paired = await claim('w2', ['serve'], { served: [['w', '2'], ['other', '9']] });
    assert.deepEqual(ids(paired), [v2]);
    await finish([...got, ...paired]);
  });

  it('tries queues in the order given, then higher priority first, then earlier due time', async () => {
    const r1 = await start('ord-a', { run_at: '2020-01-01T00:00:00Z' });
    const r2 = await start('ord-a', { run_at: '2020-01-02T00:00:00Z' });
    const r3 = await start('ord-a', { run_at: '2020-01-03T00:00:00Z', priority: 5 });
    const r4 = await start('ord-a', { run_at: '2019-01-01T00:00:00Z', priority: -1 });
    const r5 = await start('ord-b', { run_at: '2020-01-05T00:00:00Z' });
    const order: Claimed[] = [];
    for (let i = 0; i < 6; i++) order.push(...(await claim('w1', ['ord-b', 'ord-a'], { limit: 1 })));
    assert.deepEqual(order.map((r) => r.id), [r5, r3, r1, r2, r4]);
    await finish(order);
  });

  it('claims at most the limit, carrying what is left over to the next queue', async () => {
    const a = await Promise.all(Array.from({ length: 5 }, () => start('lim-a')));
    const b = await Promise.all(Array.from({ length: 3 }, () => start('lim-b')));
    const first = await claim('w1', ['lim-a', 'lim-b'], { limit: 4 });
    assert.equal(first.length, 4);
    assert.ok(first.every((r) => a.includes(r.id)), 'the first queue is drained first');
    const second = await claim('w1', ['lim-a', 'lim-b'], { limit: 4 });
    assert.equal(second.length, 4);
    assert.deepEqual(ids([...first, ...second]), [...a, ...b].sort());
    assert.deepEqual(await claim('w1', ['lim-a', 'lim-b'], { limit: 4 }), []);
    await finish([...first, ...second]);
  });

  it('returns a lease token that is stored on the run with the worker as owner', async () => {
    const id = await start('lease');
    const [got] = await claim('worker-x', ['lease'], { lease: '30 seconds' });
    assert.ok(got);
    assert.equal(got.id, id);
    assert.equal(got.attempt, 1);
    assert.equal(got.failures, 0);
    assert.match(got.lease_token, /^[0-9a-f-]{36}$/);
    const { rows } = await fx.db.pool.query(
      `select status, lease_token, lease_owner, lease_expires_at, extract(epoch from lease_expires_at - started_at)::float8 as lease, attempt
         from trellis.runs where id = $1`,
      [id],
    );
    assert.equal(rows[0].status, 'running');
    assert.equal(rows[0].lease_token, got.lease_token);
    assert.equal(rows[0].lease_owner, 'worker-x');
    assert.equal(rows[0].attempt, 1);
    assert.equal(rows[0].lease_expires_at.getTime(), got.lease_expires_at.getTime());
    assert.equal(rows[0].lease, 30);
    await finish([got]);
  });

  it('refuses a limit outside 1-1000 or a lease under 1 second with TR001 and claims nothing', async () => {
    const id = await start('bad');
    for (const limit of [0, -1, 1001, null]) {
      await assert.rejects(claim('w1', ['bad'], { limit }), { code: 'TR001' }, `limit ${limit}`);
    }
    for (const lease of ['999 milliseconds', '0', '-5 seconds', null]) {
      await assert.rejects(claim('w1', ['bad'], { lease }), { code: 'TR001' }, `lease ${lease}`);
    }
    const { rows } = await fx.db.pool.query('select status from trellis.runs where id = $1', [id]);
    assert.equal(rows[0].status, 'pending');
  });

  it('gives each of 300 runs to exactly one of two concurrent claimers, and all of them', async () => {
    await fx.db.pool.query(
      `select trellis.run_start('w', '{}', '{"queue":"race","version":"1"}') from generate_series(1, 300)`,
    );
    const pools = [0, 1].map(() => testPool({ connectionString: fx.db.url, max: 2 }));
    try {
      const drain = async (pool: pg.Pool, worker: string) => {
        const got: Claimed[] = [];
        for (;;) {
          const batch = await claim(worker, ['race'], { limit: 7, on: pool });
          if (!batch.length) return got;
          got.push(...batch);
        }
      };
      const [a, b] = await Promise.all([drain(pools[0] as pg.Pool, 'racer-a'), drain(pools[1] as pg.Pool, 'racer-b')]);
      const all = [...(a ?? []), ...(b ?? [])];
      assert.equal(new Set(all.map((r) => r.id)).size, all.length, 'no run was claimed twice');
      assert.equal(all.length, 300);
      assert.ok(all.every((r) => r.attempt === 1));
      const { rows } = await fx.db.pool.query(
        `select count(*)::int as n from trellis.runs where queue = 'race' and status = 'running'`,
      );
      assert.equal(rows[0].n, 300);
      await finish(all);
    } finally {
      await Promise.all(pools.map((p) => p.end()));
    }
  });

  it('makes a run whose lease expired claimable by another worker with a new token and the next attempt', async () => {
    const id = await start('expire');
    const [first] = await claim('worker-a', ['expire'], { lease: '1 second' });
    assert.equal(first?.id, id);
    assert.deepEqual(await claim('worker-b', ['expire']), [], 'not claimable while the lease holds');

    const [second] = await waitFor(
      async () => {
        const got = await claim('worker-b', ['expire']);
        return got.length ? got : undefined;
      },
      { timeout: 5000, what: 'the expired lease to be reclaimed' },
    );
    assert.equal(second?.id, id);
    assert.notEqual(second?.lease_token, first?.lease_token);
    assert.equal(second?.attempt, 2);
    const { rows } = await fx.db.pool.query('select lease_owner, lease_token from trellis.runs where id = $1', [id]);
    assert.equal(rows[0].lease_owner, 'worker-b');
    assert.equal(rows[0].lease_token, second?.lease_token);
    await finish([second as Claimed]);
  });

  it('makes a waiting run whose timer is due pending and claims it in the same call; one whose timer is not due stays waiting', async () => {
    const due = await start('timers');
    const later = await start('timers');
    const held = await claim('worker-t', ['timers']);
    assert.deepEqual(ids(held), [due, later].sort());
    const token = (id: string) => (held.find((r) => r.id === id) as Claimed).lease_token;
    // Both wait on a timer: one due in 20 ms, one in an hour.
    await fx.db.pool.query('select * from trellis.checkpoint_apply($1)', [JSON.stringify([
      { op: 'wait', run: due, token: token(due), delay_ms: 20, signal: 0, seen_cancel: false },
      { op: 'wait', run: later, token: token(later), delay_ms: 3_600_000, signal: 0, seen_cancel: false },
    ])]);
    const status = async (id: string) => (await fx.db.pool.query('select status from trellis.runs where id = $1', [id])).rows[0].status;
    assert.equal(await status(due), 'waiting');
    const [woken] = await waitFor(async () => {
      const got = await claim('worker-t', ['timers']);
      return got.length ? got : undefined;
    }, { timeout: 5000, what: 'the due timer to be claimed' });
    assert.equal(woken?.id, due);
    assert.equal(woken?.attempt, 2);
    assert.equal(await status(later), 'waiting');
    const { rows } = await fx.db.pool.query(
      `select body->>'reason' as reason from trellis.events where run_id = $1 and kind = 'resumed'`, [due]);
    assert.deepEqual(rows.map((r) => r.reason), ['timer']);
    await finish([woken as Claimed]);
    await fx.db.pool.query(`select trellis.run_cancel($1, 'test over')`, [later]);
  });

  it('returns the step history in seq order for a run that has steps, and null for one without', async () => {
    const id = await start('hist');
    const [first] = await claim('w1', ['hist']);
    assert.ok(first);
    assert.equal(first.history, null);
    await fx.db.pool.query(`select trellis.step_record($1, $2, 1, 'ship', 'retrying', null, '{"message":"down"}', 2)`, [
      id,
      first.lease_token,
    ]);
    await fx.db.pool.query(`select trellis.step_record($1, $2, 0, 'charge', 'completed', '{"ok":true}', null, 1, 'step')`, [
      id,
      first.lease_token,
    ]);
    await fx.db.pool.query('select trellis.run_release($1, $2)', [id, first.lease_token]);

    const [again] = await claim('w1', ['hist']);
    assert.equal(again?.id, id);
    assert.deepEqual(again?.history, [
      { seq: 0, name: 'charge', kind: 'step', status: 'completed', output: { ok: true }, error: null, attempts: 1 },
      { seq: 1, name: 'ship', kind: 'step', status: 'retrying', output: null, error: { message: 'down' }, attempts: 2 },
    ]);
    await finish([again as Claimed]);
  });
});

describe('run_next_due', () => {
  const nextDue = async (queues: string[], served: [string, string][] = [['w', '1']]) =>
    (await fx.db.pool.query('select trellis.run_next_due($1, $2, $3) as at', [queues, served.map((s) => s[0]), served.map((s) => s[1])]))
      .rows[0].at as Date | null;
  const noLeases = async () =>
    assert.equal((await fx.db.pool.query(`select count(*)::int as n from trellis.runs where status = 'running'`)).rows[0].n, 0);

  it('returns the earliest run_at of the pending runs in the given queues', async () => {
    await noLeases();
    await start('nd-a', { run_at: '2100-01-02T00:00:00Z' });
    await start('nd-a', { run_at: '2100-03-01T00:00:00Z' });
    await start('nd-b', { run_at: '2100-01-01T00:00:00Z' });
    await start('nd-c', { run_at: '2099-01-01T00:00:00Z' });
    assert.equal((await nextDue(['nd-a']))?.toISOString(), '2100-01-02T00:00:00.000Z');
    assert.equal((await nextDue(['nd-a', 'nd-b']))?.toISOString(), '2100-01-01T00:00:00.000Z');
  });

  it('ignores pending runs of workflow versions the caller does not serve', async () => {
    await noLeases();
    await start('nd-v', { version: '2', run_at: '2000-01-01T00:00:00Z' });
    await start('nd-v', { run_at: '2100-05-01T00:00:00Z' });
    assert.equal((await nextDue(['nd-v']))?.toISOString(), '2100-05-01T00:00:00.000Z');
    assert.equal((await nextDue(['nd-v'], [['w', '2']]))?.toISOString(), '2000-01-01T00:00:00.000Z');
  });

  it('returns the earliest run_at across priorities, not the first run in claim order', async () => {
    await noLeases();
    // Claim order is priority first: the earliest run is the lowest priority's.
    await start('nd-p', { priority: 5, run_at: '2100-07-01T00:00:00Z' });
    await start('nd-p', { priority: 5, run_at: '2100-06-01T00:00:00Z' });
    await start('nd-p', { priority: 0, run_at: '2100-04-01T00:00:00Z' });
    await start('nd-p', { priority: -3, run_at: '2100-02-01T00:00:00Z' });
    await start('nd-p', { priority: -3, run_at: '2100-03-01T00:00:00Z' });
    assert.equal((await nextDue(['nd-p']))?.toISOString(), '2100-02-01T00:00:00.000Z');
  });

  it('returns null when nothing is pending in the queues and no lease is held', async () => {
    await noLeases();
    assert.equal(await nextDue(['nd-empty']), null);
  });

  it('returns a held lease expiry when it comes before any pending run', async () => {
    await start('nd-lease');
    const [held] = await claim('w1', ['nd-lease'], { lease: '1 hour' });
    assert.ok(held);
    assert.equal((await nextDue(['nd-a']))?.getTime(), held.lease_expires_at.getTime());
    await finish([held]);
  });
});

describe('runClaim (the worker\'s wrapper of run_claim)', () => {
  it('returns every column of run_claim but lease_expires_at, which the worker does not read', async () => {
    const id = await start('claim-columns');
    const runs = await runClaim(fx.db.pool, { worker: 'columns-worker', queues: ['claim-columns'], served: [{ name: 'w', version: '1' }], limit: 5, leaseMs: 30_000 });
    assert.deepEqual(runs.map((r) => r.id), [id]);
    const { rows } = await fx.db.pool.query<{ name: string }>(
      `select a.name from pg_catalog.pg_proc p
         cross join lateral unnest(p.proargnames, p.proargmodes::text[]) as a(name, mode)
        where p.oid = 'trellis.run_claim'::regproc and a.mode = 't'`);
    const columns = rows.map((r) => r.name).filter((n) => n !== 'lease_expires_at').sort();
    assert.deepEqual(Object.keys(runs[0] ?? {}).sort(), columns);
    assert.ok(runs[0]?.now instanceof Date, 'the engine time is parsed');
  });
});
