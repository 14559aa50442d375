/**
 * `--wait` and `--timeout` of the commands that start a run (`start`,
 * `fork`): the timeout is read before anything starts, so a bad one exits 2
 * having changed nothing.
 */
import type { RunHandle } from '../client/options.ts';
import { duration } from './args.ts';
import type { CommandContext, OptionSpec, OptionValues } from './command.ts';
import { UsageError } from './exit-codes.ts';

/** The two options, for a command whose started run is `what` ('run', 'fork'). */
export function waitOptions(what: string): Record<string, OptionSpec> {
  return {
    wait: { type: 'boolean', description: `wait for the ${what} to finish and print its output (exit 1 if it failed)` },
    timeout: { type: 'string', value: 'DURATION', description: 'with --wait: give up after this long (exit 1)' },
  };
}

/**
 * Check `--wait` / `--timeout` before anything starts; returns what
 * `printStarted` needs.
 *
 * @example
 * const wait = readWait(options);
 * await printStarted(io, await c.start(workflow, input), wait);
 */
export function readWait(options: OptionValues): { wait: boolean; timeoutMs: number | undefined } {
  if (options.timeout !== undefined && !options.wait) throw new UsageError('--timeout needs --wait');
  return { wait: options.wait === true, timeoutMs: options.timeout === undefined ? undefined : duration(options.timeout as string, 'timeout') };
}

/** Print the started run's id, then, with --wait, its output. */
export async function printStarted(io: CommandContext['io'], handle: RunHandle<unknown>, o: { wait: boolean; timeoutMs: number | undefined }): Promise<void> {
  io.out(`${handle.id}\n`);
  if (!o.wait) return;
  const output = await handle.result(o.timeoutMs === undefined ? {} : { timeout: o.timeoutMs });
  io.out(`${JSON.stringify(output)}\n`);
}
