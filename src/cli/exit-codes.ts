/**
 * The exit codes of `trellis` (docs/cli.md): scripts branch on them.
 */
import { isTrellisError, ERROR_CODES } from '../errors.ts';

export const EXIT = {
  ok: 0,
  /** The command failed: an unexpected error, or the engine refused the operation for another reason. */
  failed: 1,
  /** Bad usage or input: unknown command or option, missing argument, not a UUID, bad JSON, a ValidationError. Nothing was changed. */
  usage: 2,
  /** The run (or workflow) does not exist. */
  notFound: 3,
  /** The run's status does not allow the operation (resume a run that is not paused, retry one that did not fail). */
  conflict: 4,
  /** The database cannot be reached (down, refused, unknown host, bad password, no such database), or a statement went unanswered for --query-timeout. */
  unavailable: 5,
  /** The trellis schema is missing, behind or ahead of this CLI: run `trellis migrate` (or upgrade the CLI). */
  schema: 6,
  /** The reader of stdout closed it before everything was written (as `| head` does). */
  brokenPipe: 141,
} as const;

/** Bad usage of the command line: exit code 2 with the message and a hint. */
export class UsageError extends Error {
  override name = 'UsageError';
}

/** SQLSTATE classes that mean "the database is not there for us". */
const UNAVAILABLE = /^(08...|28...|3D000|57P0[123]|53300)$/;
/** Socket errors of reaching a server (not of listening on a port, nor of reading a file: those are not the database's). */
const SOCKET = /^(ECONNREFUSED|ECONNRESET|ECONNABORTED|ETIMEDOUT|ENOTFOUND|EHOSTUNREACH|EHOSTDOWN|ENETUNREACH|ENETDOWN|EAI_AGAIN|EAI_FAIL|EPIPE)$/;
const SOCKET_CALLS = new Set(['connect', 'getaddrinfo', 'read', 'write']);

/** Anything that has the shape of an unreachable database: a socket error or a connection-level SQLSTATE, maybe as a cause. */
function unavailable(error: unknown): boolean {
  for (let e = error as { code?: unknown; syscall?: unknown; cause?: unknown; details?: { sqlstate?: unknown; code?: unknown } | undefined; message?: unknown } | undefined, depth = 0;
    e && depth < 5; e = e.cause as typeof e, depth++) {
    const code = e.details?.sqlstate ?? e.details?.code ?? e.code;
    if (typeof code === 'string' && UNAVAILABLE.test(code)) return true;
    if (typeof code === 'string' && /^E[A-Z_]+$/.test(code) && e.syscall !== 'listen'
      && (SOCKET.test(code) || (typeof e.syscall === 'string' && SOCKET_CALLS.has(e.syscall)))) return true;
    // pg's plain Errors: a connection lost or timed out, and a TLS handshake the server or the certificate refused.
    if (typeof e.message === 'string'
      && /Connection terminated|connection timeout|Query read timeout|does not support SSL connections|self[- ]signed certificate|unable to verify the first certificate|certificate has expired|Hostname\/IP does not match/i.test(e.message)) return true;
  }
  return false;
}

/**
 * The exit code for an error a command threw.
 *
 * @example
 * exitCodeOf(new NotFoundError('run … does not exist'));   // 3
 */
export function exitCodeOf(error: unknown): number {
  if (error instanceof UsageError) return EXIT.usage;
  if (isTrellisError(error)) {
    switch (error.code) {
      case ERROR_CODES.validation:
      case ERROR_CODES.payloadTooLarge:
        return EXIT.usage;
      case ERROR_CODES.notFound:
        return EXIT.notFound;
      case ERROR_CODES.illegalTransition:
        return EXIT.conflict;
      case ERROR_CODES.schemaVersion:
        return EXIT.schema;
    }
  }
  if (unavailable(error)) return EXIT.unavailable;
  return EXIT.failed;
}
