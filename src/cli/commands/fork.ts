/** `trellis fork <run>`: a new run that keeps the original's calls before --from and runs the rest again. */
import { runRef } from '../args.ts';
import type { Command } from '../command.ts';
import { UsageError } from '../exit-codes.ts';
import { printStarted, readWait, waitOptions } from '../wait-option.ts';

export const fork: Command = {
  name: 'fork',
  summary: 'start a new run from a run\'s calls before a given one',
  args: '<run>',
  description: 'The new run has the original\'s input, version, queue, priority and metadata; the settled results of the\n'
    + 'original\'s calls before --from (the call numbers `trellis show` prints; default 0: none) are kept, and that\n'
    + 'call and the rest run again. The original is not changed. Prints the new run\'s id.',
  positionals: [0, 1],
  options: {
    workflow: { type: 'string', value: 'NAME', description: 'with --key: fork the run of this workflow started with that key' },
    key: { type: 'string', value: 'KEY', description: 'with --workflow: fork the run started with this key' },
    from: { type: 'string', value: 'N', description: 'the call to run again from (default 0: the whole run)' },
    version: { type: 'string', value: 'V', description: 'run the fork on this workflow version (default: the original\'s)' },
    queue: { type: 'string', value: 'NAME', description: 'queue of the fork (default: the original\'s)' },
    ...waitOptions('fork'),
  },
  async run({ args, options, client, io }) {
    const ref = runRef(args[0], options);
    const from = options.from as string | undefined;
    if (from !== undefined && !/^\d+$/.test(from)) throw new UsageError('--from must be a call number (0, 1, …)');
    const wait = readWait(options);
    const handle = await (await client()).fork(ref, {
      fromCall: from === undefined ? undefined : Number(from),
      version: options.version as string | undefined,
      queue: options.queue as string | undefined,
    });
    await printStarted(io, handle, wait);
  },
};
