/**
 * Transient database faults: a lost connection (class 08, 57P01 admin
 * shutdown, a socket error, node-postgres's "Connection terminated
 * unexpectedly"), a serialization failure or a deadlock. They are the
 * infrastructure's, never the workflow's, so they never fail a run: the
 * worker retries the same call with a short capped backoff for as long as
 * it still holds the lease, and an outbox reader that follows the events
 * (client.events(), a consumer's events()) reads again (see
 * docs/reliability.md).
 */
import { DatabaseError, isTrellisError } from '../errors.ts';
import { toTrellisError } from './errors.ts';

/** Backoff of transient retries: 50 ms doubling to at most 1 s, ±20% jitter. */
export const TRANSIENT_BACKOFF = { initialMs: 50, maxMs: 1000 } as const;

/** True for an error after which the same call can succeed (DatabaseError.retryable). */
export function isTransient(error: unknown): boolean {
  const mapped = isTrellisError(error) ? error : toTrellisError(error);
  return mapped instanceof DatabaseError && mapped.retryable;
}

/** The delay before retry number `attempt` (1 = the first retry). */
export function transientDelay(attempt: number): number {
  const base = Math.min(TRANSIENT_BACKOFF.initialMs * 2 ** Math.max(0, attempt - 1), TRANSIENT_BACKOFF.maxMs);
  return Math.round(base * (0.8 + Math.random() * 0.4));
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** `fn` again while it fails with an error `again` says to retry, up to `attempts` tries in all, with the transient backoff. */
async function retrying<T>(fn: () => Promise<T>, attempts: number, again: (error: unknown) => boolean): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn();
    } catch (error) {
      if (attempt >= attempts || !again(error)) throw error;
      await sleep(transientDelay(attempt));
    }
  }
}

/**
 * `fn` again after a transient fault, up to `attempts` tries in all, with
 * the transient backoff: for a call that is atomic (one statement in its own
 * transaction), so a failed try changed nothing.
 */
export function withTransientRetries<T>(fn: () => Promise<T>, attempts = 5): Promise<T> {
  return retrying(fn, attempts, isTransient);
}

/**
 * True for an error that says the statement's transaction was rolled back
 * for certain: a serialization failure (40001) or a deadlock (40P01). Unlike
 * a lost connection (which may have hit the commit), running the statement
 * again cannot do its work twice.
 */
export function isRolledBack(error: unknown): boolean {
  const mapped = isTrellisError(error) ? error : toTrellisError(error);
  const details = (mapped as { details?: { sqlstate?: unknown } }).details;
  const code = details?.sqlstate ?? (error as { code?: unknown } | null)?.code;
  return code === '40001' || code === '40P01';
}

/** `fn` again (up to `attempts` tries) while it fails with an error {@link isRolledBack} says left nothing behind. */
export function withRollbackRetries<T>(fn: () => Promise<T>, attempts = 5): Promise<T> {
  return retrying(fn, attempts, isRolledBack);
}

/**
 * The retries of a send (a signal, a request, a signal with start): one
 * that carries its message's id is sent again after any transient fault, a
 * lost connection included (if the lost try had committed, the repeat is
 * dropped by its id: the message is still delivered once); one without an
 * id only after a rollback, which cannot have delivered it.
 */
export function withSendRetries<T>(id: string | null | undefined, fn: () => Promise<T>): Promise<T> {
  return id === undefined || id === null ? withRollbackRetries(fn) : withTransientRetries(fn);
}
