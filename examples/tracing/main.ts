/**
 * Tracing: one OpenTelemetry trace from the request that starts a run,
 * through each execution of the run and its steps, into its child runs,
 * executed here by a second worker (as another service would). The trace
 * context travels in the runs' rows (a W3C `traceparent` in their
 * metadata), so it crosses processes and restarts the same way.
 *
 * Spans go to the console, one line each as they end, and the whole trace
 * is printed as a tree at the end.
 *
 *   npm install @opentelemetry/api @opentelemetry/sdk-trace-base @opentelemetry/context-async-hooks
 *   npx tsx examples/tracing/main.ts
 * Uses DATABASE_URL when set, else an embedded PostgreSQL.
 */
import { context, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import {
  BasicTracerProvider, InMemorySpanExporter, type ReadableSpan, SimpleSpanProcessor, type SpanExporter,
} from '@opentelemetry/sdk-trace-base';
import pg from 'pg';
import { z } from 'zod';
import { createClient, createWorker, defineWorkflow } from '../../src/index.ts';
import { exampleDatabase } from '../support/database.ts';

// The application's OpenTelemetry setup. Trellis only uses @opentelemetry/api;
// the SDK, its exporters and the context manager are the application's choice.
const consoleExporter: SpanExporter = {
  export(spans, done) {
    for (const s of spans) {
      console.log(`span ${s.name} trace=${s.spanContext().traceId} id=${s.spanContext().spanId} parent=${s.parentSpanContext?.spanId ?? '-'}`);
    }
    done({ code: 0 });
  },
  shutdown: async () => {},
};
const memory = new InMemorySpanExporter();
context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(consoleExporter), new SimpleSpanProcessor(memory)] });
trace.setGlobalTracerProvider(provider);
const tracer = trace.getTracer('shop');

const packItem = defineWorkflow(
  { name: 'pack-item', queue: 'warehouse', input: z.object({ sku: z.string() }) },
  async (ctx, { sku }) => {
    const bin = await ctx.step('locate', () => `bin-${sku.length}`);
    return ctx.step('pack', () => `${sku}@${bin}`);
  },
);

const shipOrder = defineWorkflow(
  { name: 'ship-order', input: z.object({ order: z.string(), skus: z.array(z.string()) }) },
  async (ctx, { order, skus }) => {
    await ctx.step('reserve', () => true);
    const parcels = await Promise.all(skus.map((sku) => ctx.child(packItem, { sku }, { key: `${order}-${sku}` })));
    return ctx.step('ship', () => ({ order, parcels }));
  },
);

const database = await exampleDatabase();
const pool = new pg.Pool({ connectionString: database.url });
pool.on('error', (error) => console.error('idle connection error:', error.message));
// `tracing: true` uses the global tracer provider set above.
const shop = createWorker({ pool, workflows: [shipOrder], tracing: true });
const warehouse = createWorker({ pool, workflows: [packItem], tracing: true });
const client = createClient({ pool, tracing: true });
try {
  await Promise.all([shop.start(), warehouse.start()]);
  // The caller's span (an HTTP request, say) is active while it starts the run.
  const output = await tracer.startActiveSpan('POST /orders', async (span) => {
    const run = await client.start(shipOrder, { order: 'A-17', skus: ['mug', 'teapot'] });
    span.end();
    return run.result({ timeout: '30s' });
  });
  console.log('result:', JSON.stringify(output));

  // The last execution span ends just after the run's end commits.
  const deadline = Date.now() + 5000;
  while (!memory.getFinishedSpans().some((s) => s.attributes['trellis.outcome'] === 'completed' && s.name === 'workflow ship-order')) {
    if (Date.now() > deadline) throw new Error('the last execution span never ended');
    await new Promise((r) => setTimeout(r, 20));
  }
  printTree(memory.getFinishedSpans());
} finally {
  await Promise.all([shop.stop(), warehouse.stop()]);
  await client.close();
  await pool.end();
  await database.stop();
}

/** The trace as an indented tree, children in start order. */
function printTree(spans: readonly ReadableSpan[]): void {
  const children = new Map<string | undefined, ReadableSpan[]>();
  for (const s of spans) {
    const parent = s.parentSpanContext?.spanId;
    const list = children.get(parent) ?? [];
    list.push(s);
    children.set(parent, list);
  }
  const time = (s: ReadableSpan) => s.startTime[0] * 1e9 + s.startTime[1];
  const print = (s: ReadableSpan, depth: number) => {
    const outcome = s.attributes['trellis.outcome'];
    console.log(`tree ${'  '.repeat(depth)}${s.name}${outcome ? ` (${outcome})` : ''}`);
    for (const c of (children.get(s.spanContext().spanId) ?? []).sort((a, b) => time(a) - time(b))) print(c, depth + 1);
  };
  console.log(`trace ${spans[0]?.spanContext().traceId} has ${spans.length} spans in ${new Set(spans.map((s) => s.spanContext().traceId)).size} trace(s)`);
  for (const root of children.get(undefined) ?? []) print(root, 0);
}
