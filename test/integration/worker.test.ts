import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { z } from 'zod';
import { CancelledError, LeaseLostError, NonRetryableError, TimeoutError, ValidationError, WorkflowFailedError } from '../../src/errors.ts';
import { resolveWorkerOptions } from '../../src/worker/options.ts';
import { createWorker } from '../../src/worker/worker.ts';
import { defineWorkflow } from '../../src/workflow/define.ts';
import { silentLogger } from '../../src/protocol/logger.ts';
import { useDatabase } from '../helpers/database-fixture.ts';
import { deferred } from '../helpers/engine.ts';
import { waitFor } from '../helpers/wait.ts';

const fx = useDatabase();

const worker = (workflows: Parameters<typeof createWorker>[0]['workflows'], extra: Partial<Parameters<typeof createWorker>[0]> = {}) =>
  createWorker({ pool: fx.db.pool, workflows, pollInterval: 100, logger: silentLogger, ...extra });

const input = z.object({ tag: z.string() });

describe('worker', () => {
  it('refuses bad options with a ValidationError naming the option, before connecting, and freezes the resolved ones', () => {
    assert.ok(Object.isFrozen(resolveWorkerOptions({ workflows: [defineWorkflow({ name: 'frozen', input }, async () => null)] })));
    const wf = defineWorkflow({ name: 'opts', input }, async () => null);
    for (const [extra, what] of [
      [{ concurrency: 0 }, /concurrency/],
      [{ claimBatch: 1001 }, /claimBatch/],
      [{ leaseDuration: 500 }, /leaseDuration/],
      [{ listenerHealthCheck: 50 }, /listenerHealthCheck/],
      [{ purge: { batch: 0 } }, /purge\.batch/],
      [{ purge: { interval: 1 } }, /purge\.interval/],
      // Bounds shared with SQL: these used to start, then fail every claim or hang stop().
      [{ leaseDuration: '2 days' }, /leaseDuration must be from 1s to 1 day/],
      [{ maxBatch: 0 }, /maxBatch must be an integer from 1/],
      [{ maxBatch: 1.5 }, /maxBatch/],
      [{ concurrency: '5' }, /concurrency must be an integer/],
      [{ pollInterval: 0 }, /pollInterval/],
      [{ id: '' }, /id must be a string of 1-200/],
      [{ id: 'x'.repeat(201) }, /id must be a string of 1-200/],
      [{ workflows: [] }, /at least one workflow/],
      [{ workflows: [wf, wf] }, /registered twice/],
    ] as const) {
      assert.throws(() => worker([wf], extra as Partial<Parameters<typeof createWorker>[0]>), (e: unknown) => e instanceof ValidationError && what.test(e.message), String(what));
    }
  });

  it('stops a run whose code changed under it with NonDeterminismError, visible in SQL, history intact', async () => {
    const gate = deferred();
    const v1 = defineWorkflow({ name: 'nd', input }, async (ctx) => {
      await ctx.step('charge', () => 'charged');
      await ctx.step('wait', () => gate.promise.then(() => { throw new Error('retry me'); }), { retry: { initialDelay: 50 } });
      return 'v1';
    });
    const w1 = worker([v1]);
    await w1.start();
    const run = await fx.client.start(v1, { tag: 'nd' });
    await waitFor(async () => (await fx.client.history(run.id)).some((s) => s.name === 'charge' && s.status === 'completed'),
      { what: 'first checkpoint' });
    gate.resolve();
    await waitFor(async () => (await fx.client.get(run.id))?.status === 'pending', { what: 'retry scheduled' });
    await w1.stop();
    // Same name and version, different first step: a deploy that should have bumped the version.
    const changed = defineWorkflow({ name: 'nd', input }, async (ctx) => {
      await ctx.step('refund', () => 'refunded');
      return 'changed';
    });
    const w2 = worker([changed]);
    await w2.start();
    await assert.rejects(fx.client.result(run.id, { timeout: '10s' }), WorkflowFailedError);
    await w2.stop();
    const row = (await fx.db.pool.query(`select status, error->>'code' as code, error->>'message' as message from trellis.runs where id = $1`, [run.id])).rows[0];
    assert.equal(row.status, 'failed');
    assert.equal(row.code, 'non_determinism');
    assert.match(row.message, /history has step "charge"/);
    const steps = await fx.client.history(run.id);
    assert.deepEqual(steps.map((s) => [s.name, s.status]), [['charge', 'completed'], ['wait', 'retrying']]);
  });

  it('pins runs to their version: a v1 run finishes on a v1 worker while v2 workers take new runs', async () => {
    const mk = (version: string) => defineWorkflow({ name: 'pinned', version, input }, async (ctx) => ctx.step('who', () => `v${version}`));
    const [v1, v2] = [mk('1'), mk('2')];
    const onlyV2 = worker([v2]);
    await onlyV2.start();
    const old = await fx.client.start(v1, { tag: 'old' });
    const fresh = await fx.client.start(v2, { tag: 'new' });
    assert.equal(await fx.client.result(fresh.id, { timeout: '10s' }), 'v2');
    assert.equal((await fx.client.get(old.id))?.status, 'pending', 'a v2 worker never claims a v1 run');
    const onlyV1 = worker([v1]);
    await onlyV1.start();
    assert.equal(await fx.client.result(old.id, { timeout: '10s' }), 'v1');
    await Promise.all([onlyV1.stop(), onlyV2.stop()]);
  });

  it('aborts a running step when the worker loses its lease', async () => {
    const started = deferred();
    const aborted = deferred<unknown>();
    const wf = defineWorkflow({ name: 'lease-loss', input }, async (ctx) =>
      ctx.step('block', ({ signal }) => {
        started.resolve();
        signal.addEventListener('abort', () => aborted.resolve(signal.reason));
        return new Promise(() => {});
      }));
    const w = worker([wf], { leaseDuration: 1500 });
    await w.start();
    const run = await fx.client.start(wf, { tag: 'x' });
    await started.promise;
    // Another party takes the run away (as an expired-lease reclaim would).
    const { rows } = await fx.db.pool.query('select lease_token from trellis.runs where id = $1', [run.id]);
    await fx.db.pool.query('select trellis.run_release($1, $2)', [run.id, rows[0].lease_token]);
    const reason = await aborted.promise;
    assert.ok(reason instanceof LeaseLostError);
    await waitFor(() => w.stats.abandoned >= 1, { what: 'run abandoned' });
    await w.stop({ timeout: 100 });
  });

  it('times out a step attempt through its AbortSignal and retries it', async () => {
    let attempts = 0;
    const wf = defineWorkflow({ name: 'slow-step', input }, async (ctx) =>
      ctx.step('slow', ({ signal, attempt }) => {
        attempts++;
        if (attempt > 1) return 'fast enough';
        return new Promise((_, reject) => signal.addEventListener('abort', () => reject(signal.reason)));
      }, { timeout: 50, retry: { initialDelay: 10 } }));
    const w = worker([wf]);
    await w.start();
    const run = await fx.client.start(wf, { tag: 't' });
    assert.equal(await run.result({ timeout: '10s' }), 'fast enough');
    assert.equal(attempts, 2);
    const [step] = await fx.client.history(run.id);
    assert.equal(step?.attempts, 2);
    await w.stop();
    assert.ok(new TimeoutError('x') instanceof Error);
  });

  it('retries the whole workflow per its retry policy, keeping completed steps', async () => {
    let once = 0;
    let bodies = 0;
    const wf = defineWorkflow({ name: 'wf-retry', input, retry: { maxAttempts: 2, initialDelay: 10 } }, async (ctx) => {
      bodies++;
      await ctx.step('once', () => ++once);
      if (bodies === 1) throw new Error('workflow bug, transient');
      return 'ok';
    });
    const w = worker([wf]);
    await w.start();
    const run = await fx.client.start(wf, { tag: 'r' });
    assert.equal(await run.result({ timeout: '10s' }), 'ok');
    assert.equal(once, 1);
    assert.equal((await fx.client.get(run.id))?.failures, 1);
    await w.stop();
  });

  it('retries the whole workflow from its failed step: a compensation that caught the failure runs again, not left in the history', async () => {
    let shipTries = 0;
    const calls: string[] = [];
    const wf = defineWorkflow({ name: 'wf-retry-saga', input, retry: { maxAttempts: 2, initialDelay: 10 } }, async (ctx) => {
      await ctx.step('charge', () => void calls.push('charge'));
      try {
        await ctx.step('ship', () => {
          calls.push('ship');
          if (++shipTries === 1) throw new NonRetryableError('carrier down');
        });
      } catch (error) {
        await ctx.step('refund', () => void calls.push('refund'));
        throw error;
      }
      return 'shipped';
    });
    const w = worker([wf]);
    await w.start();
    try {
      const run = await fx.client.start(wf, { tag: 'saga' });
      assert.equal(await run.result({ timeout: '10s' }), 'shipped');
      assert.deepEqual(calls, ['charge', 'ship', 'refund', 'ship']);
      const history = (await fx.client.history(run.id)).map((s) => `${s.name}:${s.status}`);
      assert.deepEqual(history, ['charge:completed', 'ship:completed'], 'the first attempt\'s failure and compensation are forgotten');
    } finally {
      await w.stop();
    }
  });

  it('fails the run when the output does not match its schema or a step result is too large', async () => {
    const wf = defineWorkflow({ name: 'bad-output', input, output: z.object({ ok: z.boolean() }) }, async (ctx, { tag }) => {
      if (tag === 'big') await ctx.step('huge', () => 'x'.repeat(1_100_000));
      return { ok: 'yes' } as never;
    });
    const w = worker([wf]);
    await w.start();
    const bad = await fx.client.start(wf, { tag: 'schema' });
    await assert.rejects(bad.result({ timeout: '10s' }), /output of bad-output is invalid/);
    const big = await fx.client.start(wf, { tag: 'big' });
    await assert.rejects(big.result({ timeout: '10s' }), /over the limit/);
    const [step] = await fx.client.history(big.id);
    assert.equal(step?.status, 'failed');
    assert.equal((step?.error as { code: string }).code, 'payload_too_large');
    await w.stop();
  });

  it('fails a run whose end the engine refuses (an output over a limit lowered while the worker runs), re-running it once under the new limit', async () => {
    const wf = defineWorkflow({ name: 'big-end', input }, async () => 'y'.repeat(5_000));
    const w = worker([wf]); // reads max_payload_bytes (1 MiB) now
    await w.start();
    await fx.db.pool.query(`select trellis.setting_set('max_payload_bytes', '1000')`);
    try {
      const run = await fx.client.start(wf, { tag: 'x' });
      await assert.rejects(run.result({ timeout: '10s' }), /over the limit/);
      const row = await fx.client.get(run.id);
      assert.equal(row?.status, 'failed');
      assert.equal((row?.error as { code: string }).code, 'payload_too_large');
      // The database refused the end; the worker read the limit again and
      // ran the run once more, whose own check then failed it (not a loop).
      assert.equal(row?.attempt, 2, 'failed on its second attempt, after the limit was read again');
      assert.match((row?.error as { message: string }).message, /over the limit of 1000 bytes/);
    } finally {
      await fx.db.pool.query(`select trellis.setting_set('max_payload_bytes', '1048576')`);
      await w.stop();
    }
  });

  it('on shutdown aborts running steps and releases their runs to another worker at once', async () => {
    const started = deferred();
    let reason: unknown;
    let first = true;
    const wf = defineWorkflow({ name: 'drain', input }, async (ctx) =>
      ctx.step('long', ({ signal }) => {
        if (!first) return 'finished elsewhere';
        first = false;
        started.resolve();
        return new Promise((_, reject) => signal.addEventListener('abort', () => {
          reason = signal.reason;
          reject(signal.reason);
        }));
      }));
    const a = worker([wf], { leaseDuration: 60_000 });
    await a.start();
    const run = await fx.client.start(wf, { tag: 'd' });
    await started.promise;
    await a.stop({ timeout: 50 });
    assert.ok(reason instanceof CancelledError);
    const row = await fx.client.get(run.id);
    assert.equal(row?.status, 'pending', 'released, not left leased for 60s');
    const b = worker([wf]);
    await b.start();
    assert.equal(await run.result({ timeout: '10s' }), 'finished elsewhere');
    await b.stop();
  });

  it('spreads runs over several workers and completes every one', async () => {
    const wf = defineWorkflow({ name: 'spread', input }, async (ctx, { tag }) => ctx.step('echo', () => tag));
    const ws = [worker([wf], { concurrency: 5 }), worker([wf], { concurrency: 5 }), worker([wf], { concurrency: 5 })];
    await Promise.all(ws.map((w) => w.start()));
    const runs = await Promise.all(Array.from({ length: 60 }, (_, i) => fx.client.start(wf, { tag: `t${i}` })));
    const results = await Promise.all(runs.map((r) => r.result({ timeout: '20s' })));
    assert.deepEqual(results, runs.map((_, i) => `t${i}`));
    // A worker counts a run once its commit has returned, which can be a moment
    // after the client was notified: stop (drain) them before counting.
    await Promise.all(ws.map((w) => w.stop()));
    const total = ws.reduce((n, w) => n + w.stats.completed, 0);
    assert.equal(total, 60);
    const { rows } = await fx.db.pool.query(`select count(*)::int as n from trellis.steps s join trellis.runs r on r.bucket = s.bucket and r.id = s.run_id where r.workflow = 'spread'`);
    assert.equal(rows[0].n, 60, 'each step recorded exactly once');
  });
});
