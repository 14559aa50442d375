/**
 * The one place where SQLSTATEs become Trellis errors. Engine functions raise
 * TRnnn codes (sql/000_support.sql); class 22 (data exceptions: malformed
 * JSON, bad casts) and 23514 (check violations) are bad input too.
 */
import {
  DatabaseError,
  IllegalTransitionError,
  isTrellisError,
  LeaseLostError,
  NotFoundError,
  PayloadTooLargeError,
  SchemaVersionError,
  type TrellisError,
  ValidationError,
} from '../errors.ts';

export const SQLSTATES = {
  TR001: ValidationError,
  TR002: NotFoundError,
  TR003: LeaseLostError,
  TR004: IllegalTransitionError,
  TR005: PayloadTooLargeError,
  TR007: SchemaVersionError,
} as const;

interface PgErrorLike {
  code?: string;
  message?: string;
  detail?: string;
}

/** Map a driver error to a Trellis error (already-Trellis errors pass through). */
export function toTrellisError(error: unknown): Error {
  if (isTrellisError(error)) return error;
  const pgError = error as PgErrorLike;
  const code = typeof pgError?.code === 'string' ? pgError.code : undefined;
  const message = pgError?.message ?? String(error);
  if (code && code in SQLSTATES) {
    const Class = SQLSTATES[code as keyof typeof SQLSTATES];
    return new Class(message, { cause: error, details: { sqlstate: code } }) as TrellisError;
  }
  if (code && (code.startsWith('22') || code === '23514')) {
    return new ValidationError(message, { cause: error, details: { sqlstate: code } });
  }
  if (code && code.length === 5) {
    return new DatabaseError(message, { cause: error, details: { sqlstate: code } });
  }
  // Node's socket errors (ECONNREFUSED, ETIMEDOUT, ENOTFOUND, …): the database is unreachable.
  if (code && /^E[A-Z]+$/.test(code)) {
    return new DatabaseError(`cannot reach the database: ${message}`, { cause: error, details: { code } });
  }
  return error instanceof Error ? error : new DatabaseError(message, { cause: error });
}
