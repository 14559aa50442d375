/**
 * Compile-only: a pino logger is a Trellis `Logger` as it is. PinoLike
 * copies the call shape of pino 9's `Logger` (its `LogFn` overloads and a few
 * members beside them) so the check needs no pino dependency.
 */
import { childLogger, consoleLogger, createWorker, type Logger, loggerFrom } from '../../src/index.ts';

/** pino's LogFn (pino/pino.d.ts), verbatim in shape. */
interface PinoLogFn {
  <T extends object>(obj: T, msg?: string, ...args: any[]): void;
  (obj: unknown, msg?: string, ...args: any[]): void;
  (msg: string, ...args: any[]): void;
}

interface PinoLike {
  level: string;
  fatal: PinoLogFn;
  error: PinoLogFn;
  warn: PinoLogFn;
  info: PinoLogFn;
  debug: PinoLogFn;
  trace: PinoLogFn;
  silent: PinoLogFn;
  child(bindings: Record<string, unknown>): PinoLike;
  bindings(): Record<string, unknown>;
}

declare const pino: PinoLike;
export const asLogger: Logger = pino;
export const worker = createWorker({ connectionString: 'postgres://', workflows: [], logger: pino });
export const child: Logger = childLogger(pino.child({ service: 'billing' }), { region: 'eu' });

// Trellis' own loggers take both orders.
const log = consoleLogger('info');
log.info('message first', { orderId: 7 });
log.info({ orderId: 7 }, 'fields first');
log.warn('message only');

// A logger of another shape is adapted with one function; a bare message-first object is not a Logger.
export const adapted: Logger = loggerFrom((level, message, fields) => console.log(level, message, fields));
// @ts-expect-error (message, fields) alone does not take Trellis' (fields, message) calls
export const wrong: Logger = { debug: (m: string) => m, info: (m: string) => m, warn: (m: string) => m, error: (m: string) => m };
