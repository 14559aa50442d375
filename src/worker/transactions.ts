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
import { LeaseLostError } from '../errors.ts';
import { encodeOps, type Fence, type StepOp } from '../protocol/checkpoint.ts';
import type { Pool, PoolClient } from '../db/pg.ts';
import { toTrellisError } from '../db/errors.ts';
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
  // Above read committed, the record's lock on the run's row fails to
  // serialize if the row changed after the transaction's snapshot, which a
  // heartbeat does every few seconds: the lease is renewed once here, and
  // heartbeats leave the row alone until the transaction ends (so the body
  // has one lease's length; decision 0035).
  const free = await host.slots.take(request.signal);
  let loud: (() => void) | undefined;
  try {
    if (request.isolation === 'repeatable read' || request.isolation === 'serializable') {
      try {
        loud = await host.quiet();
      } catch (error) {
        throw new TransactionFault(toTrellisError(error));
      }
    }
    for (let attempt = 1; ; attempt++) {
      try {
        return await once(host, fence, work, request);
      } catch (error) {
        if (!(error instanceof RolledBack) || !isTransient(error.cause) || request.signal.aborted) throw unwrap(error);
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
 * The transactions a worker may have open at once: each holds a connection
 * of the worker's pool for as long as its body runs, and the worker's
 * heartbeats, claims and grouped checkpoints need connections of that pool
 * too (a pool full of long bodies would starve the heartbeats until leases
 * ran out). So two connections of the pool are always left to the engine.
 */
export class TransactionSlots {
  private open = 0;
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

async function once(host: TransactionHost, fence: Fence, work: (tx: TransactionClient) => Promise<StepOp>, request: TransactRequest): Promise<void> {
  let client: PoolClient;
  try {
    client = await host.pool.connect();
  } catch (error) {
    throw new RolledBack(error, true);
  }
  let broken: unknown;
  let committing = false;
  // Once the attempt is aborted (timeout, cancel, lost lease), the query the
  // body is waiting on is cancelled: the transaction never commits. The
  // backend is the one pg_backend_pid() named inside the transaction (not
  // the key the connection was opened with: through PgBouncer that is the
  // pooler's own), and the cancel has returned before ROLLBACK is sent, so
  // it cannot reach a later session of that backend.
  let pid: number | undefined;
  let cancelling: Promise<unknown> | undefined;
  let ending = false;
  const cancel = () => {
    if (committing || ending || pid === undefined) return;
    cancelling = host.pool.query('select pg_cancel_backend($1)', [pid]).catch(() => undefined);
  };
  request.signal.addEventListener('abort', cancel, { once: true });
  try {
    let ours = true;
    try {
      const begun = await client.query(`${request.isolation ? BEGIN[request.isolation] : 'begin'}; select pg_backend_pid() as pid`) as unknown as { rows: { pid: number }[] }[];
      pid = begun[1]?.rows[0]?.pid;
      if (request.signal.aborted) throw request.signal.reason;
      ours = false;
      const op = await work(client as unknown as TransactionClient);
      ours = true;
      // Unnamed (no prepared statement on a connection the body also used).
      const { rows } = await client.query('select run_id from trellis.checkpoint_apply($1::jsonb)', [encodeOps([{ ...op, ...fence }])]);
      if (rows.length) {
        throw new LeaseLostError(`run ${fence.run}: lease lost before its transaction could record step "${op.name}"`);
      }
      if (!request.committing()) throw request.signal.reason;
      committing = true;
    } catch (error) {
      ending = true;
      await cancelling;
      await client.query('rollback').catch((e: unknown) => (broken = e));
      if (error === request.signal.reason && request.signal.aborted) throw error;
      if (error instanceof LeaseLostError) throw new TransactionFault(error);
      // The body caught a failed query and returned: its transaction is
      // aborted, so the step cannot be recorded in it. The body's error.
      if (ours && (error as { code?: unknown }).code === '25P02') {
        throw new RolledBack(new Error('a query of the transaction\'s body failed and the body went on (the error was caught): '
          + 'PostgreSQL aborted the transaction, so it cannot record the step; let the error propagate, or use a savepoint', { cause: error }), false);
      }
      throw new RolledBack(error, ours);
    }
    try {
      await client.query('commit');
    } catch (error) {
      broken = error;
      // The server's answer (a serialization failure at COMMIT): rolled back.
      // No answer: the commit may have happened; the next execution knows.
      // A deferred constraint's violation is the body's error, as any other.
      const answered = typeof (error as { code?: unknown }).code === 'string' && /^[0-9A-Z]{5}$/.test((error as { code: string }).code)
        && !(error as { code: string }).code.startsWith('08');
      if (answered) throw new RolledBack(error, false);
      throw new TransactionFault(toTrellisError(error));
    }
  } finally {
    request.signal.removeEventListener('abort', cancel);
    // A connection whose last statement failed is not given back to the pool.
    client.release(broken !== undefined);
  }
}
