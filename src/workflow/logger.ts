/** The logger interface and two implementations. Bring your own (pino, winston) by adapting four methods. */
import type { Logger } from './context.ts';

export type { Logger };

const LEVELS = ['debug', 'info', 'warn', 'error'] as const;
export type LogLevel = (typeof LEVELS)[number];

/**
 * Logs JSON lines to stderr at `level` and above.
 *
 * @example
 * const worker = createWorker({ pool, workflows: [onboard], logger: consoleLogger('info', { service: 'billing' }) });
 */
export function consoleLogger(level: LogLevel = 'info', base: Record<string, unknown> = {}): Logger {
  const min = LEVELS.indexOf(level);
  const write = (lvl: LogLevel) => (message: string, fields?: Record<string, unknown>) => {
    if (LEVELS.indexOf(lvl) < min) return;
    process.stderr.write(`${JSON.stringify({ time: new Date().toISOString(), level: lvl, message, ...base, ...fields })}\n`);
  };
  return { debug: write('debug'), info: write('info'), warn: write('warn'), error: write('error') };
}

/**
 * Logs nothing.
 *
 * @example
 * const client = createClient({ pool, logger: silentLogger });
 */
export const silentLogger: Logger = { debug() {}, info() {}, warn() {}, error() {} };

/**
 * A logger that adds `fields` to every line.
 *
 * @example
 * const log = childLogger(consoleLogger(), { tenant: 'acme' });
 * log.info('imported', { rows: 120 });
 */
export function childLogger(logger: Logger, fields: Record<string, unknown>): Logger {
  return {
    debug: (m, f) => logger.debug(m, { ...fields, ...f }),
    info: (m, f) => logger.info(m, { ...fields, ...f }),
    warn: (m, f) => logger.warn(m, { ...fields, ...f }),
    error: (m, f) => logger.error(m, { ...fields, ...f }),
  };
}
