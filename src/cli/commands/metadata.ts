/** `trellis metadata <run> <fields-json>`: merge fields into a run's metadata. */
import { json, runRef } from '../args.ts';
import type { Command } from '../command.ts';
import { UsageError } from '../exit-codes.ts';

export const metadata: Command = {
  name: 'metadata',
  summary: 'merge fields into a run\'s metadata (null removes a field)',
  args: '<run> <fields-json>',
  description: 'Sets each field of the JSON object in the run\'s metadata and removes each field given null; prints the metadata as it now is.\n'
    + 'The run is an id, or give --workflow and --key and leave <run> out: trellis metadata --workflow order --key o-7 \'{"reviewedBy":"ada"}\'.',
  positionals: [1, 2],
  options: {
    workflow: { type: 'string', value: 'NAME', description: 'with --key: the run of this workflow started with that key' },
    key: { type: 'string', value: 'KEY', description: 'with --workflow: the run started with this key' },
  },
  async run({ args, options, client, io }) {
    const byKey = options.workflow !== undefined || options.key !== undefined;
    if (byKey ? args.length !== 1 : args.length !== 2) {
      throw new UsageError('give <run> <fields-json>, or --workflow W --key K <fields-json>');
    }
    const [ref, fieldsText] = (byKey ? [undefined, ...args] : args) as [string | undefined, string];
    const fields = json(fieldsText, 'fields');
    if (typeof fields !== 'object' || fields === null || Array.isArray(fields)) throw new UsageError('fields must be a JSON object');
    io.out(`${JSON.stringify(await (await client()).setMetadata(runRef(ref, options), fields as Record<string, unknown>))}\n`);
  },
};
