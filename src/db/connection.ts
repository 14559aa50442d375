/**
 * Bounded waits on the connections Trellis opens itself (a worker's or
 * client's own pool from `connectionString`, the LISTEN connections,
 * `migrate(url)`): a connect timeout, a query timeout (a client-side read
 * timeout: a query on a connection that died silently fails, and the
 * connection is dropped, instead of waiting forever) and TCP keepalive.
 * Nothing is sent as a startup parameter or SET, so the same settings work
 * through PgBouncer; a server-side statement_timeout belongs on the role
 * (`alter role ... set statement_timeout`). A pool the application passes
 * in keeps its own settings; docs/reliability.md says what to set there.
 */
import { type ClientConfig, Pool, type PoolClient } from './pg.ts';
import { DatabaseError, ValidationError } from '../errors.ts';
import { toTrellisError } from './errors.ts';
import type { Duration } from '../protocol/duration.ts';
import { durationIn } from '../protocol/option-bounds.ts';

/**
 * The bounded waits of the connections Trellis opens (worker, client).
 *
 * @example
 * createWorker({ connectionString, workflows, connectTimeout: '5s', queryTimeout: '30s', keepAlive: '10s' });
 */
export interface ConnectionTimeouts {
  /**
   * Give up connecting after this long (default 10s).
   *
   * @example
   * const worker = createWorker({ connectionString: 'postgres://app@db/app', workflows: [onboard], connectTimeout: '5s' });
   */
  connectTimeout?: Duration | undefined;
  /**
   * Give up on one statement after this long (default 30s): a client-side
   * read timeout, which also catches a connection that died without a FIN
   * or RST; the connection is then dropped. `false`: none.
   *
   * @example
   * const client = createClient({ connectionString: 'postgres://app@db/app', queryTimeout: '1 minute' });
   */
  queryTimeout?: Duration | false | undefined;
  /**
   * TCP keepalive: the first probe after this long idle (default 10s). `false`: off.
   *
   * @example
   * const worker = createWorker({ connectionString: 'postgres://app@db/app', workflows: [onboard], keepAlive: '30s' });
   */
  keepAlive?: Duration | false | undefined;
}

export interface ResolvedTimeouts {
  connectMs: number;
  queryMs: number | undefined;
  keepAliveMs: number | undefined;
}

export const DEFAULT_TIMEOUTS = { connectMs: 10_000, queryMs: 30_000, keepAliveMs: 10_000 } as const;

/** Check and default the three options (ValidationError naming the option). */
export function resolveTimeouts(o: ConnectionTimeouts): ResolvedTimeouts {
  const b = TIMEOUT_BOUNDS;
  const connectMs = durationIn(o.connectTimeout ?? DEFAULT_TIMEOUTS.connectMs, 'connectTimeout', b.connectMs);
  const queryMs = o.queryTimeout === false ? undefined : durationIn(o.queryTimeout ?? DEFAULT_TIMEOUTS.queryMs, 'queryTimeout', b.queryMs);
  const keepAliveMs = o.keepAlive === false ? undefined : durationIn(o.keepAlive ?? DEFAULT_TIMEOUTS.keepAliveMs, 'keepAlive', b.keepAliveMs);
  return Object.freeze({ connectMs, queryMs, keepAliveMs });
}

/**
 * At least 1 ms (0 would mean "no timeout" to pg) and at most a day (a
 * timer beyond 2^31 - 1 ms fires at once in Node; nothing needs a wait longer
 * than a day on one connection). keepAlive 0 sends probes at the OS default.
 */
export const TIMEOUT_BOUNDS = {
  connectMs: [1, 86_400_000],
  queryMs: [1, 86_400_000],
  keepAliveMs: [0, 86_400_000],
} as const;

/** The pg client settings that bound every wait on one connection. */
export function boundedConfig(t: ResolvedTimeouts): ClientConfig {
  return {
    connectionTimeoutMillis: t.connectMs,
    ...(t.queryMs === undefined ? {} : { query_timeout: t.queryMs }),
    ...(t.keepAliveMs === undefined ? { keepAlive: false } : { keepAlive: true, keepAliveInitialDelayMillis: t.keepAliveMs }),
  };
}

/** A pool of Trellis's own, with bounded waits. */
export function ownPool(connectionString: string, applicationName: string, t: ResolvedTimeouts): Pool {
  return new Pool({ connectionString, max: 10, application_name: applicationName, ...boundedConfig(t) });
}

/** A connection checked out of a pool with its 'error' listener on (`checkout`). */
export interface Checkout {
  client: PoolClient;
  /** The 'error' the connection emitted while checked out (it is broken), if any. */
  broken(): unknown;
  /** Put it back (with the listener off); a broken one, or `destroy`, is destroyed, never pooled. */
  release(destroy?: Error | boolean): void;
}

/**
 * Check a connection out of `pool`, listening for its 'error' from the
 * moment pg-pool hands it over. A connection that breaks while checked out
 * (its backend terminated, a failover, an idle_in_transaction_session_timeout)
 * emits 'error', which pg-pool listens to only while the connection is idle,
 * and an unheard 'error' ends the process. A listener added after `await
 * pool.connect()` comes too late for a break that arrives in the same socket
 * read as the reply that completed the checkout (a backend terminated just
 * as its new connection became ready): pg emits that 'error' before the
 * awaiting code resumes. pg-pool calls a `connect` callback synchronously
 * as it hands the connection over, so the listener goes on there. Heard,
 * the break fails the next statement on the connection instead.
 *
 * @example
 * const c = await checkout(pool);
 * try { await c.client.query('select 1'); } finally { c.release(); }
 */
