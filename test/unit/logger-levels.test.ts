/**
 * Log levels: the loggers Trellis makes say which levels they write
 * (`isLevelEnabled`), and drop the rest without building a line; a child
 * or a replay-silenced logger has its parent's levels.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { childLogger, consoleLogger, levelEnabled, type LogFields, type Logger, loggerFrom, type LogLevel, silentLogger } from '../../src/protocol/logger.ts';
import { replaySilenced } from '../../src/replay/replay-log.ts';

const LEVELS: LogLevel[] = ['debug', 'info', 'warn', 'error'];

function recorder(level?: LogLevel): { logger: Logger; lines: [LogLevel, string, LogFields][] } {
  const lines: [LogLevel, string, LogFields][] = [];
  return { lines, logger: loggerFrom((lvl, message, fields) => lines.push([lvl, message, fields]), level ? { level } : {}) };
}

describe('log levels', () => {
  it('loggerFrom without a level writes and enables every level', () => {
    const { logger, lines } = recorder();
    for (const level of LEVELS) logger[level](`at ${level}`);
    assert.deepEqual(lines.map((l) => l[0]), LEVELS);
    assert.deepEqual(LEVELS.map((l) => levelEnabled(logger, l)), [true, true, true, true]);
  });

  it('loggerFrom at warn drops debug and info without calling write, and says so', () => {
    const { logger, lines } = recorder('warn');
    logger.debug({ a: 1 }, 'd');
    logger.info('i', { a: 2 });
    logger.warn({ a: 3 }, 'w');
    logger.error('e', { a: 4 });
    assert.deepEqual(lines, [['warn', 'w', { a: 3 }], ['error', 'e', { a: 4 }]]);
    assert.deepEqual(LEVELS.map((l) => levelEnabled(logger, l)), [false, false, true, true]);
  });

  it('silentLogger enables no level', () => {
    assert.deepEqual(LEVELS.map((l) => levelEnabled(silentLogger, l)), [false, false, false, false]);
  });

  it('a logger without isLevelEnabled (a plain object) counts as enabled at every level', () => {
    const plain = { debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined } as unknown as Logger;
    assert.deepEqual(LEVELS.map((l) => levelEnabled(plain, l)), [true, true, true, true]);
    assert.deepEqual(LEVELS.map((l) => levelEnabled(childLogger(plain, { x: 1 }), l)), [true, true, true, true]);
  });

  it('childLogger has the levels of its parent, asked at each call (a level changed later counts)', () => {
    let min = 1;
    const parent = { ...recorder().logger, isLevelEnabled: (level: LogLevel) => LEVELS.indexOf(level) >= min };
    const child = childLogger(parent, { service: 'billing' });
    assert.deepEqual(LEVELS.map((l) => levelEnabled(child, l)), [false, true, true, true]);
    min = 3;
    assert.deepEqual(LEVELS.map((l) => levelEnabled(child, l)), [false, false, false, true]);
  });

  it('a replay-silenced logger enables nothing while replaying, else its parent levels', () => {
    let replaying = true;
    const { logger, lines } = recorder('info');
    const log = replaySilenced(logger, () => replaying);
    log.warn('during the replay');
    assert.deepEqual(LEVELS.map((l) => levelEnabled(log, l)), [false, false, false, false]);
    replaying = false;
    log.warn('after it');
    assert.deepEqual(LEVELS.map((l) => levelEnabled(log, l)), [false, true, true, true]);
    assert.deepEqual(lines.map((l) => l[1]), ['after it']);
  });
});

describe('an unknown log level', () => {
  it('is a ValidationError, not a logger that writes every level', () => {
    assert.throws(() => loggerFrom(() => undefined, { level: 'verbose' as never }), { name: 'ValidationError', message: /log level "verbose" is not one of debug, info, warn, error/ });
    assert.throws(() => consoleLogger('loud' as never), { name: 'ValidationError' });
  });
});
