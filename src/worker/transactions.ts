/**
 * The transactions of `ctx.transaction`: the step's body and the fenced
 * record of its result in one transaction on a connection of the worker's
 * pool, so the body's writes and the checkpoint commit together or not at
 * all (docs/workflows.md, "Transactional steps").
 *
 * Errors: the body's own error is rethrown as it is (a failed attempt; the
 * retry policy decides). A serialization failure, a deadlock or a lost
 * connection before COMMIT was sent rolled everything back, so the body
 * runs again in a new transaction while the run's lease is held. Anything
 * that went wrong in the transaction's own statements (BEGIN, the record,
 * COMMIT) rejects with a TransactionFault: a refused record is a lost lease;
 * a COMMIT whose answer never came may or may not have committed, and the
 * next execution replays whichever it was.
 */
import { ConfigurationError, LeaseLostError, ValidationError } from '../errors.ts';
import { encodeOps, type Fence, type StepOp } from '../protocol/checkpoint.ts';
import type { Pool, PoolClient } from '../db/pg.ts';
import { toTrellisError } from '../db/errors.ts';
import { type Checkout, checkout } from '../db/connection.ts';
import { isTransient, sleep, transientDelay } from '../db/transient.ts';
import { type TransactRequest, TransactionFault } from '../replay/replay.ts';
import type { Logger } from '../protocol/logger.ts';
import type { TransactionClient } from '../workflow/context.ts';

const BEGIN = {
  'read committed': 'begin isolation level read committed',
  'repeatable read': 'begin isolation level repeatable read',
  serializable: 'begin isolation level serializable',
} as const;

export interface TransactionHost {
  pool: Pool;
  /** Bounds the transactions open at once (each holds a connection of the pool the engine needs too). */
  slots: TransactionSlots;
  /** Whether the worker still holds the run's lease (the body runs again only while it does). */
  holds: () => boolean;
  /** Renew the run's lease and keep heartbeats off its row until the returned function is called. */
  quiet: () => Promise<() => void>;
  log: Logger;
}

export async function runTransaction(host: TransactionHost, fence: Fence, work: (tx: TransactionClient) => Promise<StepOp>,
  request: TransactRequest): Promise<void> {
  if (host.slots.size < 1) {
    throw new ConfigurationError(`ctx.transaction needs a worker pool of at least 3 connections (this one has ${host.slots.size + 2}): `
      + 'a transaction holds one while its body runs, and the worker\'s heartbeats and checkpoints need two');
  }
  const free = await host.slots.take(request.signal);
  // Above read committed, the record's lock on the run's row fails to
  // serialize if the row changed after the transaction's snapshot, which a
  // heartbeat does every few seconds: the lease is renewed before each
  // transaction, and heartbeats leave the row alone while it is open (so
  // each body has one lease's length; decision 0035).
  const strict = request.isolation === 'repeatable read' || request.isolation === 'serializable';
  let loud: (() => void) | undefined;
  try {
    for (let attempt = 1; ; attempt++) {
      if (strict) {
        loud?.();
        try {
          loud = await host.quiet();
        } catch (error) {
          throw new TransactionFault(toTrellisError(error));
        }
      }
      try {
        return await once(host, fence, work, request);
      } catch (error) {
        if (!(error instanceof RolledBack) || !rerunnable(error.cause) || request.signal.aborted) throw unwrap(error);
        if (!host.holds()) throw new TransactionFault(new LeaseLostError(`run ${fence.run}: lease ran out while its transaction kept failing`, { cause: error.cause }));
        host.log.warn('transaction rolled back by the database, running it again', { runId: fence.run, error: String(error.cause) });
        await sleep(transientDelay(attempt));
      }
    }
  } finally {
    loud?.();
    free();
  }
}

/**
 * Whether a rolled-back transaction runs again: a serialization failure, a
 * deadlock or a lost connection. Not a query that outran the pool's
 * `queryTimeout` (node-postgres's "Query read timeout": the server may still
 * be running it, and running the body again would only time out again).
 */
function rerunnable(error: unknown): boolean {
  return isTransient(error) && !outranQueryTimeout(error);
}

