/** `trellis fork <run>`: a new run that keeps the original's calls before --from and runs the rest again. */
import { duration, runRef } from '../args.ts';
import type { Command } from '../command.ts';
import { UsageError } from '../exit-codes.ts';

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
    wait: { type: 'boolean', description: 'wait for the fork to finish and print its output (exit 1 if it failed)' },
    timeout: { type: 'string', value: 'DURATION', description: 'with --wait: give up after this long (exit 1)' },
  },
  async run({ args, options, client, io }) {
    const ref = runRef(args[0], options);
    const from = options.from as string | undefined;
    if (from !== undefined && !/^\d+$/.test(from)) throw new UsageError('--from must be a call number (0, 1, …)');
    if (options.timeout !== undefined && !options.wait) throw new UsageError('--timeout needs --wait');
    // Checked before anything is started: exit 2 changes nothing.
    const timeout = options.timeout === undefined ? undefined : duration(options.timeout as string, 'timeout');
    const handle = await (await client()).fork(ref, {
      fromCall: from === undefined ? undefined : Number(from),
      version: options.version as string | undefined,
      queue: options.queue as string | undefined,
    });
    io.out(`${handle.id}\n`);
    if (options.wait) {
      const output = await handle.result(timeout === undefined ? {} : { timeout });
      io.out(`${JSON.stringify(output)}\n`);
    }
  },
};
