/**
 * The one place where SQLSTATEs become Trellis errors. Engine functions raise
 * TRnnn codes (sql/000_support.sql); class 22 (data exceptions: malformed
 * JSON, bad casts) and 23514 (check violations) are bad input too; other
 * SQLSTATEs are DatabaseErrors, marked `retryable` where a retry can help.
 */
import {
  ConfigurationError,
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

/** The message of every SchemaVersionError for a database without the trellis schema. */
export const SCHEMA_NOT_INSTALLED = 'the trellis schema is not installed: run `trellis migrate` or call migrate()';
const SCHEMA_BEHIND = 'the trellis schema lacks a function this code calls (not installed, or behind this code): run `trellis migrate` or call migrate()';

export const SQLSTATES = {
  TR001: ValidationError,
  TR002: NotFoundError,
  TR003: LeaseLostError,
  TR004: IllegalTransitionError,
  TR005: PayloadTooLargeError,
  TR007: SchemaVersionError,
  TR008: ConfigurationError,
} as const;

/**
 * SQLSTATEs after which the same call can succeed: transaction rollbacks
 * (class 40: serialization failure, deadlock), connection exceptions (class
 * 08), the server shutting down or starting (57P01-57P03), too many
 * connections (53300). Not 57014 (a statement cancelled, by statement_timeout
 * or an operator): the same statement is likely to be cancelled again.
 */
const RETRYABLE = /^(40...|08...|57P0[123]|53300)$/;

/**
 * What node-postgres and pg-pool throw, with no code, when a connection is
 * lost, cannot be made in time, or a query gets no answer in time (the
 * `query_timeout` / `connectionTimeoutMillis` of docs/reliability.md).
 */
const CONNECTION_LOST = /^(Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error|Query read timeout|timeout expired$)/;

interface PgErrorLike {
  code?: string | undefined;
  message?: string | undefined;
  detail?: string | undefined;
}

/**
 * The SQLSTATE of a driver error, or of the one a Trellis error was made
 * from (`details.sqlstate`); undefined for anything else.
 *
 * @example
 * if (sqlstateOf(error) === '25P02') await db.query('rollback to savepoint s');
 */
export function sqlstateOf(error: unknown): string | undefined {
  const e = error as { code?: unknown; details?: { sqlstate?: unknown } | undefined } | null | undefined;
  if (isTrellisError(error)) return typeof e?.details?.sqlstate === 'string' ? e.details.sqlstate : undefined;
  return typeof e?.code === 'string' && /^[0-9A-Z]{5}$/.test(e.code) ? e.code : undefined;
}

/** Node's TLS verification codes (a certificate the client does not trust for this host). */
const TLS_CODES = /^(DEPTH_ZERO_SELF_SIGNED_CERT|SELF_SIGNED_CERT_IN_CHAIN|CERT_HAS_EXPIRED|CERT_NOT_YET_VALID|UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT_LOCALLY|ERR_TLS_CERT_ALTNAME_INVALID)$/;

/** Map a driver error to a Trellis error (already-Trellis errors pass through). */

export function toTrellisError(error: unknown): Error {
  if (isTrellisError(error)) return error;
  const pgError = error as PgErrorLike;
  const code = typeof pgError?.code === 'string' ? pgError.code : undefined;
  const message = pgError?.message ?? String(error);
  // pg's plain Error for a pool that was ended: the client, worker or test env
  // that used it was closed (or pool.end() was called) before this call.
  if (code === undefined && message === 'Cannot use a pool after calling end on the pool') {
    return new ConfigurationError('this pool was ended (pool.end(), or the client, worker or test env that owns it was closed): nothing was sent; use an open one',
      { cause: error });
  }
  // A database without the trellis schema (or with an older one that lacks a
  // function): one message everywhere, whichever entry point met it first.
  if ((code === '3F000' || code === '42P01' || code === '42883') && /\btrellis\b/.test(message)) {
    return new SchemaVersionError(code === '42883' ? SCHEMA_BEHIND : SCHEMA_NOT_INSTALLED, { cause: error, details: { sqlstate: code } });
  }
  if (code && code in SQLSTATES) {
    const Class = SQLSTATES[code as keyof typeof SQLSTATES];
    return new Class(message, { cause: error, details: { sqlstate: code } }) as TrellisError;
  }
  // Node's socket errors (ECONNREFUSED, EPIPE, …; no SQLSTATE class starts with E): the database is unreachable.
  if (code && /^E[A-Z]+$/.test(code)) {
    return new DatabaseError(`cannot reach the database: ${message}`, { cause: error, details: { code }, retryable: true });
  }
  // TLS refused: the server has no TLS and the URL requires it, or the certificate does not hold (not retryable: the settings must change).
  if ((!code && /does not support SSL connections/.test(message)) || (code && TLS_CODES.test(code))) {
    return new DatabaseError(`cannot reach the database over TLS: ${message}`, { cause: error, details: { code: 'tls' }, retryable: false });
  }
  if (!code && CONNECTION_LOST.test(message)) {
    // pg-pool's own timeout: no connection was lost, none came free (or a new one did not connect) in time.
    const what = message.startsWith('timeout exceeded when trying to connect')
      ? 'no connection from the pool within its connectionTimeoutMillis (every connection busy, or the database not answering)'
      : 'lost the connection to the database';
    return new DatabaseError(`${what}: ${message}`, { cause: error, details: { code: 'connection' }, retryable: true });
  }
  const sqlstate = sqlstateOf(error);
  if (sqlstate && (sqlstate.startsWith('22') || sqlstate === '23514')) {
    return new ValidationError(message, { cause: error, details: { sqlstate } });
  }
  if (sqlstate) {
    return new DatabaseError(message, { cause: error, details: { sqlstate }, retryable: RETRYABLE.test(sqlstate) });
  }
  return error instanceof Error ? error : new DatabaseError(message, { cause: error });
}
