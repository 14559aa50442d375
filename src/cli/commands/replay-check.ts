/**
 * `trellis replay-check <module>`: replay the recorded histories of runs
 * against the workflow code a module exports (checkReplay in
 * trellis/testing), before that code is deployed under the same versions.
 * Reads only; exit 1 when some run would break.
 */
import { type CheckReplayOptions, checkReplay } from '../../testing/replay-check.ts';
import { integer, quote, statusOption } from '../args.ts';
import type { Command } from '../command.ts';
import { EXIT, UsageError } from '../exit-codes.ts';
import { loadWorkflows } from '../load-workflows.ts';

export const replayCheck: Command = {
  name: 'replay-check',
  summary: 'replay the histories of runs against the workflow code a module exports, before deploying it (reads only)',
  args: '<module>',
  description: 'Each workflow the module exports is replayed over the current execution of its runs (of its own version, unless\n'
    + '--version says another): no step body runs and nothing is written. A run fails the check when the code asks for another\n'
    + 'call than its history holds, returns with recorded calls left over, or no longer accepts its input; a finished run (with\n'
    + '--status completed) also when the code ends it otherwise. Prints one line per run that fails and a summary; exit 1 if any fails.',
  positionals: [1, 1],
  options: {
    workflow: { type: 'string', value: 'NAME', description: 'check only the workflow NAME the module exports' },
    version: { type: 'string', value: 'V', description: 'check the runs pinned to version V (default: each definition\'s own)' },
    status: { type: 'string', value: 'STATUS', multiple: true, description: 'runs in this status (also comma-separated; default: pending, running, waiting, paused)' },
    limit: { type: 'string', value: 'N', description: 'at most N runs per workflow, the newest first (default 1000)' },
  },
  async run({ args, options, client, io }) {
    const statuses = statusOption(options.status);
    const limit = options.limit === undefined ? 1000 : integer(options.limit as string, 'limit', 1, 100_000, 1000);
    const only = options.workflow as string | undefined;
    const definitions = (await loadWorkflows(args[0] as string)).filter((d) => only === undefined || d.name === only);
    if (!definitions.length) throw new UsageError(only === undefined ? 'the module exports no workflow' : `the module exports no workflow named ${quote(only)}`);
    const db = (await client()).db;
    let checked = 0;
    let broken = 0;
    for (const definition of definitions) {
      const o: CheckReplayOptions = { limit, statuses: statuses as CheckReplayOptions['statuses'], version: options.version as string | undefined };
      const report = await checkReplay(db, definition, o);
      checked += report.length;
      for (const r of report.filter((x) => !x.ok)) {
        broken++;
        io.out(`${r.runId} ${definition.name}@${r.version} ${r.status}: ${r.problem}\n`);
      }
    }
    io.out(`checked ${checked} run${checked === 1 ? '' : 's'} of ${definitions.map((d) => `${d.name}@${options.version ?? d.version}`).join(', ')}: `
      + `${broken ? `${broken} would break` : 'all replay'}\n`);
    return broken ? EXIT.failed : EXIT.ok;
  },
};
