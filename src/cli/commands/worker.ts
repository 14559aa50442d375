/** `trellis worker <module>`: run a worker for the workflows a module exports, until SIGTERM or SIGINT. */
import { createWorker } from '../../worker/worker.ts';
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
    + 'rest back to other replicas, and exits 0. Logs are JSON lines on stderr.',
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
    const w = createWorker({
      connectionString: url,
      workflows,
      queues: options.queue as string[] | undefined,
      concurrency,
      id: options.id as string | undefined,
      logger,
    });
    try {
      await w.start();
    } catch (error) {
      await w.stop().catch(() => undefined);
      throw error;
    }
    logger.info('worker started', { worker: w.id, workflows: workflows.map((d) => `${d.name}@${d.version}`) });
    const signal = await stop;
    logger.info('worker stopping', { worker: w.id, signal, active: w.activeCount });
    await w.stop({ timeout: shutdown });
    logger.info('worker stopped', { worker: w.id });
  },
};
