/**
 * Prometheus metrics through prom-client, an optional peer dependency loaded
 * only when metrics are asked for. Workers count what they do (runs started
 * and finished, executions, step durations, claims, lease losses, listener
 * reconnects); the queue gauges are read from SQL when scraped, in one
 * statement over the partial index of pending runs, so nothing is polled
 * between scrapes. See docs/observability.md.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type * as PromClient from 'prom-client';
import { consumerList, hookCounts } from '../db/events.ts';
import { type Queryable, queryRows } from '../db/queryable.ts';
import { importOptional } from './optional.ts';

/** The part of a prom-client `Registry` Trellis uses (typed loosely so prom-client stays optional). */
export interface MetricsRegistry {
  metrics(): Promise<string>;
  readonly contentType: string;
}

export interface MetricsOptions {
  /** Where the queue gauges are read from at scrape time (a pg Pool). */
  pool: Queryable;
  /**
   * A prom-client `Registry` to register in (default: a new one). Workers
   * given the same registry share one set of metrics (counts add up).
   */
  registry?: MetricsRegistry | undefined;
}

/** Bucket bounds of the step and claim duration histograms, in seconds. */
const DURATION_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300];

const QUEUES_SQL = `select queue, pg_catalog.sum(n)::int as depth, pg_catalog.max(age)::float8 as age from (
  select queue, pg_catalog.count(*) as n, extract(epoch from trellis.now() - pg_catalog.min(run_at)) as age
    from trellis.runs where status = 'pending' and run_at <= trellis.now() group by queue
  union all
  select distinct queue, 0, 0 from trellis.workflows) q group by queue`;

type Metrics = ReturnType<typeof build>;

/** Register Trellis's metrics in `registry`, or take the ones a first call registered there. */
function build(prom: typeof PromClient, registry: PromClient.Registry, readQueues: () => Promise<{ queue: string; depth: number; age: number }[]>,
  pool: Queryable) {
  const registers = [registry];
  const counter = <L extends string>(name: string, help: string, labelNames: L[]) =>
    (registry.getSingleMetric(name) as PromClient.Counter<L> | undefined) ?? new prom.Counter({ name, help, labelNames, registers });
  const histogram = <L extends string>(name: string, help: string, labelNames: L[]) =>
    (registry.getSingleMetric(name) as PromClient.Histogram<L> | undefined)
      ?? new prom.Histogram({ name, help, labelNames, buckets: DURATION_BUCKETS, registers });
  const queueGauge = (name: string, help: string, pick: (q: { depth: number; age: number }) => number) =>
    (registry.getSingleMetric(name) as PromClient.Gauge<'queue'> | undefined) ?? new prom.Gauge({
      name, help, labelNames: ['queue'], registers,
      async collect() {
        this.reset();
        for (const q of await readQueues()) this.set({ queue: q.queue }, pick(q));
      },
    });
  /** A gauge of one label whose values are read at scrape time by `read` ([label value, value] pairs). */
  const sqlGauge = <L extends string>(name: string, label: L, help: string, read: () => Promise<[string, number][]>) =>
    (registry.getSingleMetric(name) as PromClient.Gauge<L> | undefined) ?? new prom.Gauge<L>({
      name, help, labelNames: [label], registers,
      async collect() {
        const values = await read();
        this.reset();
        for (const [key, n] of values) this.set({ [label]: key } as Partial<Record<L, string>>, n);
      },
    });
  return {
    started: counter('trellis_runs_started_total', 'Runs whose first execution began on this process, by workflow.', ['workflow']),
    finished: counter('trellis_runs_finished_total', 'Runs this process ended, by workflow and status (completed, failed, cancelled).', ['workflow', 'status']),
    executions: counter('trellis_run_executions_total',
      'Executions of runs on this process, by workflow and outcome (completed, failed, cancelled, wait, release, pause, continue, abandoned).',
      ['workflow', 'outcome']),
    steps: histogram('trellis_step_duration_seconds', 'Duration of step attempts whose body ran on this process, by workflow, kind and status (completed, failed).',
      ['workflow', 'kind', 'status']),
    claims: histogram('trellis_claim_duration_seconds', 'Round trip of one batched claim of due runs (trellis.run_claim).', []),
    claimed: counter('trellis_runs_claimed_total', 'Runs claimed by the workers of this process.', []),
    leaseLosses: counter('trellis_lease_losses_total', 'Executions stopped because their lease was lost (expired and taken, or released), by workflow.', ['workflow']),
    reconnects: counter('trellis_listener_reconnects_total', 'Times a worker\'s LISTEN connection was re-established after its first connect.', []),
    depth: queueGauge('trellis_queue_depth', 'Runs pending and due now, by queue (read from SQL at scrape time).', (q) => q.depth),
    oldest: queueGauge('trellis_queue_oldest_pending_age_seconds',
      'Age of the oldest pending due run, by queue: how long it has been due (read from SQL at scrape time).', (q) => q.age),
    hooks: sqlGauge('trellis_hook_deliveries', 'status',
      'Lifecycle hook deliveries not yet delivered, by status: pending, running, parked (it kept failing; read from SQL at scrape time).',
      async () => Object.entries(await hookCounts(pool))),
    backlog: sqlGauge('trellis_consumer_backlog_events', 'consumer',
      'Events kept after each durable consumer\'s acknowledged position, counted up to 10000 (read from SQL at scrape time).',
      async () => (await consumerList(pool)).map((c) => [c.name, c.behind])),
  };
}

