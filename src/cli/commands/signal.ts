/** `trellis signal <run> <name> [payload]`: send a signal to a run (or, with --start, to the key's run, started if none). */
import { json, runRef } from '../args.ts';
import type { Command, OptionValues } from '../command.ts';
import { UsageError } from '../exit-codes.ts';
import type { RunRef } from '../../client/options.ts';

export const signal: Command = {
  name: 'signal',
  summary: 'send a signal to a run (buffered until the run waits for it)',
  args: '<run> <signal> [payload-json]',
  description: 'The run is an id, or give --workflow and --key and leave <run> out: trellis signal --workflow approval --key order-7 approved \'{"by":"ada"}\'.\n'
    + 'Prints "sent", or "duplicate" when a signal with the same --id was already received.\n'
    + 'With --start INPUT-JSON (and --workflow, --key): signal the key\'s unfinished run, or start one with that input and signal it,\n'
    + 'in one transaction (signal with start); prints "sent <run>", "started <run>" or "duplicate <run>".',
  positionals: [1, 3],
  options: {
    id: { type: 'string', value: 'ID', description: 'deduplication id: a repeat with the same id is dropped' },
    workflow: { type: 'string', value: 'NAME', description: 'with --key: the run of this workflow started with that key' },
    key: { type: 'string', value: 'KEY', description: 'with --workflow: the run started with this key' },
    start: { type: 'string', value: 'INPUT-JSON', description: 'with --workflow and --key: start the key\'s run with this input if it has none unfinished' },
  },
  async run({ args, options, client, io }) {
    if (options.start !== undefined) {
      if (options.workflow === undefined || options.key === undefined || args.length < 1 || args.length > 2) {
        throw new UsageError('give --workflow W --key K --start INPUT-JSON <signal> [payload-json]');
      }
      const [name, payloadText] = args as [string, string | undefined];
      const input = json(options.start as string, 'start input');
      const payload = payloadText === undefined ? null : json(payloadText, 'payload');
      const out = await (await client()).signalWithStart(options.workflow as string, input, name, payload,
        { key: options.key as string, signalId: options.id as string | undefined });
      io.out(`${out.started ? 'started' : out.delivered ? 'sent' : 'duplicate'} ${out.id}\n`);
      return;
    }
    const { run, name, payload } = messageArgs(args, options);
    const sent = await (await client()).signal(run, name, payload, { id: options.id as string | undefined });
    io.out(sent ? 'sent\n' : 'duplicate\n');
  },
};

/**
 * `<run> <signal> [payload-json]`, or `--workflow W --key K <signal>
 * [payload-json]`: the run, the signal's name and its payload (`signal`,
 * `request`).
 */
export function messageArgs(args: readonly string[], options: OptionValues): { run: RunRef; name: string; payload: unknown } {
  const byKey = options.workflow !== undefined || options.key !== undefined;
  if (byKey ? args.length > 2 : args.length < 2) {
    throw new UsageError('give <run> <signal> [payload-json], or --workflow W --key K <signal> [payload-json]');
  }
  const [ref, name, payloadText] = (byKey ? [undefined, ...args] : args) as [string | undefined, string, string | undefined];
  return { run: runRef(ref, options), name, payload: payloadText === undefined ? null : json(payloadText, 'payload') };
}
