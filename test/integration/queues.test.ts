/**
 * Queues and flow control with a worker: fair claiming across concurrency
 * keys, pausing a queue while a run executes, and the client's queue API.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { z } from 'zod';
import { ValidationError } from '../../src/errors.ts';
import { defineWorkflow } from '../../src/workflow/define.ts';
import { useFreshDatabase } from '../helpers/database-fixture.ts';
import { deferred, startEngine } from '../helpers/engine.ts';
import { waitFor } from '../helpers/wait.ts';

const fx = useFreshDatabase({ poolSize: 12 });

const tenantJob = defineWorkflow({ name: 'tenant-job', queue: 'tenants', input: z.object({ n: z.number() }) },
  async (ctx, { n }) => ctx.step('work', () => n));

describe('fair claiming across concurrency keys', () => {
  it('10 runs of key B all finish before 5% of the 10,000 runs of key A started before them', async () => {
    const engine = await startEngine(fx.db, { workflows: [tenantJob], concurrency: 20, claimBatch: 20 });
    try {
      await engine.client.setQueue('tenants', { fair: true });
      await engine.client.pauseQueue('tenants');
      // Key A's backlog first, then key B's ten: without rotation B waits for all of A.
      await fx.db.pool.query(`select trellis.run_start('tenant-job', jsonb_build_object('n', i), '{"concurrency_key": "tenant-a", "input_checked": true}')
                             from generate_series(1, 10000) i`);
      await fx.db.pool.query(`select trellis.run_start('tenant-job', jsonb_build_object('n', i), '{"concurrency_key": "tenant-b", "input_checked": true}')
                             from generate_series(1, 10) i`);
      await engine.client.resumeQueue('tenants');
      await waitFor(async () => {
        const { rows } = await fx.db.pool.query(`select count(*)::int as n from trellis.runs where concurrency_key = 'tenant-b' and status = 'completed'`);
        return rows[0].n === 10;
      }, { what: "key B's 10 runs completed", timeout: 60_000 });
      const { rows } = await fx.db.pool.query(`select count(*)::int as n from trellis.runs where concurrency_key = 'tenant-a'
        and finished_at <= (select max(finished_at) from trellis.runs where concurrency_key = 'tenant-b')`);
      assert.ok(rows[0].n < 500, `${rows[0].n} runs of A finished before the last of B (must be under 500)`);
    } finally {
      await engine.stop();
    }
  });
});

describe('pausing a queue', () => {
  it('a running execution finishes; nothing more is claimed until the queue resumes', async () => {
    const gate = deferred();
    const entered = deferred();
    const gated = defineWorkflow({ name: 'gated', queue: 'pausable', input: z.object({ wait: z.boolean() }) }, async (ctx, { wait }) =>
      ctx.step('body', async () => {
        if (wait) {
          entered.resolve();
          await gate.promise;
        }
        return 'done';
      }));
    const engine = await startEngine(fx.db, { workflows: [gated], concurrency: 5 });
    try {
      const first = await engine.client.start(gated, { wait: true });
      await entered.promise;
      await engine.client.pauseQueue('pausable');
      const later = await engine.client.start(gated, { wait: false });
      gate.resolve();
      assert.equal(await first.result({ timeout: '20s' }), 'done');
      // Two more claims after the first run ended (its end, the NOTIFY of
      // the start and the 200 ms poll each bring one): the pause held them.
      const claims = engine.worker.stats.claims;
      const claimed = engine.worker.stats.claimed;
      await waitFor(() => engine.worker.stats.claims >= claims + 2, { what: 'two claims while paused', timeout: 10_000 });
      assert.equal((await engine.client.get(later.id))?.status, 'pending');
      assert.equal(engine.worker.stats.claimed, claimed, 'the claims while paused leased nothing');
      const [stats] = await engine.client.queueStats('pausable');
      assert.equal(stats?.paused, true);
      assert.equal(stats?.pending, 1);
      await engine.client.resumeQueue('pausable');
      assert.equal(await later.result({ timeout: '20s' }), 'done');
    } finally {
      await engine.stop();
    }
  });
});

describe('a worker waiting on held keys', () => {
  it('looks again less and less often while its claims find nothing, and claims at once when its own run frees the key', async () => {
    const gate = deferred();
    const entered = deferred();
    const held = defineWorkflow({ name: 'held-key', queue: 'held-keys', input: z.object({ n: z.number() }) }, async (ctx, { n }) =>
      ctx.step('body', async () => {
        if (n === 0) {
          entered.resolve();
          await gate.promise;
        }
        return n;
      }));
    const engine = await startEngine(fx.db, { workflows: [held], concurrency: 10, pollInterval: '5s' });
    try {
      await engine.client.setQueue('held-keys', { keyConcurrency: 1 });
      const first = await engine.client.start(held, { n: 0 }, { concurrencyKey: 'a' });
      await entered.promise;
      const next = await engine.client.start(held, { n: 1 }, { concurrencyKey: 'a' });
      // Key a is at its limit: run 1 is due and stays. Every 25 ms, this
      // was ~100 claims in 3 s; backing off (25, 50, 100 … ms, at most a
      // second) it is under 10 (and one more per start's NOTIFY).
      const claims = engine.worker.stats.claims;
      await new Promise((resolve) => setTimeout(resolve, 3000));
      const made = engine.worker.stats.claims - claims;
      assert.ok(made >= 2 && made <= 12, `${made} claims in 3 s while the key was held`);
      assert.equal((await engine.client.get(next.id))?.status, 'pending');
      gate.resolve();
      assert.equal(await first.result({ timeout: '20s' }), 0);
      // The end of run 0 frees the key on this worker, which claims at once
      // (not at the next look of its backoff, nor at the 5 s poll).
      const ended = Date.now();
      assert.equal(await next.result({ timeout: '20s' }), 1);
      assert.ok(Date.now() - ended < 4000, `run 1 finished ${Date.now() - ended} ms after run 0`);
    } finally {
      await engine.stop();
    }
  });
});

describe('client queue API', () => {
  it('setQueue stores the limits that queueStats reports', async () => {
    const engine = await startEngine(fx.db, { workflows: [tenantJob] });
    try {
      await engine.client.setQueue('api-q', { concurrency: 7, keyConcurrency: 2, rate: { limit: 30, period: '1 minute' } });
      const [stats] = await engine.client.queueStats('api-q');
      assert.deepEqual(
        { c: stats?.concurrency, k: stats?.keyConcurrency, r: stats?.rateLimit, p: stats?.ratePeriodMs, paused: stats?.paused },
        { c: 7, k: 2, r: 30, p: 60_000, paused: false });
      // null removes fair and paused (false), as its TSDoc and SQL say.
      await engine.client.setQueue('api-q', { paused: true, fair: true });
      await engine.client.setQueue('api-q', { paused: null, fair: null });
      const [after] = await engine.client.queueStats('api-q');
      assert.deepEqual({ paused: after?.paused, fair: after?.fair }, { paused: false, fair: false });
      await assert.rejects(engine.client.setQueue('api-q', { paused: 'yes' as never }), ValidationError);
    } finally {
      await engine.stop();
    }
  });

  for (const [what, options] of [
    ['a concurrency of 0', { concurrency: 0 }],
    ['a negative key concurrency', { keyConcurrency: -2 }],
    ['a rate with a zero period', { rate: { limit: 5, period: 0 } }],
    ['an unknown option', { concurency: 3 }],
    ['an unknown rate option (burst), which was dropped in silence', { rate: { limit: 5, period: '1s', burst: 50 } }],
    ['a rate that is not an object', { rate: 5 }],
  ] as const) {
    it(`setQueue refuses ${what} with a ValidationError and writes nothing`, async () => {
      const engine = await startEngine(fx.db, { workflows: [tenantJob] });
      try {
        await assert.rejects(engine.client.setQueue('bad-q', options as never), ValidationError);
        assert.deepEqual(await engine.client.queueStats('bad-q'), []);
      } finally {
        await engine.stop();
      }
    });
  }

  it('refuses a queue name with quotes and SQL, and an oversized concurrencyKey, with ValidationError', async () => {
    const engine = await startEngine(fx.db, { workflows: [tenantJob] });
    try {
      await assert.rejects(engine.client.setQueue(`q'; drop table trellis.runs; --`, { concurrency: 1 }), ValidationError);
      await assert.rejects(engine.client.start(tenantJob, { n: 1 }, { concurrencyKey: 'x'.repeat(201) }), ValidationError);
      await assert.rejects(engine.client.start(tenantJob, { n: 1 }, { queue: `q"; select 1; --` }), ValidationError);
      const { rows } = await fx.db.pool.query(`select (select count(*)::int from trellis.runs where length(concurrency_key) > 200
                                                     or queue like 'q%;%') as runs,
                                                   (select count(*)::int from trellis.queues where name like 'q%;%') as queues`);
      assert.deepEqual(rows[0], { runs: 0, queues: 0 });
    } finally {
      await engine.stop();
    }
  });
});
