/**
 * Local hand-off: a client and a worker on the same pool in one process. A
 * start the worker can take now is leased to it in the start's statement and
 * begins without a NOTIFY or a claim; every other start (no free slot, a
 * caller's transaction, a later runAt, a repeated key, handoff: false, a
 * workflow the worker does not serve) takes the ordinary path. The
 * SIGKILL case (the lease outlives the process) is in test/fault.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import pg from 'pg';
import { z } from 'zod';
import { createClient, type Client } from '../../src/client/client.ts';
import { ValidationError } from '../../src/errors.ts';
import { createWorker, type Worker } from '../../src/worker/worker.ts';
import { defineWorkflow } from '../../src/workflow/define.ts';
import { silentLogger } from '../../src/protocol/logger.ts';
import { useDatabase } from '../helpers/database-fixture.ts';
import { deferred } from '../helpers/engine.ts';
import { backendId, lockWaitersOf } from '../helpers/lock-wait.ts';
import { startProxy, throughProxy } from '../helpers/tcp-proxy.ts';
import { waitFor } from '../helpers/wait.ts';
import { heldQueryPool } from '../helpers/held-query.ts';

const workers: Worker[] = [];
// Registered before useDatabase's after(), so it runs first: every worker stops before the client and the database close.
after(async () => {
  for (const w of workers) await w.stop({ timeout: 1000 });
});
const fx = useDatabase();

/**
 * An uncommitted start of `workflow` with `key` on a connection of its own,
 * so a hand-off start with the same key blocks on the key's lock;
 * `blocked()` resolves once it does, `release()` rolls the holder back.
 */
async function holdKey(workflow: string, key: string): Promise<{ blocked: () => Promise<void>; release: () => Promise<void> }> {
  const holder = await fx.db.pool.connect();
  const holderId = await backendId(holder);
  await holder.query('begin');
  await holder.query('select trellis.run_start($1, $2, $3)', [workflow, '{"n":0}', JSON.stringify({ key })]);
  let released = false;
  return {
    blocked: async () => {
      // Waiting on the holder (on a Citus cluster the wait is on a worker node).
      await waitFor(async () => (await lockWaitersOf(fx.db.pool, holderId)) === 1,
        { what: 'the hand-off start blocked on the key' });
    },
    release: async () => {
      if (released) return;
      released = true;
      try {
        await holder.query('rollback');
      } finally {
        holder.release();
      }
    },
  };
}

async function startWorker(options: Partial<Parameters<typeof createWorker>[0]> & Pick<Parameters<typeof createWorker>[0], 'workflows'>): Promise<Worker> {
  const w = createWorker({ pool: fx.db.pool, pollInterval: 100, logger: silentLogger, purge: false, client: fx.client, ...options });
  workers.push(w);
  await w.start();
  return w;
}

const input = z.object({ n: z.number() });
const row = async (id: string) => (await fx.db.pool.query(
  'select status, attempt, lease_owner, queue from trellis.runs where id = $1', [id])).rows[0];

