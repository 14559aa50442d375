/**
 * The logger interface and its implementations. A logger has debug, info,
 * warn and error; each takes `(fields, message)` — pino's and bunyan's order,
 * so a pino logger is a Trellis logger as it is — or `(message, fields?)`.
 * Trellis calls a logger you pass only as `(fields, message)`; the loggers
 * made here (and `ctx.log`) take both. For a logger with another shape
 * (winston, console), `loggerFrom` adapts one function. A logger may say
 * which levels it writes (`isLevelEnabled`, as pino's does): Trellis then
 * builds no line it would drop (a worker's start and end line of each run).
 */
import { quoteValue, ValidationError } from '../errors.ts';

/** Structured fields of a log line. */
export type LogFields = Record<string, unknown>;

/** One level of a logger: `(fields, message)` or `(message, fields?)`. */
export interface LogFn {
  (fields: LogFields, message?: string): void;
  (message: string, fields?: LogFields): void;
}

/**
 * What Trellis logs to (`logger` of `createWorker` and `createClient`) and
 * what workflow code gets as `ctx.log`.
 *
 * @example
 * import pino from 'pino';
 * createWorker({ connectionString, workflows, logger: pino() });   // fits as it is
 * ctx.log.info({ orderId }, 'charging');                           // in a workflow: either order
 * ctx.log.info('charging', { orderId });
 */
export interface Logger {
  debug: LogFn;
  info: LogFn;
  warn: LogFn;
  error: LogFn;
  /**
   * Optional: false if a line at `level` would be dropped. Trellis asks before
   * it builds its frequent lines (each run's start and end), so a level that
   * is off costs nothing. pino loggers have it; without it every level is on.
   */
  isLevelEnabled?(level: LogLevel): boolean;
}

const LEVELS = ['debug', 'info', 'warn', 'error'] as const;
export type LogLevel = (typeof LEVELS)[number];

/**
 * Whether `logger` writes lines at `level` (true unless its `isLevelEnabled` says otherwise).
 *
 * @example
 * if (levelEnabled(log, 'info')) log.info({ runId, rows: rows.length }, 'imported');
 */
export function levelEnabled(logger: Logger, level: LogLevel): boolean {
  return logger.isLevelEnabled?.(level) ?? true;
}

/** The message and fields of a call made in either order. */
export function logArgs(a: LogFields | string, b?: string | LogFields): [message: string, fields: LogFields | undefined] {
  if (typeof a === 'string') return [a, typeof b === 'object' && b !== null ? b : undefined];
  return [typeof b === 'string' ? b : '', a];
}

/** Options of `loggerFrom`. */
export interface LoggerFromOptions {
  /** Lines below this level are dropped without calling `write` (default: every level is written); an unknown level is a `ValidationError`. */
  level?: LogLevel | undefined;
}

/**
 * A logger from one function that writes a line: for loggers of another
 * shape than pino's (winston, console, a test's array).
 *
 * @example
 * const logger = loggerFrom((level, message, fields) => console.log(level, message, fields));
 * const quieter = loggerFrom((level, message, fields) => console.log(level, message, fields), { level: 'warn' });
 */
export function loggerFrom(write: (level: LogLevel, message: string, fields: LogFields) => void, options: LoggerFromOptions = {}): Logger {
  const min = LEVELS.indexOf(options.level ?? 'debug');
  // From JavaScript any string may arrive: an unknown level would enable every level silently.
  if (min < 0) throw new ValidationError(`log level ${quoteValue(options.level)} is not one of ${LEVELS.join(', ')}`);
  const isLevelEnabled = (level: LogLevel) => LEVELS.indexOf(level) >= min;
  const at = (level: LogLevel): LogFn => (isLevelEnabled(level)
    ? (a: LogFields | string, b?: string | LogFields) => {
      const [message, fields] = logArgs(a, b);
      write(level, message, fields ?? {});
    }
    : () => undefined) as LogFn;
  return { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error'), isLevelEnabled };
}

/**
 * Logs JSON lines to stderr at `level` and above.
 *
 * @example
 * const worker = createWorker({ pool, workflows: [onboard], logger: consoleLogger('info', { service: 'billing' }) });
 */
export function consoleLogger(level: LogLevel = 'info', base: LogFields = {}): Logger {
  return loggerFrom((lvl, message, fields) => {
    process.stderr.write(`${JSON.stringify({ time: new Date().toISOString(), level: lvl, message, ...base, ...fields })}\n`);
  }, { level });
}

const drop = (() => undefined) as LogFn;

/**
 * Logs nothing (and says so: no level is enabled).
 *
 * @example
 * const client = createClient({ pool, logger: silentLogger });
 */
export const silentLogger: Logger = { debug: drop, info: drop, warn: drop, error: drop, isLevelEnabled: () => false };

/**
 * A logger that adds `fields` to every line and hands each line to `logger`
 * as `(fields, message)`; its levels are those of `logger`.
 *
 * @example
 * const log = childLogger(consoleLogger(), { service: 'billing' });
 * log.info('imported', { rows: 120 });   // a pino logger would receive ({ service: 'billing', rows: 120 }, 'imported')
 */
export function childLogger(logger: Logger, fields: LogFields): Logger {
  const at = (level: LogLevel): LogFn => ((a: LogFields | string, b?: string | LogFields) => {
    const [message, own] = logArgs(a, b);
    logger[level]({ ...fields, ...own }, message);
  }) as LogFn;
  return { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error'), isLevelEnabled: (level) => levelEnabled(logger, level) };
}
