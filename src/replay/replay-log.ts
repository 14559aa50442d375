/**
 * `ctx.log`: the run's logger, silent while the code replays calls an
 * earlier execution already made, so a line written between two steps
 * appears once, when the code first passes it, not again on every replay.
 */
import { levelEnabled, type LogFields, type LogFn, type Logger, type LogLevel } from '../protocol/logger.ts';

/**
 * @example
 * const log = replaySilenced(run.log, () => run.replaying);
 * log.info('charging', { orderId });   // written only when the code is past the recorded calls
 */
export function replaySilenced(log: Logger, replaying: () => boolean): Logger {
  const at = (level: LogLevel): LogFn => ((a: LogFields | string, b?: string | LogFields) => {
    if (!replaying()) (log[level] as (a: unknown, b: unknown) => void)(a, b);
  }) as LogFn;
  return { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error'),
    isLevelEnabled: (level) => !replaying() && levelEnabled(log, level) };
}
