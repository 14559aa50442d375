import assert from 'node:assert/strict';
import { beforeEach, describe, it } from 'node:test';
import { context, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { BasicTracerProvider, InMemorySpanExporter, type ReadableSpan, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { z } from 'zod';
import { createClient } from '../../src/client/client.ts';
import { createWorker, type Worker } from '../../src/worker/worker.ts';
import { defineWorkflow } from '../../src/workflow/define.ts';
import { silentLogger } from '../../src/protocol/logger.ts';
import { useFreshDatabase } from '../helpers/database-fixture.ts';
import { waitFor } from '../helpers/wait.ts';

// The application's OpenTelemetry setup: an async context manager (so the
// caller's active span reaches client.start) and spans kept in memory.
context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
const exporter = new InMemorySpanExporter();
const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
const tracer = provider.getTracer('test');

const fx = useFreshDatabase();
beforeEach(() => exporter.reset());

const input = z.object({ n: z.number() });
const parentOf = (s: ReadableSpan) => s.parentSpanContext?.spanId;
const named = (name: string) => exporter.getFinishedSpans().filter((s) => s.name === name);
const one = (name: string) => {
  const found = named(name);
  assert.equal(found.length, 1, `one span named ${name}, got ${found.length}`);
  return found[0] as ReadableSpan;
};

const child = defineWorkflow({ name: 't-child', input, queue: 't-children' }, async (ctx, { n }) => {
  const a = await ctx.step('c1', () => {
    // Code inside a step sees the step's span as the active one.
    tracer.startSpan('inside-c1').end();
    return n + 1;
  });
  return ctx.step('c2', () => a * 10);
});
const parent = defineWorkflow({ name: 't-parent', input, queue: 't-parents' }, async (ctx, { n }) => {
  const p = await ctx.step('prepare', () => n);
  const c = await ctx.child(child, { n: p });
  return ctx.step('finish', () => c + 1);
});

describe('tracing', () => {
  it('parents spans from the caller of start() through the run, its steps, and its child on another worker', async () => {
    // Two worker instances: the parent's queue on one, the child's on the other.
    const parents = createWorker({ pool: fx.db.pool, workflows: [parent], logger: silentLogger, pollInterval: 100, tracing: { tracerProvider: provider } });
    const children = createWorker({ pool: fx.db.pool, workflows: [child], logger: silentLogger, pollInterval: 100, tracing: { tracerProvider: provider } });
    const client = createClient({ pool: fx.db.pool, logger: silentLogger, tracing: true });
    await Promise.all([parents.start(), children.start()]);
    try {
      const caller = tracer.startSpan('caller');
      const run = await context.with(trace.setSpan(context.active(), caller), () => client.start(parent, { n: 4 }));
      caller.end();
      assert.equal(await run.result({ timeout: '10s' }), 51);
      await waitFor(() => named('workflow t-parent').length === 2 && named('workflow t-child').length === 1, { what: 'execution spans' });

      const traceId = caller.spanContext().traceId;
      for (const s of exporter.getFinishedSpans()) assert.equal(s.spanContext().traceId, traceId, `${s.name} is in the caller's trace`);

      // The parent ran twice: until it waited on its child, then to its end.
      const [first, second] = named('workflow t-parent').sort((a, b) => Number(a.attributes['trellis.outcome'] === 'completed') - Number(b.attributes['trellis.outcome'] === 'completed'));
      assert.equal(first?.attributes['trellis.outcome'], 'wait');
      assert.equal(second?.attributes['trellis.outcome'], 'completed');
      for (const execution of [first, second]) {
        assert.equal(parentOf(execution!), caller.spanContext().spanId);
        assert.equal(execution!.attributes['trellis.run_id'], run.id);
        assert.equal(execution!.attributes['trellis.worker'], parents.id);
      }
      // Each step that ran is a span under the execution that ran it; a replayed step has none.
      assert.equal(parentOf(one('step prepare')), first!.spanContext().spanId);
      assert.equal(parentOf(one('step finish')), second!.spanContext().spanId);

      // The child, executed by the other worker, hangs under the parent's execution that started it.
      const childRun = one('workflow t-child');
      assert.equal(parentOf(childRun), first!.spanContext().spanId);
      assert.equal(childRun.attributes['trellis.worker'], children.id);
      assert.notEqual(children.id, parents.id);
      const c1 = one('step c1');
      assert.equal(parentOf(c1), childRun.spanContext().spanId);
      assert.equal(parentOf(one('step c2')), childRun.spanContext().spanId);
      assert.equal(parentOf(one('inside-c1')), c1.spanContext().spanId);

      // The context crossed through rows: the runs' metadata hold it.
      const { rows } = await fx.db.pool.query(`select metadata->>'traceparent' as tp from trellis.runs where parent_run_id = $1`, [run.id]);
      assert.equal(rows[0].tp, `00-${traceId}-${first!.spanContext().spanId}-01`);
      assert.equal((await client.get(run.id))?.metadata.traceparent, `00-${traceId}-${caller.spanContext().spanId}-01`);
    } finally {
      await Promise.all([parents.stop(), children.stop()]);
      await client.close();
    }
  });

  it('marks a failed step and run as errors', async () => {
    const failing = defineWorkflow({ name: 't-fail', input }, async (ctx) =>
      ctx.step('bad', () => {
        throw new Error('no luck');
      }, { retry: { maxAttempts: 2, initialDelay: 10 } }));
    const worker = createWorker({ pool: fx.db.pool, workflows: [failing], logger: silentLogger, pollInterval: 100, tracing: { tracerProvider: provider } });
    const client = createClient({ pool: fx.db.pool, logger: silentLogger });
    await worker.start();
    try {
      const run = await client.start(failing, { n: 0 });
      await assert.rejects(run.result({ timeout: '10s' }));
      await waitFor(() => named('workflow t-fail').some((s) => s.attributes['trellis.outcome'] === 'failed'), { what: 'the failed execution span' });
      const steps = named('step bad');
      assert.deepEqual(steps.map((s) => s.attributes['trellis.step_attempt']).sort(), [1, 2]);
      for (const s of steps) {
        assert.equal(s.status.code, 2 /* ERROR */);
        assert.equal(s.status.message, 'no luck');
      }
      const failed = named('workflow t-fail').find((s) => s.attributes['trellis.outcome'] === 'failed');
      assert.equal(failed?.status.code, 2);
      // Started without an active span: the run's spans start a trace of their own.
      assert.equal(parentOf(failed!), undefined);
    } finally {
      await worker.stop();
      await client.close();
    }
  });

  it('continues a trace whose traceparent a start from SQL put in the metadata', async () => {
    const plain = defineWorkflow({ name: 't-sql', input }, async (ctx) => ctx.step('only', () => 'ok'));
    const worker = createWorker({ pool: fx.db.pool, workflows: [plain], logger: silentLogger, pollInterval: 100, tracing: { tracerProvider: provider } });
    await worker.start();
    try {
      const tp = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
      const { rows } = await fx.db.pool.query(`select trellis.run_start('t-sql', '{"n": 1}', $1::jsonb) as id`,
        [JSON.stringify({ metadata: { traceparent: tp, tracestate: 'vendor=x' } })]);
      await waitFor(() => named('workflow t-sql').length === 1, { what: 'the execution span' });
      const span = one('workflow t-sql');
      assert.equal(span.attributes['trellis.run_id'], rows[0].id);
      assert.equal(span.spanContext().traceId, '0af7651916cd43dd8448eb211c80319c');
      assert.equal(parentOf(span), 'b7ad6b7169203331');
      assert.equal(span.parentSpanContext?.traceState?.get('vendor'), 'x');
    } finally {
      await worker.stop();
    }
  });

  it('runs a run whose metadata holds a malformed traceparent, in a trace of its own', async () => {
    const odd = defineWorkflow({ name: 't-odd', input }, async (ctx) => ctx.step('only', () => ctx.metadata.traceparent));
    const worker = createWorker({ pool: fx.db.pool, workflows: [odd], logger: silentLogger, pollInterval: 100, tracing: { tracerProvider: provider } });
    const client = createClient({ pool: fx.db.pool, logger: silentLogger, tracing: true });
    await worker.start();
    try {
      // The caller's own traceparent wins over the active span's (here a bad one).
      const caller = tracer.startSpan('caller-odd');
      const run = await context.with(trace.setSpan(context.active(), caller), () =>
        client.start(odd, { n: 1 }, { metadata: { traceparent: 'not-a-traceparent' } }));
      caller.end();
      assert.equal(await run.result({ timeout: '10s' }), 'not-a-traceparent');
      await waitFor(() => named('workflow t-odd').length === 1, { what: 'the execution span' });
      const span = one('workflow t-odd');
      assert.equal(parentOf(span), undefined);
      assert.notEqual(span.spanContext().traceId, caller.spanContext().traceId);
      assert.equal(parentOf(one('step only')), span.spanContext().spanId);
    } finally {
      await worker.stop();
      await client.close();
    }
  });

  it('records nothing and stores no trace context when tracing is off', async () => {
    const off = defineWorkflow({ name: 't-off', input }, async (ctx) => ctx.child(child, { n: 1 }));
    const worker: Worker = createWorker({ pool: fx.db.pool, workflows: [off, child], queues: ['default', 't-children'], logger: silentLogger, pollInterval: 100 });
    const client = createClient({ pool: fx.db.pool, logger: silentLogger });
    await worker.start();
    try {
      const caller = tracer.startSpan('caller-off');
      const run = await context.with(trace.setSpan(context.active(), caller), () => client.start(off, { n: 1 }));
      caller.end();
      assert.equal(await run.result({ timeout: '10s' }), 20);
      assert.deepEqual(exporter.getFinishedSpans().map((s) => s.name).sort(), ['caller-off', 'inside-c1'], "only the application's own spans");
      const { rows } = await fx.db.pool.query(`select metadata from trellis.runs where id = $1 or parent_run_id = $1`, [run.id]);
      assert.deepEqual(rows.map((r) => r.metadata), [{}, {}]);
    } finally {
      await worker.stop();
      await client.close();
    }
  });
});
