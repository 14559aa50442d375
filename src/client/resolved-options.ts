/**
 * The options of createClient checked once, at construction, and frozen:
 * every out-of-range or mistyped option is a ValidationError there, not a
 * surprise at the first start.
 */
import type { ResolvedTimeouts } from '../db/connection.ts';
import { resolveTimeouts } from '../db/connection.ts';
import type { Pool } from '../db/pg.ts';
import { checkPreparedMode, type PreparedStatementsMode } from '../db/prepared.ts';
import { ValidationError } from '../errors.ts';
import type { Logger } from '../protocol/logger.ts';
import { durationIn, optionNames, refuseUnknownKeys } from '../protocol/option-bounds.ts';
import type { TracingOptions } from '../observability/tracing.ts';
import type { ClientOptions } from './options.ts';

/** The bounds of the client's own options (the connection timeouts: TIMEOUT_BOUNDS in db/connection.ts). */
export const CLIENT_OPTION_BOUNDS = {
  /** The safety-net poll of result(): as the worker's pollInterval. */
  resultPollMs: [10, 3_600_000],
} as const;

export interface ResolvedClientOptions {
  pool: Pool | undefined;
  connectionString: string | undefined;
  listenUrl: string | undefined;
  logger: Logger | undefined;
  timeouts: ResolvedTimeouts;
  preparedStatements: PreparedStatementsMode;
  resultPollMs: number;
  handoff: boolean;
  /** undefined: off. */
  tracing: TracingOptions | undefined;
}

const optionalString = (value: unknown, name: string): string | undefined => {
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || value === '') throw new ValidationError(`${name} must be a non-empty string`);
  return value;
};

/** Check every option once and apply the defaults; the result is frozen. */
/** Every option createClient takes (a misspelt one is refused). */
export const CLIENT_OPTIONS = optionNames<ClientOptions>({
  pool: true, connectionString: true, readPool: true, logger: true, listenUrl: true, preparedStatements: true,
  resultPollInterval: true, handoff: true, tracing: true, connectTimeout: true, queryTimeout: true, keepAlive: true,
});

export function resolveClientOptions(options: ClientOptions): Readonly<ResolvedClientOptions> {
  if (typeof options !== 'object' || options === null) throw new ValidationError('createClient needs options: { pool } or { connectionString }');
  refuseUnknownKeys(options, CLIENT_OPTIONS, 'createClient options');
  const connectionString = optionalString(options.connectionString, 'connectionString');
  if (!options.pool && !connectionString) throw new ValidationError('createClient needs a pool or a connectionString');
  if (options.pool !== undefined && typeof (options.pool as { query?: unknown }).query !== 'function') {
    throw new ValidationError('pool must be a pg Pool');
  }
  if (options.handoff !== undefined && typeof options.handoff !== 'boolean') throw new ValidationError('handoff must be true or false');
  const tracing = options.tracing;
  if (tracing !== undefined && typeof tracing !== 'boolean' && (typeof tracing !== 'object' || tracing === null)) {
    throw new ValidationError('tracing must be true, false or an options object');
  }
  return Object.freeze({
    pool: options.pool,
    connectionString,
    listenUrl: optionalString(options.listenUrl, 'listenUrl'),
    logger: options.logger,
    timeouts: resolveTimeouts(options),
    preparedStatements: checkPreparedMode(options.preparedStatements),
    resultPollMs: durationIn(options.resultPollInterval ?? 5000, 'resultPollInterval', CLIENT_OPTION_BOUNDS.resultPollMs),
    handoff: options.handoff ?? true,
    tracing: tracing === true ? {} : tracing || undefined,
  });
}