export function checkout(pool: Pool): Promise<Checkout> {
  return new Promise((resolve, reject) => {
    let settled = false;
    const take = (error: unknown, client: PoolClient | undefined) => {
      if (settled) return;
      settled = true;
      if (error || !client) return reject(error ?? new DatabaseError('the pool handed over no connection', { retryable: true }));
      let broken: unknown;
      const heard = (e: unknown) => {
        broken ??= e;
      };
      client.on('error', heard);
      let released = false;
      resolve({
        client,
        broken: () => broken,
        release: (destroy) => {
          if (released) return;
          released = true;
          client.removeListener('error', heard);
          client.release(destroy || (broken === undefined ? undefined : broken instanceof Error ? broken : new Error(String(broken))));
        },
      });
    };
    const returned = (pool.connect as (cb: (error: unknown, client?: PoolClient) => void) => unknown)((error, client) => take(error, client));
    // A pool-shaped object that only returns a promise (another pool library, a wrapper) ignores the
    // callback: its connection is taken when the promise settles (pg-pool returns nothing with a callback).
    if (returned && typeof (returned as Promise<PoolClient>).then === 'function') {
      (returned as Promise<PoolClient>).then((client) => take(undefined, client), (error: unknown) => take(error, undefined));
    }
  });
}

/** The pool as Kysely's PostgresDialect takes it (typed there; this layer does not import Kysely). */
export interface GuardedPool {
  connect(): Promise<{ query(...args: unknown[]): unknown; release(destroy?: boolean): void }>;
  end(): Promise<void>;
}

/**
 * The pool as Kysely takes it, each connection guarded while Kysely holds
 * it (`checkout`): a connection that breaks while checked out fails the
 * statement that meets it (a transaction a connector or a trigger runs
 * rolls back and is retried), and is destroyed at its release. Its errors
 * are pg's, as an app's own queries through `client.db` and a connector
 * handler's `tx` expect (`code` the SQLSTATE: a handler that skips a
 * duplicate on 23505); the client's own calls map them to TrellisErrors
 * where they return. The listener is removed at the release, so a caller's
 * own use of its pool is untouched.
 *
 * @example
 * const db = new Kysely<TrellisTables>({ dialect: new PostgresDialect({ pool: guardedPool(pool) as never }) });
 */
export function guardedPool(pool: Pool): GuardedPool {
  return {
    async connect() {
      const c = await checkout(pool);
      return {
        query: (...args: unknown[]) => (c.client.query as (...a: unknown[]) => unknown)(...args),
        release: (destroy?: boolean) => c.release(destroy),
      };
    },
    end: () => pool.end(),
  };
}

/**
 * The LISTEN connection's settings: a direct `listenUrl` when given (for a
 * pool through PgBouncer in transaction mode), else the pool's own, with
 * bounded waits under either.
 */
export function listenConnection(pool: Pool, listenUrl: string | undefined, t: ResolvedTimeouts): ClientConfig {
  if (listenUrl !== undefined && (typeof listenUrl !== 'string' || !/^postgres(ql)?:\/\//.test(listenUrl))) {
    throw new ValidationError('listenUrl must be a postgres:// connection string');
  }
  const base = listenUrl ? { connectionString: listenUrl } : (pool as unknown as { options?: ClientConfig | undefined }).options ?? {};
  return { ...boundedConfig(t), ...base };
}

/**
 * Await `promise`, but at most `ms`: then reject with a retryable
 * DatabaseError (for a pool the application passed in, whose waits Trellis
 * cannot bound otherwise). The late result, if any, is handed to `late`.
 */
export async function within<T>(promise: Promise<T>, ms: number, what: string, late?: (value: T) => void): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  let timedOut = false;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      timedOut = true;
      reject(new DatabaseError(`${what}: no answer from the database within ${ms} ms`, { retryable: true, details: { code: 'timeout' } }));
    }, ms);
  });
  promise.then((value) => {
    if (timedOut) late?.(value);
  }, () => undefined);
  try {
    return await Promise.race([promise, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

/** PostgreSQL's type oid of jsonb. */
const JSONB_OID = 3802;

/**
 * The function the pool's connections parse jsonb text with: pg's default,
 * or whatever the app set (`types` in the pool's config, or
 * `pg.types.setTypeParser` on its copy of pg). Undefined if its connections
 * do not say. Checks a connection out and back in; sends nothing.
 */
export async function jsonbParserOf(pool: Pool): Promise<((text: string) => unknown) | undefined> {
  const checkedOut = await checkout(pool).catch((error: unknown) => {
    throw toTrellisError(error);
  });
  const connection = checkedOut.client;
  try {
    const get = (connection as { getTypeParser?: ((oid: number, format: 'text') => unknown) | undefined }).getTypeParser;
    const parse = typeof get === 'function' ? get.call(connection, JSONB_OID, 'text') : undefined;
    return typeof parse === 'function' ? (parse as (text: string) => unknown) : undefined;
  } finally {
    checkedOut.release();
  }
}