/** node-postgres's own client-side timeout of one query (the pool's `queryTimeout`). */
function outranQueryTimeout(error: unknown): boolean {
  return /^Query read timeout/.test(String((error as { message?: unknown } | undefined)?.message ?? ''));
}

/**
 * The transactions a worker may have open at once: each holds a connection
 * of the worker's pool for as long as its body runs, and the worker's
 * heartbeats, claims and grouped checkpoints need connections of that pool
 * too (a pool full of long bodies would starve the heartbeats until leases
 * ran out). So two connections of the pool are always left to the engine.
 */
export class TransactionSlots {
  private open = 0;
  /** `size`: the pool's size less two (less than one: ctx.transaction refuses to run with ConfigurationError). */
  private readonly waiting: (() => void)[] = [];

  constructor(readonly size: number) {}

  /** Wait for a slot (rejecting with the abort reason if `signal` fires first); returns its release. */
  take(signal: AbortSignal): Promise<() => void> {
    if (signal.aborted) return Promise.reject(signal.reason);
    const slot = () => {
      let released = false;
      return () => {
        if (released) return;
        released = true;
        const next = this.waiting.shift();
        if (next) next();
        else this.open--;
      };
    };
    if (this.open < this.size) {
      this.open++;
      return Promise.resolve(slot());
    }
    return new Promise((resolve, reject) => {
      const granted = () => {
        signal.removeEventListener('abort', aborted);
        resolve(slot());
      };
      const aborted = () => {
        this.waiting.splice(this.waiting.indexOf(granted), 1);
        reject(signal.reason);
      };
      this.waiting.push(granted);
      signal.addEventListener('abort', aborted, { once: true });
    });
  }
}

/** The body (or a statement of ours before COMMIT) failed and the transaction is rolled back: `cause` is why. */
class RolledBack {
  constructor(readonly cause: unknown, readonly ours: boolean) {}
}

function unwrap(error: unknown): unknown {
  if (!(error instanceof RolledBack)) return error;
  return error.ours ? new TransactionFault(toTrellisError(error.cause)) : error.cause;
}

/** How long a body may go on after its attempt was aborted before its connection is closed under it (which rolls back). */
const ABORT_GRACE_MS = 2000;

