/** The options and argument types of the client (src/client/client.ts). */
import type pg from 'pg';
import type { Executor } from '../db/queryable.ts';
import type { RunState } from '../db/tables.ts';
import type { WorkflowDefinition } from '../workflow/define.ts';
import type { Duration } from '../workflow/duration.ts';
import type { Logger } from '../workflow/logger.ts';

export interface ClientOptions {
  pool?: pg.Pool;
  connectionString?: string;
  logger?: Logger;
  /**
   * Run starts, signals and result reads as named prepared statements,
   * planned once per connection (default true). Set false behind a pooler
   * that cannot keep them: PgBouncer in transaction mode before 1.21 or
   * without `max_prepared_statements`.
   */
  preparedStatements?: boolean;
  /** Safety-net poll of `result()` in case a NOTIFY is missed (default 5s). */
  resultPollInterval?: Duration;
  /**
   * Hand a started run straight to a worker in this process that uses the
   * same `pool` and serves its workflow, version and queue, when that worker
   * has a free slot and no backlog (default true). The start then leases the
   * run to that worker in its own statement, and the run begins when the
   * start commits, with no NOTIFY and no claim in between; `result()` hears
   * of the end from the worker. The run is as durable as any other: if this
   * process dies, the lease expires and another worker continues it. Not for
   * starts inside a caller's transaction (`tx`), for starts by name without a
   * version, or for a future `runAt`. See docs/decisions/0015-local-hand-off.md.
   */
  handoff?: boolean;
}

export interface StartOptions {
  /** Idempotency key: a second start with the same (workflow, key) returns the first run. */
  key?: string;
  queue?: string;
  /**
   * The run's flow-control group in its queue (1-200 characters, e.g. a
   * tenant id): `keyConcurrency` of the queue limits running runs per key,
   * and claims rotate across keys. See `Client.setQueue`.
   */
  concurrencyKey?: string;
  /** Higher runs first (default 0). */
  priority?: number;
  /** Do not start before this time. */
  runAt?: Date | string;
  metadata?: Record<string, unknown>;
  /** Only for starts by name: pin this version (default: the newest registered). */
  version?: string;
  /** The caller's transaction: a pg client (or pool), or a Kysely instance or transaction. */
  tx?: Executor;
}

export interface RunHandle<O> {
  readonly id: string;
  /** Await the run's output (throws WorkflowFailedError / CancelledError / TimeoutError). */
  result(options?: { timeout?: Duration }): Promise<O>;
}

export interface ListFilter {
  workflow?: string;
  status?: RunState | readonly RunState[];
  queue?: string;
  key?: string;
  createdAfter?: Date;
  createdBefore?: Date;
  /** Page size (default 50, at most 1000). */
  limit?: number;
  /** `nextCursor` of the previous page. */
  cursor?: string;
}

/** A run by id, or by the (workflow, key) it was started with. */
export type RunRef = string | { workflow: string | WorkflowDefinition; key: string };
