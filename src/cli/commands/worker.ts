/** `trellis worker <module>`: run a worker for the workflows a module exports, until SIGTERM or SIGINT. */
import { createWorker } from '../../worker/worker.ts';
import { DatabaseError } from '../../errors.ts';
import { sleep } from '../../db/transient.ts';
import { consoleLogger, type LogLevel } from '../../protocol/logger.ts';
import { duration, integer, quote } from '../args.ts';
import type { Command } from '../command.ts';
import { UsageError } from '../exit-codes.ts';
import { loadWorkflows } from '../load-workflows.ts';

const LEVELS: readonly LogLevel[] = ['debug', 'info', 'warn', 'error'];

export const worker: Command = {
  name: 'worker',
  summary: 'run a worker for the workflows a module exports (graceful shutdown on SIGTERM / SIGINT)',
  args: '<module>',
  description: 'The module (.js, .mjs; .ts with tsx installed in its project) exports workflow definitions, or arrays of them.\n'
    + 'On SIGTERM or SIGINT the worker stops claiming, lets running runs finish for --shutdown-timeout, then gives the\n'
    + 'rest back to other replicas, and exits 0. A database it cannot reach yet is waited for (started again after\n'
    + '1 s, 2 s, 4 s ... at most 30 s). Logs are JSON lines on stderr.',
  database: 'url', // its own connections: no --read-url (it writes), no --query-timeout (the worker's own bounds, docs/reliability.md)
  positionals: [1, 1],
  options: {
    queue: { type: 'string', value: 'NAME', multiple: true, description: 'queues to serve (default: the workflows\' own)' },
    concurrency: { type: 'string', value: 'N', description: 'runs executed at once, 1-100000 (default 10)' },
    id: { type: 'string', value: 'ID', description: 'the worker\'s name in leases (default host:pid:random)' },
    'log-level': { type: 'string', value: 'LEVEL', description: 'debug, info (default), warn or error' },
    'shutdown-timeout': { type: 'string', value: 'DURATION', description: 'how long running runs may finish on shutdown (default 10s)' },
  },
  async run({ args, options, databaseUrl, interrupted }) {
    const level = (options['log-level'] ?? 'info') as LogLevel;
    if (!LEVELS.includes(level)) throw new UsageError(`--log-level must be one of ${LEVELS.join(', ')}, not ${quote(String(level))}`);
    const shutdown = options['shutdown-timeout'] === undefined ? 10_000 : duration(options['shutdown-timeout'] as string, 'shutdown-timeout');
    const concurrency = options.concurrency === undefined ? undefined : integer(options.concurrency as string, 'concurrency', 1, 100_000, 10);
    const url = databaseUrl();
    const stop = interrupted();
    const workflows = await loadWorkflows(args[0] as string);
    const logger = consoleLogger(level);
    const make = () => createWorker({
      connectionString: url,
      workflows,
      queues: options.queue as string[] | undefined,
      concurrency,
      id: options.id as string | undefined,
      logger,
    });
    // A database that cannot be reached yet (still starting, full, being
    // restarted) is waited for, as a started worker waits out an outage:
    // started again after 1 s, 2 s, 4 s … at most 30 s, until SIGTERM or
    // SIGINT (exit 0). Anything else (a schema behind the code, a privilege
    // missing, bad options) ends the program with its error.
    let w = make();
    let stopped: string | undefined;
    void stop.then((s) => (stopped = s));
    for (let attempt = 1; ; attempt++) {
      try {
        await w.start();
        break;
      } catch (error) {
        await w.stop().catch(() => undefined);
        if (stopped) {
          logger.info('worker stopped before it started', { signal: stopped, error: String(error) });
          return;
        }
        if (!(error instanceof DatabaseError && error.retryable)) throw error;
        const delayMs = Math.min(1000 * 2 ** (attempt - 1), 30_000);
        logger.warn('worker could not start; trying again', { attempt, delayMs, error: String(error) });
        const signal = await Promise.race([stop, sleep(delayMs).then(() => undefined)]);
        if (signal) {
          logger.info('worker stopped before it started', { signal });
          return;
        }
        w = make();
      }
    }
    logger.info('worker started', { worker: w.id, workflows: workflows.map((d) => `${d.name}@${d.version}`) });
    const signal = await stop;
    logger.info('worker stopping', { worker: w.id, signal, active: w.activeCount });
    await w.stop({ timeout: shutdown });
    logger.info('worker stopped', { worker: w.id });
  },
};
