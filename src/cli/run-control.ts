/** The shape shared by cancel, pause, resume and retry: one run by id (or workflow and key), its status afterwards. */
import type { RunState } from '../db/tables.ts';
import type { Client } from '../client/client.ts';
import type { RunRef } from '../client/options.ts';
import { runRef } from './args.ts';
import type { Command, OptionSpec } from './command.ts';

const REF_OPTIONS: Record<string, OptionSpec> = {
  workflow: { type: 'string', value: 'NAME', description: 'with --key: the run of this workflow started with that key' },
  key: { type: 'string', value: 'KEY', description: 'with --workflow: the run started with this key' },
};

const REASON_OPTION: Record<string, OptionSpec> = {
  reason: { type: 'string', value: 'TEXT', description: 'why (stored with the run)' },
};

/**
 * A control command: `act` changes the run, the new status is printed.
 *
 * @example
 * export const resume = controlCommand({ name: 'resume', summary: 'resume a paused run', description: '…',
 *   act: (client, run) => client.resume(run) });
 */
export function controlCommand(o: {
  name: string;
  summary: string;
  description: string;
  reason?: boolean | undefined;
  act(client: Client, run: RunRef, reason: string | undefined): Promise<RunState>;
}): Command {
  return {
    name: o.name,
    summary: o.summary,
    description: `${o.description}\nPrints the run's status afterwards.`,
    args: '<run>',
    positionals: [0, 1],
    options: { ...REF_OPTIONS, ...(o.reason ? REASON_OPTION : {}) },
    async run({ args, options, client, io }) {
      const ref = runRef(args[0], options);
      const status = await o.act(await client(), ref, options.reason as string | undefined);
      io.out(`${status}\n`);
    },
  };
}
