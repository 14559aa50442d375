/** `trellis request <run> <signal> [payload]`: ask a run and print its answer (decision 0044). */
import { duration, json } from '../args.ts';
import type { Command } from '../command.ts';
import { UsageError } from '../exit-codes.ts';
import { messageArgs } from './signal.ts';

export const request: Command = {
  name: 'request',
  summary: 'ask a run (a signal it answers with ctx.reply) and print the answer',
  args: '<run> <signal> [payload-json]',
  description: 'Sends the signal under the request\'s --id (default: a new UUID) and waits for the run\'s ctx.reply, printed as JSON.\n'
    + 'The run is an id, or give --workflow and --key and leave <run> out. A refusal (ctx.replyError) exits 1 with its message;\n'
    + 'a run that ended without answering exits 3; --timeout exits 1 (the request stays delivered: ask again with the same --id).\n'
    + 'With --start INPUT-JSON (and --workflow, --key): request with start, the key\'s run is started with that input if it has none unfinished.',
  positionals: [1, 3],
  options: {
    id: { type: 'string', value: 'ID', description: 'the request id: a repeat with the same id sends nothing and prints the same answer' },
    timeout: { type: 'string', value: 'DURATION', description: 'give up waiting for the answer after this long (exit 1)' },
    workflow: { type: 'string', value: 'NAME', description: 'with --key: the run of this workflow started with that key' },
    key: { type: 'string', value: 'KEY', description: 'with --workflow: the run started with this key' },
    start: { type: 'string', value: 'INPUT-JSON', description: 'with --workflow and --key: start the key\'s run with this input if it has none unfinished' },
  },
  async run({ args, options, client, io }) {
    const { run, name, payload } = messageArgs(args, options);
    const timeout = options.timeout === undefined ? undefined : duration(options.timeout as string, 'timeout');
    if (options.start !== undefined && typeof run === 'string') throw new UsageError('--start needs --workflow W --key K, not a run id');
    const start = options.start === undefined ? undefined : { input: json(options.start as string, 'start input') };
    const answer = await (await client()).request(run, name, payload, { id: options.id as string | undefined, timeout, start });
    io.out(`${JSON.stringify(answer)}\n`);
  },
};
