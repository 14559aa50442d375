/** `trellis signal <run> <name> [payload]`: send a signal to a run. */
import { json, runRef } from '../args.ts';
import type { Command } from '../command.ts';
import { UsageError } from '../exit-codes.ts';

export const signal: Command = {
  name: 'signal',
  summary: 'send a signal to a run (buffered until the run waits for it)',
  args: '<run> <signal> [payload-json]',
  description: 'The run is an id, or give --workflow and --key and leave <run> out: trellis signal --workflow approval --key order-7 approved \'{"by":"ada"}\'.\n'
    + 'Prints "sent", or "duplicate" when a signal with the same --id was already received.',
  positionals: [1, 3],
  options: {
    id: { type: 'string', value: 'ID', description: 'deduplication id: a repeat with the same id is dropped' },
    workflow: { type: 'string', value: 'NAME', description: 'with --key: the run of this workflow started with that key' },
    key: { type: 'string', value: 'KEY', description: 'with --workflow: the run started with this key' },
  },
  async run({ args, options, client, io }) {
    const byKey = options.workflow !== undefined || options.key !== undefined;
    if (byKey ? args.length > 2 : args.length < 2) {
      throw new UsageError('give <run> <signal> [payload-json], or --workflow W --key K <signal> [payload-json]');
    }
    const [ref, name, payloadText] = (byKey ? [undefined, ...args] : args) as [string | undefined, string, string | undefined];
    const run = runRef(ref, options);
    const payload = payloadText === undefined ? null : json(payloadText, 'payload');
    const sent = await (await client()).signal(run, name, payload, { id: options.id as string | undefined });
    io.out(sent ? 'sent\n' : 'duplicate\n');
  },
};
