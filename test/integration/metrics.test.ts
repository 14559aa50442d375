import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, it } from 'node:test';
import { Registry } from 'prom-client';
import { z } from 'zod';
import { createClient } from '../../src/client/client.ts';
import { NonRetryableError, ValidationError } from '../../src/errors.ts';
import { createMetrics } from '../../src/observability/metrics.ts';
import { createWorker } from '../../src/worker/worker.ts';
import { defineWorkflow } from '../../src/workflow/define.ts';
import { silentLogger } from '../../src/protocol/logger.ts';
import { testPool } from '../helpers/db.ts';
import { useDatabase } from '../helpers/database-fixture.ts';
import { deferred } from '../helpers/engine.ts';
import { completedHookedRuns, parkOne } from '../helpers/hook-deliveries.ts';
import { parseProm, valueOf } from '../helpers/prom-text.ts';
import { waitFor } from '../helpers/wait.ts';

const fx = useDatabase();

const input = z.object({ n: z.number() });

describe('metrics', () => {
  it('counts a known workload exactly and serves it on the worker /metrics endpoint', async () => {
    const ok = defineWorkflow({ name: 'm-ok', input, queue: 'm' }, async (ctx, { n }) => {
      const a = await ctx.step('double', () => n * 2);
      return ctx.step('inc', () => a + 1);
    });
    const bad = defineWorkflow({ name: 'm-bad', input, queue: 'm' }, async (ctx) =>
      ctx.step('explode', () => {
        throw new NonRetryableError('boom');
      }));
    const blocked = deferred();
    let leaseAttempts = 0;
    const lease = defineWorkflow({ name: 'm-lease', input, queue: 'm' }, async (ctx) =>
      ctx.step('hold', () => {
        if (++leaseAttempts > 1) return 'second';
        blocked.resolve();
        return new Promise(() => {});
      }));
    // Runs nobody serves: they stay pending in their own queue.
    const idle = defineWorkflow({ name: 'm-idle', input, queue: 'm-idle' }, async () => null);

    const worker = createWorker({
      pool: fx.db.pool, workflows: [ok, bad, lease], pollInterval: 100, leaseDuration: 1500, logger: silentLogger,
      metrics: { registry: new Registry(), port: 0 },
    });
    await worker.start();
    try {
      const url = worker.metricsUrl;
      assert.match(url ?? '', /^http:\/\/127\.0\.0\.1:\d+\/metrics$/);
      assert.ok(worker.metrics);

      const runs = await Promise.all([1, 2, 3].map((n) => fx.client.start(ok, { n })));
      for (const r of runs) await r.result({ timeout: '10s' });
      const failed = await fx.client.start(bad, { n: 0 });
      await assert.rejects(failed.result({ timeout: '10s' }));

      // A lease taken away while a step runs: the execution stops (a lease
      // loss), and the run completes on its next claim.
      const held = await fx.client.start(lease, { n: 0 });
      await blocked.promise;
      const { rows } = await fx.db.pool.query('select lease_token from trellis.runs where id = $1', [held.id]);
      await fx.db.pool.query('select trellis.run_release($1, $2)', [held.id, rows[0].lease_token]);
      assert.equal(await held.result({ timeout: '10s' }), 'second');
      await waitFor(() => worker.stats.abandoned === 1, { what: 'the stale execution to end' });

      const hourAgo = new Date(Date.now() - 3600_000);
      await fx.client.start(idle, { n: 1 }, { runAt: hourAgo });
      await fx.client.start(idle, { n: 2 });

      // The LISTEN connection is killed: the worker reconnects once.
      await fx.db.pool.query(`select pg_terminate_backend(pid) from pg_stat_activity
                            where application_name = 'trellis-worker-listener' and datname = current_database()`);
      await waitFor(() => worker.listenerConnects === 2, { what: 'the listener to reconnect' });
      await waitFor(() => worker.stats.completed === 4 && worker.stats.failed === 1, { what: 'the worker to count its runs' });

      const response = await fetch(url as string);
      assert.equal(response.status, 200);
      assert.match(response.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
      const s = parseProm(await response.text());

      assert.equal(valueOf(s, 'trellis_runs_started_total', { workflow: 'm-ok' }), 3);
      assert.equal(valueOf(s, 'trellis_runs_started_total', { workflow: 'm-bad' }), 1);
      assert.equal(valueOf(s, 'trellis_runs_started_total', { workflow: 'm-lease' }), 1, 'a run claimed again is not started again');
      assert.equal(valueOf(s, 'trellis_runs_finished_total', { workflow: 'm-ok', status: 'completed' }), 3);
      assert.equal(valueOf(s, 'trellis_runs_finished_total', { workflow: 'm-bad', status: 'failed' }), 1);
      assert.equal(valueOf(s, 'trellis_runs_finished_total', { workflow: 'm-lease', status: 'completed' }), 1);
      assert.equal(valueOf(s, 'trellis_runs_finished_total', { workflow: 'm-ok', status: 'failed' }), undefined);
      assert.equal(valueOf(s, 'trellis_run_executions_total', { workflow: 'm-lease', outcome: 'abandoned' }), 1);
      assert.equal(valueOf(s, 'trellis_run_executions_total', { workflow: 'm-lease', outcome: 'completed' }), 1);

      assert.equal(valueOf(s, 'trellis_step_duration_seconds_count', { workflow: 'm-ok', kind: 'step', status: 'completed' }), 6);
      assert.equal(valueOf(s, 'trellis_step_duration_seconds_count', { workflow: 'm-bad', kind: 'step', status: 'failed' }), 1);
      assert.equal(valueOf(s, 'trellis_step_duration_seconds_count', { workflow: 'm-lease', kind: 'step', status: 'failed' }), 1);
      assert.equal(valueOf(s, 'trellis_step_duration_seconds_count', { workflow: 'm-lease', kind: 'step', status: 'completed' }), 1);
      assert.ok((valueOf(s, 'trellis_step_duration_seconds_bucket', { workflow: 'm-ok', kind: 'step', status: 'completed', le: '+Inf' }) ?? 0) === 6);

      assert.equal(valueOf(s, 'trellis_lease_losses_total', { workflow: 'm-lease' }), 1);
      assert.equal(valueOf(s, 'trellis_listener_reconnects_total'), 1);

      assert.equal(valueOf(s, 'trellis_queue_depth', { queue: 'm-idle' }), 2);
      assert.equal(valueOf(s, 'trellis_queue_depth', { queue: 'm' }), 0);
      const age = valueOf(s, 'trellis_queue_oldest_pending_age_seconds', { queue: 'm-idle' }) ?? 0;
      assert.ok(age >= 3600 && age < 3700, `oldest pending age ${age}`);
      assert.equal(valueOf(s, 'trellis_queue_oldest_pending_age_seconds', { queue: 'm' }), 0);

      assert.equal((await fetch(url!.replace('/metrics', '/other'))).status, 404);
      assert.equal((await fetch(url as string, { method: 'POST' })).status, 405);
    } finally {
      await worker.stop({ timeout: 100 });
    }
    await assert.rejects(fetch(worker.metricsUrl as string), 'the endpoint closes with the worker');
    // Claims, once none is in flight: one histogram sample per claim round trip.
    const stopped = parseProm(await worker.metrics!.scrape());
    assert.ok(worker.stats.claims > 0);
    assert.equal(valueOf(stopped, 'trellis_claim_duration_seconds_count'), worker.stats.claims);
    assert.equal(valueOf(stopped, 'trellis_runs_claimed_total') ?? 0, worker.stats.claimed);
  });

  it('lets two workers share one set of metrics, and serves it from a handler in any server', async () => {
    const wf = defineWorkflow({ name: 'm-shared', input, queue: 'shared' }, async (ctx, { n }) => ctx.step('s', () => n));
    const metrics = await createMetrics({ pool: fx.db.pool });
    const w1 = createWorker({ pool: fx.db.pool, workflows: [wf], logger: silentLogger, metrics, pollInterval: 100 });
    const w2 = createWorker({ pool: fx.db.pool, workflows: [wf], logger: silentLogger, metrics, pollInterval: 100 });
    const starter = createClient({ pool: fx.db.pool, logger: silentLogger, handoff: false });
    await Promise.all([w1.start(), w2.start()]);
    try {
      assert.equal(w1.metrics, metrics);
      const runs = await Promise.all(Array.from({ length: 6 }, (_, n) => starter.start(wf, { n })));
      for (const r of runs) await r.result({ timeout: '10s' });
      // A result can reach the client (by NOTIFY) before the worker that
      // committed the run counts it: the counters move with worker.stats.
      await waitFor(() => w1.stats.completed + w2.stats.completed === 6, { what: 'both workers to count their runs' });
      const s = parseProm(await metrics.scrape());
      assert.equal(valueOf(s, 'trellis_runs_finished_total', { workflow: 'm-shared', status: 'completed' }), 6);
      assert.equal(valueOf(s, 'trellis_runs_claimed_total'), w1.stats.claimed + w2.stats.claimed);
      assert.equal(w1.stats.claimed + w2.stats.claimed, 6);
      const server = createServer((req, res) => (req.url === '/ops/metrics' ? metrics.handler(req, res) : res.writeHead(418).end()));
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      try {
        const served = await fetch(`http://127.0.0.1:${(server.address() as AddressInfo).port}/ops/metrics`);
        assert.equal(served.status, 200);
        assert.equal(valueOf(parseProm(await served.text()), 'trellis_runs_started_total', { workflow: 'm-shared' }), 6);
      } finally {
        await new Promise((r) => server.close(r));
      }
      // A second createMetrics on the same registry reuses the metrics instead of failing.
      const again = await createMetrics({ pool: fx.db.pool, registry: metrics.registry });
      assert.equal(valueOf(parseProm(await again.scrape()), 'trellis_runs_finished_total', { workflow: 'm-shared', status: 'completed' }), 6);
    } finally {
      await Promise.all([w1.stop(), w2.stop()]);
      await starter.close();
    }
  });

  it('reports the hook deliveries by status and each durable consumer\'s backlog, read from SQL at scrape time', async () => {
    const sql = async (text: string, values: unknown[] = []) => (await fx.db.pool.query(text, values)).rows;
    const metrics = await createMetrics({ pool: fx.db.pool, registry: new Registry() });
    const before = parseProm(await metrics.scrape());
    assert.equal(valueOf(before, 'trellis_hook_deliveries', { status: 'parked' }), 0);
    await completedHookedRuns(fx.db.pool, 'm-hk', ['a', 'b']);
    const parked = await parkOne(fx.db.pool, 'm-hk', 'down');
    const client = createClient({ pool: fx.db.pool, logger: silentLogger });
    await client.eventConsumer('m-audit', { from: 'now' });
    await sql(`select trellis.run_start('m-hk', '{}', '{"key":"c"}')`);
    const s = parseProm(await metrics.scrape());
    assert.equal(valueOf(s, 'trellis_hook_deliveries', { status: 'parked' }), 1);
    assert.equal(valueOf(s, 'trellis_hook_deliveries', { status: 'pending' }), 1);
    assert.equal(valueOf(s, 'trellis_hook_deliveries', { status: 'running' }), 0);
    // 'now' is the read horizon when it was made: events of transactions still open then (other files') are after it too.
    const [{ after }] = await sql(`select count(*)::int as after from trellis.events e, trellis.event_consumers c
      where c.name = 'm-audit' and (e.xid, e.id) > (c.after_xid, c.after_id)`);
    assert.ok(after >= 1, 'the start after it was made');
    assert.equal(valueOf(s, 'trellis_consumer_backlog_events', { consumer: 'm-audit' }), after);
    await client.hooks.retry(parked);
    assert.equal(valueOf(parseProm(await metrics.scrape()), 'trellis_hook_deliveries', { status: 'parked' }), 0);
    await client.close();
  });

  it('answers a scrape it cannot read the database for with 503', async () => {
    const dead = testPool({ connectionString: fx.db.url, max: 1 });
    await dead.end();
    const metrics = await createMetrics({ pool: dead });
    const server = createServer(metrics.handler);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const response = await fetch(`http://127.0.0.1:${(server.address() as AddressInfo).port}/`);
      assert.equal(response.status, 503);
      assert.match(await response.text(), /^metrics unavailable: /);
    } finally {
      await new Promise((r) => server.close(r));
    }
  });

  it('refuses a bad metrics port with a ValidationError, before anything starts', async () => {
    const wf = defineWorkflow({ name: 'm-port', input }, async () => null);
    const w = createWorker({ pool: fx.db.pool, workflows: [wf], logger: silentLogger, metrics: { port: 70000 } });
    await assert.rejects(w.start(), (e: unknown) => e instanceof ValidationError && /metrics\.port/.test(e.message));
    assert.equal(w.metrics, undefined);
  });
});
