/**
 * Which errors are the database's and never the workflow's. Such an error
 * (a fault that retries could not get past, a permission, a schema behind or
 * ahead of the code in the middle of a deploy) never fails a run: the
 * execution gives the run back for a later attempt (src/worker/outcome.ts),
 * whatever the workflow code did with the rejection it saw.
 */
import { DatabaseError, SchemaVersionError } from '../errors.ts';

export function isDatabaseFault(error: unknown): error is DatabaseError | SchemaVersionError {
  return error instanceof DatabaseError || error instanceof SchemaVersionError;
}
