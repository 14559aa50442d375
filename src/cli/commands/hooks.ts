/** `trellis hooks`: lifecycle hook deliveries (parked first), or retry a parked one. */
import { HOOK_STATUSES, type HookStatus } from '../../db/events.ts';
import { actionOf, integer } from '../args.ts';
import { JSON_OPTION, type Command } from '../command.ts';
import { UsageError } from '../exit-codes.ts';
import { errorText, formatTime, table, toJson } from '../format.ts';

const ACTIONS = ['list', 'retry'] as const;

export const hooks: Command = {
  name: 'hooks',
  summary: 'list lifecycle hook deliveries (parked first: they kept failing), or retry a parked one',
  args: '[list | retry <id>]',
  description: 'A delivered hook is deleted, so the list holds what is due, running or parked; see docs/events.md.',
  positionals: [0, 2],
  options: {
    status: { type: 'string', value: 'S', description: `only deliveries in this status (${HOOK_STATUSES.join(', ')})` },
    workflow: { type: 'string', value: 'NAME', description: 'only deliveries of this workflow' },
    run: { type: 'string', value: 'ID', description: 'only deliveries of this run' },
    limit: { type: 'string', value: 'N', description: 'at most this many, 1-1000 (default 100)' },
    ...JSON_OPTION,
  },
  async run({ args, options, client, io }) {
    const action = actionOf(args, ACTIONS);
    const c = await client();
    if (action === 'retry') {
      const id = args[1];
      if (!id) throw new UsageError('retry needs a hook delivery id (trellis hooks lists them)');
      await c.hooks.retry(id);
      io.out(`hook delivery ${id}: pending again\n`);
      return;
    }
    if (args.length > 1) throw new UsageError('list takes no id');
    // A bad status is the client's ValidationError (exit 2).
    const rows = await c.hooks.list({
      status: options.status as HookStatus | undefined,
      workflow: options.workflow as string | undefined,
      runId: options.run as string | undefined,
      limit: integer(options.limit as string | undefined, 'limit', 1, 1000, 100),
    });
    if (options.json) return io.out(toJson(rows));
    io.out(rows.length
      ? table(['id', 'status', 'hook', 'workflow', 'run', 'attempts', 'due', 'held by', 'error'], rows.map((d) => [
        d.id, d.status, d.hook, `${d.workflow}@${d.version}`, d.runId, String(d.attempts), formatTime(d.runAt),
        // A running delivery: which worker holds it and until when (a dead worker's is due again then).
        d.status === 'running' && d.leaseOwner ? `${d.leaseOwner} until ${formatTime(d.leaseExpiresAt)}` : '-',
        errorText(d.lastError, 60),
      ]))
      : 'no hook deliveries waiting\n');
  },
};
