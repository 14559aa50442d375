/** `trellis start <workflow> [input]`: start a run by workflow name. */
import { duration, isoTime, json, time } from '../args.ts';
import type { KeyPolicy } from '../../client/options.ts';
import type { Command } from '../command.ts';
import { UsageError } from '../exit-codes.ts';
import { printStarted, readWait, waitOptions } from '../wait-option.ts';

export const start: Command = {
  name: 'start',
  summary: 'start a run of a registered workflow',
  args: '<workflow> [input-json]',
  description: 'The input (JSON, default {}) is checked against the schema the workflow registered. Prints the run id.\n'
    + 'With a --key that a run already holds, prints that run\'s id and starts nothing (see --key-policy).',
  positionals: [1, 2],
  options: {
    key: { type: 'string', value: 'KEY', description: 'idempotency key: one run per workflow and key' },
    'key-policy': { type: 'string', value: 'P', description: 'with --key, when a run holds it: return (default: print that run), reuse (a finished run gives the key to a new run), replace (reuse, and a run not yet begun takes this input and --run-at), supersede (reuse, and an unfinished run is cancelled and gives its key up at once)' },
    queue: { type: 'string', value: 'NAME', description: 'queue of the run (default: the workflow\'s)' },
    version: { type: 'string', value: 'V', description: 'workflow version (default: the newest registered)' },
    priority: { type: 'string', value: 'N', description: 'higher is claimed first (default 0)' },
    'run-at': { type: 'string', value: 'TIME', description: 'do not start before this time: ISO (2026-01-31T12:00Z) or a duration from now (1h, 2 days)' },
    metadata: { type: 'string', value: 'JSON', description: 'a JSON object stored with the run' },
    deadline: { type: 'string', value: 'TIME', description: 'cancel the run if it has not finished by then: ISO (2026-01-31T17:00Z) or a duration from its start (2h)' },
    ...waitOptions('run'),
  },
  async run({ args, options, client, io }) {
    const [workflow, inputText] = args as [string, string | undefined];
    const input = inputText === undefined ? {} : json(inputText, 'input');
    const metadata = options.metadata === undefined ? undefined : json(options.metadata as string, '--metadata');
    let priority: number | undefined;
    if (options.priority !== undefined) {
      priority = Number(options.priority);
      if (!/^-?\d+$/.test(options.priority as string)) throw new UsageError('--priority must be an integer');
    }
    const runAt = options['run-at'] === undefined ? undefined : time(options['run-at'] as string, 'run-at', { ahead: true });
    const wait = readWait(options);
    // An ISO time is the deadline; a duration is a time limit from the run's start (the engine's clock).
    const limit = options.deadline as string | undefined;
    const deadline = limit === undefined || !/^\d{4}-\d{2}-\d{2}/.test(limit) ? undefined : isoTime(limit, 'deadline');
    const timeLimit = limit === undefined || deadline ? undefined : duration(limit, 'deadline');
    const keyPolicy = options['key-policy'] as string | undefined;
    if (keyPolicy !== undefined && !['return', 'reuse', 'replace', 'supersede'].includes(keyPolicy)) {
      throw new UsageError('--key-policy must be return, reuse, replace or supersede');
    }
    if (keyPolicy !== undefined && options.key === undefined) throw new UsageError('--key-policy needs --key');
    const c = await client();
    const handle = await c.start(workflow, input, {
      key: options.key as string | undefined,
      keyPolicy: keyPolicy as KeyPolicy | undefined,
      queue: options.queue as string | undefined,
      version: options.version as string | undefined,
      priority,
      runAt,
      deadline,
      timeLimit,
      metadata: metadata as Record<string, unknown> | undefined,
    });
    await printStarted(io, handle, wait);
  },
};
