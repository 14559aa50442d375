/**
 * What a worker reports to metrics and tracing, behind one object the worker
 * calls at a few points (a claim, a listener connect, an execution and its
 * steps, its end). Built at `worker.start()` only when metrics or tracing is
 * on; otherwise the worker holds `undefined` and each point costs one check.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { ClaimedRun } from '../protocol/history.ts';
import type { Queryable } from '../db/queryable.ts';
import { ERROR_CODES, isTrellisError, ValidationError } from '../errors.ts';
import { type Outcome, outcomeName } from '../replay/replay.ts';
import type { ExecutionObserver, StepObservation } from '../replay/observer.ts';
import { createMetrics, type MetricsRegistry, TrellisMetrics } from './metrics.ts';
import { loadTracing, type TracedExecution, type TracingOption } from './tracing.ts';

/** How a worker serves metrics (see `WorkerOptions.metrics`). */
export interface WorkerMetricsOptions {
  /** A prom-client Registry to register in (default: a new one). */
  registry?: MetricsRegistry | undefined;
  /** Serve `GET /metrics` on this port (0: any free port; see `worker.metricsUrl`). Default: no server. */
  port?: number | undefined;
  /** The address the metrics server listens on (default 127.0.0.1). */
  host?: string | undefined;
}

export type WorkerMetricsOption = boolean | TrellisMetrics | WorkerMetricsOptions;
export type { TracingOption };

/** One execution as observed; `end` is called once with how it ended (undefined: it crashed). */
export interface ObservedExecution extends ExecutionObserver {
  end(outcome: Outcome | undefined): void;
}

const identity = <T>(body: () => T): T => body();
const FINISHED = new Set(['completed', 'failed', 'cancelled']);

export class WorkerObserver {
  private server: Server | undefined;
  /** The URL of the worker's metrics endpoint, when it serves one. */
  metricsUrl: string | undefined;

  private constructor(
    readonly metrics: TrellisMetrics | undefined,
    private readonly tracing: Awaited<ReturnType<typeof loadTracing>> | undefined,
    private readonly worker: string,
  ) {}

  /** Undefined when neither metrics nor tracing is on. */
  static async create(o: { metrics?: WorkerMetricsOption | undefined; tracing?: TracingOption | undefined; pool: Queryable; worker: string }): Promise<WorkerObserver | undefined> {
    if (!o.metrics && !o.tracing) return undefined;
    const spec = o.metrics === true ? {} : o.metrics || undefined;
    if (spec && !(spec instanceof TrellisMetrics) && spec.port !== undefined) {
      if (!Number.isInteger(spec.port) || spec.port < 0 || spec.port > 65535) throw new ValidationError('metrics.port must be an integer from 0 to 65535');
    }
    const metrics = spec instanceof TrellisMetrics ? spec : spec ? await createMetrics({ pool: o.pool, registry: spec.registry }) : undefined;
    const tracing = o.tracing ? await loadTracing(o.tracing === true ? {} : o.tracing) : undefined;
    const observer = new WorkerObserver(metrics, tracing, o.worker);
    if (metrics && spec && !(spec instanceof TrellisMetrics) && spec.port !== undefined) await observer.listen(metrics, spec.port, spec.host ?? '127.0.0.1');
    return observer;
  }

  private async listen(metrics: TrellisMetrics, port: number, host: string): Promise<void> {
    const server = createServer((req, res) => {
      if (new URL(req.url ?? '/', 'http://x').pathname === '/metrics') metrics.handler(req, res);
      else res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: try /metrics\n');
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => resolve());
    });
    this.server = server;
    const address = server.address() as AddressInfo;
    this.metricsUrl = `http://${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}/metrics`;
  }

  /** A batched claim took `ms` and returned `count` runs. */
  claimed(ms: number, count: number): void {
    if (!this.metrics) return;
    this.metrics['m'].claims.observe(ms / 1000);
    if (count) this.metrics['m'].claimed.inc(count);
  }

  /** The LISTEN connection (re)connected. */
  listenerConnected(reconnect: boolean): void {
    if (reconnect) this.metrics?.['m'].reconnects.inc();
  }

  /** An execution of `run` begins. */
  execution(run: ClaimedRun): ObservedExecution {
    const m = this.metrics?.['m'];
    const traced: TracedExecution | undefined = this.tracing?.execution(run, this.worker);
    const workflow = run.workflow;
    if (m && run.attempt === 1 && run.execution === 1) m.started.inc({ workflow });
    let ended = false;
    return {
      run: traced ? traced.run : identity,
      childMetadata: () => traced?.childMetadata(),
      step: (step): StepObservation => {
        const span = traced?.step(step);
        const started = m ? performance.now() : 0;
        return {
          run: span ? span.run : identity,
          end: (error) => {
            span?.end(error);
            m?.steps.observe({ workflow, kind: step.kind, status: error === undefined ? 'completed' : 'failed' }, (performance.now() - started) / 1000);
          },
        };
      },
      end: (outcome) => {
        if (ended) return;
        ended = true;
        traced?.end(outcome);
        if (!m) return;
        const kind = outcome ? outcomeName(outcome) : 'crashed';
        m.executions.inc({ workflow, outcome: kind });
        if (FINISHED.has(kind)) m.finished.inc({ workflow, status: kind });
        if (outcome?.op === 'abandoned' && isTrellisError(outcome.reason) && outcome.reason.code === ERROR_CODES.leaseLost) m.leaseLosses.inc({ workflow });
      },
    };
  }

  /** Stop the metrics server, if any. */
  async close(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}