async function once(host: TransactionHost, fence: Fence, work: (tx: TransactionClient) => Promise<StepOp>, request: TransactRequest): Promise<void> {
  let checkedOut: Checkout;
  try {
    // Its 'error' heard from the moment pg-pool hands it over (checkout): a
    // connection that breaks while checked out (its backend terminated, an
    // idle_in_transaction_session_timeout) fails the statement that meets it
    // instead of ending the process.
    checkedOut = await checkout(host.pool);
  } catch (error) {
    throw new RolledBack(error, true);
  }
  const client: PoolClient = checkedOut.client;
  let broken: unknown;
  let committing = false;
  // Once the attempt is aborted (timeout, cancel, lost lease), the query the
  // body is waiting on is cancelled: the transaction never commits. The
  // backend is the one pg_backend_pid() named inside the transaction (not
  // the key the connection was opened with: through PgBouncer that is the
  // pooler's own), and the cancel has returned before ROLLBACK is sent, so
  // it cannot reach a later session of that backend. A body that still has
  // not settled after ABORT_GRACE_MS loses its connection: closing it rolls
  // the transaction back, and frees the connection and the slot.
  let pid: number | undefined;
  let cancelling: Promise<unknown> | undefined;
  let ending = false;
  let giveUp: (reason: unknown) => void = () => {};
  const givenUp = new Promise<never>((_, reject) => {
    giveUp = reject;
  });
  givenUp.catch(() => undefined);
  let grace: ReturnType<typeof setTimeout> | undefined;
  const cancel = () => {
    if (committing || ending) return;
    if (pid !== undefined) cancelling = host.pool.query('select pg_catalog.pg_cancel_backend($1::integer)', [pid]).catch(() => undefined);
    grace = setTimeout(() => giveUp(request.signal.reason), ABORT_GRACE_MS);
  };
  request.signal.addEventListener('abort', cancel, { once: true });
  try {
    let ours = true;
    try {
      const begun = await client.query(`${request.isolation ? BEGIN[request.isolation] : 'begin'}; select pg_catalog.pg_backend_pid() as pid, pg_catalog.transaction_timestamp()::text as at`) as unknown as { rows: { pid: number; at: string }[] }[];
      pid = begun[1]?.rows[0]?.pid;
      const at = begun[1]?.rows[0]?.at;
      if (request.signal.aborted) throw request.signal.reason;
      ours = false;
      const op = await Promise.race([work(client as unknown as TransactionClient), givenUp]);
      ours = true;
      // Still the transaction begun above: a body that ran COMMIT or
      // ROLLBACK on tx itself has already made (or undone) its writes apart
      // from the step, and the record must not follow them in autocommit.
      const { rows: [same] } = await client.query<{ same: boolean }>('select pg_catalog.transaction_timestamp()::text = $1 as same', [at]);
      if (!same?.same) {
        ours = false;
        throw new ValidationError(`the body of transaction "${op.name}" ended its transaction itself (COMMIT or ROLLBACK on tx): `
          + 'its writes are no longer tied to the step and would be made again on a retry; the step is not recorded. Do not commit or roll back tx');
      }
      // Unnamed (no prepared statement on a connection the body also used).
      const { rows } = await client.query('select run_id from trellis.checkpoint_apply($1::jsonb)', [encodeOps([{ ...op, ...fence }])]);
      if (rows.length) {
        throw new LeaseLostError(`run ${fence.run}: lease lost before its transaction could record step "${op.name}"`);
      }
      if (!request.committing()) throw request.signal.reason;
      committing = true;
    } catch (error) {
      ending = true;
      // A query of the body that outran the pool's queryTimeout may still run on the server: stop it before ROLLBACK.
      if (pid !== undefined && !cancelling && outranQueryTimeout(error)) {
        cancelling = host.pool.query('select pg_catalog.pg_cancel_backend($1::integer)', [pid]).catch(() => undefined);
      }
      await cancelling;
      if (error === request.signal.reason && request.signal.aborted && !committing) {
        // Given up on (or aborted between statements): the connection is
        // closed, which rolls back whatever the body still has open.
        broken ??= error;
      } else {
        await client.query('rollback').catch((e: unknown) => (broken ??= e));
      }
      if (error === request.signal.reason && request.signal.aborted) throw error;
      if (error instanceof LeaseLostError) throw new TransactionFault(error);
      const code = (error as { code?: unknown }).code;
      // The body caught a failed query and returned: its transaction is
      // aborted, so the step cannot be recorded in it. The body's error.
      if (ours && code === '25P02') {
        throw new RolledBack(new Error('a query of the transaction\'s body failed and the body went on (the error was caught): '
          + 'PostgreSQL aborted the transaction, so it cannot record the step; let the error propagate, or use a savepoint', { cause: error }), false);
      }
      // The record refused by a privilege the body's session took away (SET ROLE): the body's error too.
      if (ours && code === '42501') {
        throw new RolledBack(new Error(`recording the step failed: ${(error as Error).message} (did the body change its role? `
          + 'SET ROLE in a transactional step also applies to the record Trellis writes in it)', { cause: error }), false);
      }
      throw new RolledBack(error, ours);
    }
    try {
      await client.query('commit');
    } catch (error) {
      broken ??= error;
      // The server's answer (a serialization failure at COMMIT): rolled back.
      // No answer: the commit may have happened; the next execution knows.
      // A deferred constraint's violation is the body's error, as any other.
      const answered = typeof (error as { code?: unknown }).code === 'string' && /^[0-9A-Z]{5}$/.test((error as { code: string }).code)
        && !(error as { code: string }).code.startsWith('08');
      if (answered) throw new RolledBack(error, false);
      throw new TransactionFault(toTrellisError(error));
    }
  } finally {
    if (grace) clearTimeout(grace);
    request.signal.removeEventListener('abort', cancel);
    // A connection that broke, whose last statement failed, or that was given up on, is not given back to the pool.
    const lost = broken ?? checkedOut.broken();
    checkedOut.release(lost !== undefined ? (lost instanceof Error ? lost : true) : undefined);
  }
}