/**
 * Trellis's Prometheus metrics in one registry: scrape them as text, serve
 * them from `handler` in any Node HTTP server, or from a worker's own port
 * (`createWorker({ metrics: { port } })`). Made by `createMetrics`, or by a
 * worker with `metrics` set (`worker.metrics`).
 *
 * @example
 * const worker = createWorker({ pool, workflows: [greet], metrics: true });
 * await worker.start();
 * const text = await worker.metrics!.scrape(); // the Prometheus text format
 */
export class TrellisMetrics {
  /** The prom-client Registry holding the metrics (add your own metrics to it too). */
  readonly registry: MetricsRegistry;
  /** The metric objects workers record into (private: its types are prom-client's, which may be absent). */
  private readonly m: Metrics;
  private queues: Promise<{ queue: string; depth: number; age: number }[]> | undefined;

  /** Use `createMetrics`. `prom` is the loaded prom-client module. */
  constructor(prom: unknown, options: MetricsOptions) {
    const client = prom as typeof PromClient;
    const registry = (options.registry as PromClient.Registry | undefined) ?? new client.Registry();
    this.registry = registry;
    this.m = build(client, registry, () => this.readQueues(options.pool), options.pool);
  }

  /** One SQL read per scrape for both queue gauges (they collect at the same time). */
  private readQueues(pool: Queryable): Promise<{ queue: string; depth: number; age: number }[]> {
    if (!this.queues) {
      this.queues = queryRows<{ queue: string; depth: number; age: number }>(pool, QUEUES_SQL)
        .finally(() => setImmediate(() => (this.queues = undefined)));
    }
    return this.queues;
  }

  /** The metrics in the Prometheus text format. */
  scrape(): Promise<string> {
    return this.registry.metrics();
  }

  /**
   * A Node request handler that answers every request with the metrics
   * (mount it at `/metrics`); a failed scrape (the database is down) is a 503.
   *
   * @example
   * const metrics = await createMetrics({ pool });
   * http.createServer((req, res) => (req.url === '/metrics' ? metrics.handler(req, res) : app(req, res))).listen(8080);
   */
  readonly handler = (req: IncomingMessage, res: ServerResponse): void => {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
    this.scrape().then(
      (text) => res.writeHead(200, { 'content-type': this.registry.contentType }).end(req.method === 'HEAD' ? undefined : text),
      (error: unknown) => res.writeHead(503, { 'content-type': 'text/plain' }).end(`metrics unavailable: ${String(error).slice(0, 200)}\n`),
    );
  };
}

/**
 * Create Trellis's Prometheus metrics (prom-client must be installed: it is
 * an optional peer dependency; without it this throws a ValidationError).
 * Pass the result to workers with `createWorker({ metrics })`, mount
 * `handler` in your server, or read `scrape()`.
 *
 * @example
 * import { Registry } from 'prom-client';
 * const metrics = await createMetrics({ pool, registry: new Registry() });
 * const worker = createWorker({ pool, workflows: [greet], metrics });
 * console.log(await metrics.scrape());
 */
export async function createMetrics(options: MetricsOptions): Promise<TrellisMetrics> {
  const prom = await importOptional<typeof PromClient>('prom-client', 'Trellis metrics', () => import('prom-client'));
  return new TrellisMetrics(prom, options);
}
