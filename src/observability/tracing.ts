/**
 * OpenTelemetry tracing through @opentelemetry/api, an optional peer
 * dependency loaded only when tracing is turned on. A run's trace context
 * travels in its `metadata` as a W3C `traceparent` (and `tracestate`): the
 * client stores the caller's active span there at `start()`, each execution
 * of the run is a span whose parent it is, each step attempt that runs is a
 * span under its execution, and a child run starts with the traceparent of
 * the execution that started it. Because it is a row, the context crosses
 * processes and outlives restarts; any language starting runs from SQL can
 * set it too. See docs/observability.md.
 */
import type * as Api from '@opentelemetry/api';
import type { ClaimedRun } from '../protocol/history.ts';
import { type Outcome, outcomeName } from '../replay/replay.ts';
import type { ExecutionObserver, ObservedStep, StepObservation } from '../replay/observer.ts';
import { importOptional } from './optional.ts';

/** The part of an OpenTelemetry `TracerProvider` Trellis uses (typed loosely so the package stays optional). */
export interface TracerProviderLike {
  getTracer(name: string, version?: string): unknown;
}

export interface TracingOptions {
  /** Where spans go (default: the global provider, `trace.getTracerProvider()`). */
  tracerProvider?: TracerProviderLike | undefined;
}

/** `tracing` of createClient and createWorker: `true` for the global tracer provider. */
export type TracingOption = boolean | TracingOptions;

const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

/**
 * The W3C traceparent of a span context.
 *
 * @example
 * formatTraceparent(span.spanContext()); // '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01'
 */
export function formatTraceparent(sc: { traceId: string; spanId: string; traceFlags: number }): string {
  return `00-${sc.traceId}-${sc.spanId}-${(sc.traceFlags & 0xff).toString(16).padStart(2, '0')}`;
}

/**
 * A W3C traceparent's ids, or undefined for anything else (all-zero ids included).
 *
 * @example
 * parseTraceparent(run.metadata.traceparent)?.traceId;
 */
export function parseTraceparent(value: unknown): { traceId: string; spanId: string; traceFlags: number } | undefined {
  if (typeof value !== 'string') return undefined;
  const m = TRACEPARENT.exec(value);
  if (!m || /^0+$/.test(m[1] as string) || /^0+$/.test(m[2] as string)) return undefined;
  return { traceId: m[1] as string, spanId: m[2] as string, traceFlags: Number.parseInt(m[3] as string, 16) };
}

/** An execution's span and what the worker tells it. */
export interface TracedExecution extends ExecutionObserver {
  /** The execution ended with `outcome` (undefined: it crashed). */
  end(outcome: Outcome | undefined): void;
}

/** The loaded API with a tracer; one per client or worker. */
export class Tracing {
  // Private, so the published declarations never name @opentelemetry/api's types.
  private readonly api: typeof Api;
  private readonly tracer: Api.Tracer;

  /** Use `loadTracing`. `api` is the loaded @opentelemetry/api module. */
  constructor(api: unknown, options: TracingOptions) {
    this.api = api as typeof Api;
    const provider = (options.tracerProvider as Api.TracerProvider | undefined) ?? this.api.trace.getTracerProvider();
    this.tracer = provider.getTracer('trellis');
  }

  /** The trace context of the active span as metadata keys (none when no span is active). */
  activeContext(): Record<string, string> | undefined {
    const span = this.api.trace.getSpan(this.api.context.active());
    const sc = span?.spanContext();
    if (!sc || !this.api.isSpanContextValid(sc)) return undefined;
    const out: Record<string, string> = { traceparent: formatTraceparent(sc) };
    const state = sc.traceState?.serialize();
    if (state) out.tracestate = state;
    return out;
  }

  /**
   * A start's metadata with the caller's trace context added (unless it
   * already carries a traceparent, or no span is active).
   */
  inject(metadata: Record<string, unknown> | undefined): Record<string, unknown> | undefined {
    if (metadata?.traceparent !== undefined) return metadata;
    const trace = this.activeContext();
    return trace ? { ...metadata, ...trace } : metadata;
  }

  /** The remote parent stored in a run's metadata, as a context (the root context without one). */
  private parentOf(metadata: Record<string, unknown> | null | undefined): Api.Context {
    const ids = parseTraceparent(metadata?.traceparent);
    if (!ids) return this.api.ROOT_CONTEXT;
    const state = typeof metadata?.tracestate === 'string' ? this.api.createTraceState(metadata.tracestate) : undefined;
    return this.api.trace.setSpanContext(this.api.ROOT_CONTEXT, { ...ids, isRemote: true, ...(state ? { traceState: state } : {}) });
  }

  /** Start the span of one execution of `run` on the worker `worker`. */
  execution(run: ClaimedRun, worker: string): TracedExecution {
    const { api, tracer } = this;
    const span = tracer.startSpan(`workflow ${run.workflow}`, {
      kind: api.SpanKind.CONSUMER,
      attributes: {
        'trellis.run_id': run.id,
        'trellis.workflow': run.workflow,
        'trellis.workflow_version': run.version,
        'trellis.attempt': run.attempt,
        'trellis.execution': run.execution,
        'trellis.worker': worker,
      },
    }, this.parentOf(run.metadata));
    const context = api.trace.setSpan(api.ROOT_CONTEXT, span);
    let ended = false;
    return {
      run: (body) => api.context.with(context, body),
      step: (step) => this.step(step, context),
      childMetadata: () => ({ traceparent: formatTraceparent(span.spanContext()) }),
      end: (outcome) => {
        if (ended) return;
        ended = true;
        span.setAttribute('trellis.outcome', outcome ? outcomeName(outcome) : 'crashed');
        if (!outcome) span.setStatus({ code: api.SpanStatusCode.ERROR, message: 'the execution crashed' });
        else if (outcome.op === 'fail') span.setStatus({ code: api.SpanStatusCode.ERROR, message: outcome.error.message });
        span.end();
      },
    };
  }

  private step(step: ObservedStep, parent: Api.Context): StepObservation {
    const { api } = this;
    const span = this.tracer.startSpan(`step ${step.name}`, {
      attributes: { 'trellis.step': step.name, 'trellis.step_kind': step.kind, 'trellis.step_attempt': step.attempt, 'trellis.seq': step.seq },
    }, parent);
    const context = api.trace.setSpan(parent, span);
    return {
      run: (body) => api.context.with(context, body),
      end: (error) => {
        if (error !== undefined) {
          if (error instanceof Error) span.recordException(error);
          span.setStatus({ code: api.SpanStatusCode.ERROR, message: String((error as Error)?.message ?? error).slice(0, 200) });
        }
        span.end();
      },
    };
  }
}

/**
 * Load @opentelemetry/api (an optional peer dependency; without it this
 * throws a ValidationError naming it). Clients and workers do this
 * themselves with `tracing: true`.
 *
 * @example
 * const tracing = await loadTracing({ tracerProvider: provider });
 */
export async function loadTracing(options: TracingOptions = {}): Promise<Tracing> {
  const api = await importOptional<typeof Api>('@opentelemetry/api', 'Trellis tracing', () => import('@opentelemetry/api'));
  return new Tracing(api, options);
}