describe('local hand-off', () => {
  it('begins a started run on the worker in the process without a claim, leased to it, with the stored input', async () => {
    const seen: unknown[] = [];
    const wf = defineWorkflow({ name: 'ho-basic', input: z.object({ b: z.number(), aa: z.number() }) }, async (ctx, value) => {
      seen.push(Object.keys(value));
      return ctx.step('sum', () => value.aa + value.b);
    });
    const w = await startWorker({ workflows: [wf] });
    const claimedBefore = w.stats.claimed;
    const run = await fx.client.start(wf, { b: 1, aa: 2 });
    // Leased to this worker by the start itself (the row is already running or done).
    const r = await row(run.id);
    assert.ok(r.status === 'running' || r.status === 'completed', r.status);
    assert.equal(await run.result({ timeout: '10s' }), 3);
    assert.equal(w.stats.handedOff, 1);
    assert.equal(w.stats.claimed, claimedBefore, 'no claim took it');
    assert.equal((await row(run.id)).attempt, 1);
    // The input as stored (jsonb orders keys), the same object a replay elsewhere would see.
    assert.deepEqual(seen, [['b', 'aa']]);
  });

  it('takes the ordinary path with handoff: false, inside a caller transaction, for a later runAt and for a workflow it does not serve', async () => {
    const wf = defineWorkflow({ name: 'ho-paths', input }, async (ctx, { n }) => ctx.step('double', () => n * 2));
    const other = defineWorkflow({ name: 'ho-other', input }, async (_ctx, { n }) => n);
    const plain = createClient({ pool: fx.db.pool, logger: silentLogger, handoff: false });
    const w = await startWorker({ workflows: [wf], client: plain });
    try {
      const a = await plain.start(wf, { n: 1 });
      assert.equal(await a.result({ timeout: '10s' }), 2);

      const tx = await fx.db.pool.connect();
      let b;
      try {
        await tx.query('begin');
        b = await fx.client.start(wf, { n: 2 }, { tx });
        assert.equal((await tx.query('select status from trellis.runs where id = $1', [b.id])).rows[0].status, 'pending');
        await tx.query('commit');
      } finally {
        tx.release();
      }
      assert.equal(await b.result({ timeout: '10s' }), 4);

      const c = await fx.client.start(wf, { n: 3 }, { runAt: new Date(Date.now() + 300) });
      assert.equal((await row(c.id)).status, 'pending');
      assert.equal(await c.result({ timeout: '10s' }), 6);

      const d = await fx.client.start(other, { n: 4 });
      assert.equal((await row(d.id)).status, 'pending', 'no worker here serves ho-other');
      assert.equal(w.stats.handedOff, 0);
      assert.equal(w.stats.claimed, 3);
      await fx.client.cancel(d.id);
    } finally {
      await plain.close();
    }
  });

  it('hands off only into a free slot: a start with every slot busy stays pending and is claimed later', async () => {
    const gate = deferred();
    const wf = defineWorkflow({ name: 'ho-slots', input }, async (ctx, { n }) => ctx.step('held', async () => (await gate.promise, n)));
    const w = await startWorker({ workflows: [wf], concurrency: 1 });
    const a = await fx.client.start(wf, { n: 1 });
    const b = await fx.client.start(wf, { n: 2 });
    assert.equal(w.stats.handedOff, 1);
    assert.equal((await row(a.id)).status, 'running');
    assert.equal((await row(b.id)).status, 'pending');
    gate.resolve();
    assert.deepEqual(await Promise.all([a.result({ timeout: '10s' }), b.result({ timeout: '10s' })]), [1, 2]);
    assert.equal(w.stats.handedOff, 1);
    assert.equal(w.stats.claimed, 1);
  });

  it('50 concurrent starts on a worker of concurrency 5: never more than 5 bodies at once, each run begun once', async () => {
    let inFlight = 0;
    let most = 0;
    const bodies = new Map<string, number>();
    const wf = defineWorkflow({ name: 'ho-burst', input }, async (ctx, { n }) => ctx.step('work', async ({ runId }) => {
      bodies.set(runId, (bodies.get(runId) ?? 0) + 1);
      most = Math.max(most, ++inFlight);
      // Real work across a few event-loop turns, so bodies overlap when slots allow it.
      for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
      inFlight--;
      return n;
    }));
    const w = await startWorker({ workflows: [wf], concurrency: 5 });
    const runs = await Promise.all(Array.from({ length: 50 }, (_, n) => fx.client.start(wf, { n })));
    const outputs = await Promise.all(runs.map((r) => r.result({ timeout: '20s' })));
    assert.deepEqual(outputs, Array.from({ length: 50 }, (_, n) => n));
    assert.ok(most <= 5, `${most} bodies at once`);
    assert.equal(bodies.size, 50);
    assert.ok([...bodies.values()].every((c) => c === 1), 'every body ran once');
    assert.equal(w.stats.handedOff + w.stats.claimed, 50);
    assert.ok(w.stats.handedOff >= 1 && w.stats.handedOff <= 50);
    const { rows } = await fx.db.pool.query(`select max(attempt)::int as most from trellis.runs where workflow = 'ho-burst'`);
    assert.equal(rows[0].most, 1);
  });

  it('frees the slot when the start leases nothing (a repeated key) or fails (bad input), so the next start is handed off', async () => {
    const wf = defineWorkflow({ name: 'ho-free', input }, async (_ctx, { n }) => n);
    // No poll: a poll claim while the one slot is busy marks a backlog,
    // and until its next claim drains, starts go through the queue (correctly, but
    // this test counts hand-offs).
    const w = await startWorker({ workflows: [wf], concurrency: 1, pollInterval: 3_600_000 });
    const first = await fx.client.start(wf, { n: 1 }, { key: 'same' });
    assert.equal(await first.result({ timeout: '10s' }), 1);
    // result() hears of the end when its commit returns, a moment before the
    // slot's bookkeeping: a start in that moment finds no free slot and goes
    // through the queue (seen on a slow Citus cluster).
    const free = () => waitFor(() => w.activeCount === 0, { what: 'the slot to be free', timeout: 5000 });
    await free();
    const again = await fx.client.start(wf, { n: 2 }, { key: 'same' });
    assert.equal(again.id, first.id);
    // A priority SQL refuses (TR001) after the slot was kept.
    const before = (await fx.db.pool.query('select count(*)::int as n from trellis.runs')).rows[0].n;
    await assert.rejects(fx.client.start(wf, { n: 3 }, { priority: 40_000 }), ValidationError);
    assert.equal((await fx.db.pool.query('select count(*)::int as n from trellis.runs')).rows[0].n, before, 'nothing written');
    await free();
    const next = await fx.client.start(wf, { n: 4 });
    assert.equal(await next.result({ timeout: '10s' }), 4);
    assert.equal(w.stats.handedOff, 2, 'the first and the last start');
    assert.equal(w.stats.claimed, 0);
    await free();
  });

  it('a one-slot worker just started takes every start handed off: one start-up claim, and a hand-off run ending costs no claim', async () => {
    const wf = defineWorkflow({ name: 'ho-idle', input }, async (_ctx, { n }) => n);
    // A second start-up claim (the listener's first connect woke the worker
    // besides start() itself), or a look again at a wake-up gate another
    // worker was closing, found the slot the hand-off kept and marked the
    // worker saturated: the run's end then claimed again, and a start during
    // that claim went through the queue (decision 0015's amendment).
    const w = await startWorker({ workflows: [wf], concurrency: 1, pollInterval: 3_600_000 });
    for (let n = 1; n <= 5; n++) {
      const run = await fx.client.start(wf, { n });
      assert.equal(await run.result({ timeout: '10s' }), n);
      await waitFor(() => w.activeCount === 0, { what: 'the slot to be free', timeout: 5000 });
    }
    assert.equal(w.stats.handedOff, 5, JSON.stringify(w.stats));
    assert.equal(w.stats.claimed, 0);
    assert.equal(w.stats.claims, 1, 'the start-up claim only');
  });

  it('a claim in flight does not hold a hand-off back, and what it brings past the slots left goes back at once: concurrency stays a hard limit', async () => {
    // The worker's claims go through a pool that holds one back while the
    // test says so: a real claim, sent later.
    const held = heldQueryPool(fx.db.url, 'trellis_run_claim', 'send');
    const pool = held.pool;
    let inFlight = 0;
    let most = 0;
    const release = deferred<void>();
    const attempts = new Map<number, number>();
    const wf = defineWorkflow({ name: 'ho-race', input }, async (ctx, { n }) => ctx.step('work', async () => {
      attempts.set(n, ctx.attempt);
      most = Math.max(most, ++inFlight);
      if (n === 1) await release.promise;
      inFlight--;
      return n;
    }));
    const queued = createClient({ pool: fx.db.pool, logger: silentLogger, handoff: false });
    const w = await startWorker({ workflows: [wf], concurrency: 1, pollInterval: 3_600_000, pool });
    try {
      // A start through the queue wakes the worker (NOTIFY); its claim is held.
      held.arm();
      const viaQueue = await queued.start(wf, { n: 2 });
      await held.reached();
      // Meanwhile a start in the process takes the one slot by hand-off.
      const handed = await fx.client.start(wf, { n: 1 });
      assert.equal(w.stats.handedOff, 1);
      // The claim returns the queued run: no slot is left for it.
      held.release();
      await waitFor(() => w.stats.givenBack === 1, { what: 'the claimed run given back' });
      // Released by the worker's committer (its slot stays busy: nothing claims the run again yet).
      await waitFor(async () => (await row(viaQueue.id)).status === 'pending' || undefined, { what: 'the given-back run pending again' });
      // Never executed, so the give-back takes the claim's attempt back.
      assert.equal((await row(viaQueue.id)).attempt, 0);
      release.resolve();
      assert.deepEqual(await Promise.all([handed.result({ timeout: '10s' }), viaQueue.result({ timeout: '10s' })]), [1, 2]);
      assert.equal(most, 1, 'never two bodies at once on a worker of concurrency 1');
      assert.equal(w.stats.claimed, 1, 'the given-back run, claimed again once the slot was free');
      assert.deepEqual([attempts.get(1), attempts.get(2)], [1, 1], 'the given-back run executes as attempt 1');
    } finally {
      release.resolve();
      held.release();
      await w.stop({ timeout: 1000 });
      await queued.close();
      await pool.end();
    }
  });

  it('a stopping worker takes no hand-off; a second worker on the pool that serves the workflow does', async () => {
    const wf = defineWorkflow({ name: 'ho-two', input }, async (_ctx, { n }) => n + 1);
    const a = await startWorker({ workflows: [wf] });
    const b = await startWorker({ workflows: [wf] });
    await a.stop();
    const run = await fx.client.start(wf, { n: 1 });
    assert.equal(await run.result({ timeout: '10s' }), 2);
    assert.equal(a.stats.handedOff, 0);
    assert.equal(b.stats.handedOff, 1);
  });

  it('a hand-off start that waited on the key lock gets its whole lease, counted from when its insert went through', async () => {
    const gate = deferred<void>();
    const wf = defineWorkflow({ name: 'ho-late', input }, async (ctx, { n }) => ctx.step('held', async () => {
      await gate.promise;
      return n;
    }));
    const w = await startWorker({ workflows: [wf], leaseDuration: '30s' });
    const hold = await holdKey('ho-late', 'late');
    try {
      const started = fx.client.start(wf, { n: 5 }, { key: 'late' });
      await hold.blocked();
      // The wait itself is the case under test: hold the key for 1.5 s.
      await new Promise((r) => setTimeout(r, 1500));
      await hold.release();
      const run = await started;
      const r = (await fx.db.pool.query(
        `select status, lease_owner, extract(epoch from lease_expires_at - created_at) as lease_s from trellis.runs where id = $1`, [run.id])).rows[0];
      assert.equal(r.status, 'running');
      assert.equal(r.lease_owner, w.id);
      assert.ok(Number(r.lease_s) >= 31.4, `lease ${r.lease_s} s after the start's transaction began: the 1.5 s wait counts on top of 30 s`);
      gate.resolve();
      assert.equal(await run.result({ timeout: '10s' }), 5);
      assert.equal(w.stats.handedOff, 1);
    } finally {
      gate.resolve();
      await hold.release();
    }
  });

  it('a start in flight when its worker stops: stop waits for it, the run is given back and another worker completes it', async () => {
    const wf = defineWorkflow({ name: 'ho-inflight', input }, async (_ctx, { n }) => n * 3);
    const a = await startWorker({ workflows: [wf], leaseDuration: '30s' });
    // An uncommitted start with the same key holds the hand-off's insert on the key's lock.
    const hold = await holdKey('ho-inflight', 'in-flight');
    try {
      const started = fx.client.start(wf, { n: 2 }, { key: 'in-flight' });
      await hold.blocked();
      const stopping = a.stop({ timeout: '10s' });
      await hold.release();
      const run = await started;
      await stopping;
      assert.equal(a.stats.handedOff, 1, 'adopted while stopping');
      const r = await row(run.id);
      assert.equal(r.status, 'pending', 'given back at once, not left leased');
      assert.equal(r.lease_owner, null);
      const b = await startWorker({ workflows: [wf] });
      assert.equal(await run.result({ timeout: '10s' }), 6);
      assert.equal(b.stats.claimed, 1);
    } finally {
      await hold.release();
    }
  });

  it('stop() waits for a kept slot until it is settled, or until its timeout', async () => {
    const wf = defineWorkflow({ name: 'ho-kept', input }, async (_ctx, { n }) => n);
    const a = await startWorker({ workflows: [wf] });
    const kept = fx.client.localHandoff.reserve('ho-kept', '1', undefined);
    assert.ok(kept, 'a running worker with free slots keeps one');
    let t = performance.now();
    const stopping = a.stop({ timeout: '10s' });
    assert.equal(fx.client.localHandoff.reserve('ho-kept', '1', undefined), undefined, 'a stopping worker keeps none');
    kept.cancel();
    await stopping;
    assert.ok(performance.now() - t < 10_000, 'settling the slot let the stop finish');

    const b = await startWorker({ workflows: [wf] });
    const never = fx.client.localHandoff.reserve('ho-kept', '1', undefined);
    assert.ok(never);
    t = performance.now();
    await b.stop({ timeout: '300ms' });
    assert.ok(performance.now() - t >= 290, 'the stop waited for the slot up to its timeout');
    never.cancel();
  });

  it('tells result() in the process of the end after it committed', async () => {
    const wf = defineWorkflow({ name: 'ho-finish', input }, async (_ctx, { n }) => n * 10);
    await startWorker({ workflows: [wf] });
    const ended = deferred<{ id: string; status: string }>();
    const off = fx.client.localHandoff.onFinish((id) => {
      void fx.db.pool.query('select status from trellis.runs where id = $1', [id]).then((r) => ended.resolve({ id, status: r.rows[0].status }));
    });
    try {
      const run = await fx.client.start(wf, { n: 5 });
      assert.deepEqual(await ended.promise, { id: run.id, status: 'completed' });
      assert.equal(await run.result({ timeout: '10s' }), 50);
    } finally {
      off();
    }
  });

  /** A pool that counts result()'s reads of a run's outcome. */
  class CountingPool extends pg.Pool {
    outcomeReads = 0;
    override query(...args: any[]): any {
      const text = typeof args[0] === 'string' ? args[0] : args[0]?.text;
      if (typeof text === 'string' && text.includes('select status, output, error from trellis.runs')) this.outcomeReads++;
      return (super.query as (...a: any[]) => any)(...args);
    }
  }

  /** A client on `pool` with a worker serving `wf` joined to it; the caller closes both. */
  async function pairOn(pool: pg.Pool, wf: Parameters<typeof createWorker>[0]['workflows'][number], listenUrl?: string) {
    const client = createClient({ pool, logger: silentLogger, resultPollInterval: '1h', listenUrl });
    const worker = createWorker({ pool: fx.db.pool, pollInterval: 100, logger: silentLogger, purge: false, client, workflows: [wf] });
    await worker.start();
    return { client, worker, close: async () => { await worker.stop({ timeout: 1000 }); await client.close(); } };
  }

  it('a hand-off start whose reply is lost after its commit: the worker gives the run back at once, it does not wait out its lease', async () => {
    const wf = defineWorkflow({ name: 'ho-lost-reply', input }, async (ctx, { n }) => ctx.step('work', () => n * 2));
    const proxy = await startProxy({ host: '127.0.0.1', port: Number(new URL(fx.db.url).port) });
    const pool = new pg.Pool({ connectionString: throughProxy(fx.db.url, proxy.port), max: 1 });
    pool.on('error', () => undefined);
    const client = createClient({ pool, logger: silentLogger, resultPollInterval: '1h' });
    // A lease of an hour: waiting it out would outlast the test many times over.
    const worker = createWorker({ pool: fx.db.pool, pollInterval: 100, logger: silentLogger, purge: false, client, workflows: [wf], leaseDuration: '1h' });
    await worker.start();
    const direct = createClient({ pool: fx.db.pool, logger: silentLogger });
    try {
      await client.start(wf, { n: 0 }, { key: 'warm-up' }); // the pool's connection is up (and registered the workflow)
      // keyPolicy reuse: a start not safe to make again rejects; the default ('return') is made again
      // on a new connection and gets the run the lost try committed.
      for (const [key, keyPolicy] of [['lost-reply-reuse', 'reuse'], ['lost-reply', 'return']] as const) {
        for (const p of proxy.pipes) p.dropReplies = true;
        const start = client.start(wf, { n: 21 }, { key, keyPolicy });
        start.catch(() => undefined);
        // The start committed (its run is there, leased to the worker), but its reply never came: cut the connection.
        const id = await waitFor(async () => (await fx.db.pool.query(`select id from trellis.runs where key = $1`, [key])).rows[0]?.id as string | undefined,
          { what: 'the start committed' });
        for (const p of proxy.pipes) p.cut();
        if (keyPolicy === 'reuse') await assert.rejects(start, (e: Error & { retryable?: boolean | undefined }) => e.retryable === true);
        else assert.equal((await start).id, id, 'made again: the key\'s run');
        assert.equal(await direct.result(id, { timeout: '20s' }), 42, `${keyPolicy}: the worker gave the run back at once`);
      }
    } finally {
      await direct.close();
      await worker.stop({ timeout: 1000 });
      await client.close();
      await pool.end();
      await proxy.close();
    }
  });

  it('result() of a run the worker in the process executes reads nothing: not when it begins waiting, not when the run completes; the output is what a read gives', async () => {
    const gates = new Map<number, ReturnType<typeof deferred<void>>>();
    const wf = defineWorkflow({ name: 'ho-local-result', input }, async (ctx, { n }) => {
      await ctx.step('gate', () => gates.get(n)?.promise ?? null);
      return { b: n, aa: [1e21, 1.5e-7, 'é'], a: { z: null, y: true }, 10: 'ten', 2: 'two', é: 0.1, '': {} };
    });
    const pool = new CountingPool({ connectionString: fx.db.url, max: 4 });
    // The client's LISTEN (and its result watch) goes through a proxy that
    // is frozen once it is up: the run_finished NOTIFY (which makes a waiter
    // read the row if it comes first) never arrives, so only the worker's
    // news can end the wait.
    const proxy = await startProxy({ host: '127.0.0.1', port: Number(new URL(fx.db.url).port) });
    const pair = await pairOn(pool, wf, throughProxy(fx.db.url, proxy.port));
    try {
      // The first result() connects the listener and learns the jsonb parser.
      await (await pair.client.start(wf, { n: 1 })).result({ timeout: '10s' });
      assert.equal(proxy.of('trellis-client-listener').length, 1, 'the client\'s listener goes through the proxy');
      for (const p of proxy.pipes) p.frozen = true;
      const before = pool.outcomeReads;
      const gate = deferred<void>();
      gates.set(3, gate);
      const run = await pair.client.start(wf, { n: 3 });
      const result = run.result({ timeout: '10s' });
      // Past the wait's first ticks (its listener and parser are ready): it has joined the run's waiters.
      await new Promise((r) => setImmediate(r));
      assert.equal(pool.outcomeReads, before, 'no read when the wait began: the run is executing here');
      gate.resolve();
      const output = await result;
      assert.equal(pool.outcomeReads, before, 'the completion was not read back');
      const stored = await pair.client.get(run.id);
      assert.deepEqual(output, stored?.output);
      assert.equal(JSON.stringify(output), JSON.stringify(stored?.output), 'the same key order as the read');
    } finally {
      await pair.close();
      await pool.end();
      await proxy.close();
    }
  });

  it('a waiter on a run whose execution here parks it (a sleep) reads the row when that execution ends, and gets the result after the run resumes', async () => {
    const wf = defineWorkflow({ name: 'ho-local-park', input }, async (ctx, { n }) => {
      await ctx.sleep('nap', '50ms');
      return ctx.step('after', () => n + 1);
    });
    const pool = new CountingPool({ connectionString: fx.db.url, max: 4 });
    const pair = await pairOn(pool, wf);
    try {
      const run = await pair.client.start(wf, { n: 41 });
      assert.equal(await run.result({ timeout: '10s' }), 42);
      assert.ok(pool.outcomeReads >= 1, 'the parked run was read when its first execution ended');
    } finally {
      await pair.close();
      await pool.end();
    }
  });

  it('a waiter that skipped its first read (the run was executing here) reads the row when that execution ends without finishing the run, even with no NOTIFY', async () => {
    const gate = deferred<void>();
    const wf = defineWorkflow({ name: 'ho-local-elsewhere', input }, async (ctx, { n }) => {
      await ctx.step('gate', () => (n === 5 ? gate.promise : null));
      return n;
    });
    const proxy = await startProxy({ host: '127.0.0.1', port: Number(new URL(fx.db.url).port) });
    const pair = await pairOn(fx.db.pool, wf, throughProxy(fx.db.url, proxy.port));
    try {
      // The first result() connects the listener; then it is frozen.
      assert.equal(await (await pair.client.start(wf, { n: 0 })).result({ timeout: '10s' }), 0);
      for (const p of proxy.pipes) p.frozen = true;
      const run = await pair.client.start(wf, { n: 5 });
      // The run ends under the same lease from elsewhere (as if this
      // execution had stalled and another had finished it).
      const [{ token }] = (await fx.db.pool.query('select lease_token as token from trellis.runs where id = $1', [run.id])).rows;
      await fx.db.pool.query(`select trellis.run_complete($1, $2, '"from elsewhere"')`, [run.id, token]);
      const result = run.result({ timeout: '10s' });
      await new Promise((r) => setImmediate(r));
      // This execution's checkpoint is refused; its end makes the waiter read.
      gate.resolve();
      assert.equal(await result, 'from elsewhere');
    } finally {
      await pair.close();
      await proxy.close();
    }
  });

  it('a local completion goes through the pool\'s own jsonb parser, given PostgreSQL\'s text of the output', async () => {
    const wf = defineWorkflow({ name: 'ho-local-parser', input }, async (_ctx, { n }) => ({ n, big: 2 ** 70, small: 5e-324, k: { bb: 1, a: 2 } }));
    // Objects remember the text they were parsed from (not enumerable, so inputs still validate).
    const parse = (text: string) => {
      const value = JSON.parse(text);
      if (value && typeof value === 'object') Object.defineProperty(value, 'parsedFrom', { value: text });
      return value;
    };
    const pool = new CountingPool({
      connectionString: fx.db.url, max: 4,
      types: { getTypeParser: ((oid: number, format?: string) => oid === 3802 ? parse : pg.types.getTypeParser(oid, format as 'text')) as never },
    });
    const pair = await pairOn(pool, wf);
    try {
      const run = await pair.client.start(wf, { n: 4 });
      const output = await run.result({ timeout: '10s' }) as { parsedFrom?: string | undefined };
      const [{ text }] = (await fx.db.pool.query('select output::text as text from trellis.runs where id = $1', [run.id])).rows;
      assert.equal(output.parsedFrom, text);
      assert.ok(pool.outcomeReads <= 1, `at most the one read before it completed (${pool.outcomeReads})`);
    } finally {
      await pair.close();
      await pool.end();
    }
  });

  it('a client the worker did not join is not paired with it, even on the same pool', async () => {
    const wf = defineWorkflow({ name: 'ho-pools', input }, async (_ctx, { n }) => n);
    const w = await startWorker({ workflows: [wf] });
    const other = createClient({ pool: fx.db.pool, logger: silentLogger });
    try {
      const run = await other.start(wf, { n: 7 });
      assert.equal(await run.result({ timeout: '10s' }), 7);
      assert.equal(w.stats.handedOff, 0);
      await waitFor(() => w.stats.claimed === 1, { what: 'the claim' });
    } finally {
      await other.close();
    }
  });

  it('a worker without a client takes no hand-off: the start goes through the queue', async () => {
    const wf = defineWorkflow({ name: 'ho-unjoined', input }, async (_ctx, { n }) => n + 1);
    const w = await startWorker({ workflows: [wf], client: undefined });
    const run = await fx.client.start(wf, { n: 1 });
    assert.equal(await run.result({ timeout: '10s' }), 2);
    assert.equal(w.stats.handedOff, 0);
    assert.equal(w.stats.claimed, 1);
  });

  it('createWorker({ client }) refuses anything but a client, changing nothing', () => {
    const wf = defineWorkflow({ name: 'ho-bad-client', input }, async (_ctx, { n }) => n);
    for (const bad of [{}, { localHandoff: {} }, null, 'client']) {
      assert.throws(() => createWorker({ pool: fx.db.pool, workflows: [wf], client: bad as never }),
        (e) => e instanceof ValidationError && /client must be a Client/.test(e.message));
    }
  });
});
