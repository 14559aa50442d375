/** `trellis schedules`: list the cron schedules, or pause, resume or delete one. */
import { NotFoundError } from '../../errors.ts';
import { actionOf } from '../args.ts';
import { JSON_OPTION, type Command } from '../command.ts';
import { UsageError } from '../exit-codes.ts';
import { formatTime, table, toJson } from '../format.ts';

const ACTIONS = ['list', 'pause', 'resume', 'delete'] as const;

export const schedules: Command = {
  name: 'schedules',
  summary: 'list the cron schedules (next tick, last run, errors), or pause / resume / delete one',
  args: '[list | pause <name> | resume <name> | delete <name>]',
  description: 'Schedules are created from TypeScript (client.schedules.set) or SQL (trellis.schedule_set); see docs/operations.md.',
  positionals: [0, 2],
  options: { ...JSON_OPTION },
  async run({ args, options, client, io }) {
    const action = actionOf(args, ACTIONS);
    const c = await client();
    if (action === 'list') {
      if (args.length > 1) throw new UsageError('list takes no name');
      const rows = await c.schedules.list();
      if (options.json) return io.out(toJson(rows));
      io.out(rows.length
        ? table(['name', 'cron', 'time zone', 'workflow', 'next', 'last tick', 'fired', 'state'], rows.map((s) => [
          s.name, s.cron, s.timeZone, s.workflow, formatTime(s.nextAt), formatTime(s.lastTickAt), String(s.fired),
          s.lastError ? `error: ${s.lastError.slice(0, 60)}` : s.paused ? 'paused' : 'active',
        ]))
        : 'no schedules\n');
      return;
    }
    const name = args[1];
    if (!name) throw new UsageError(`${action} needs a schedule name`);
    if (action === 'delete') {
      if (!(await c.schedules.delete(name))) throw new NotFoundError(`schedule ${JSON.stringify(name.slice(0, 100))} does not exist`);
      io.out(`deleted ${name}\n`);
      return;
    }
    const row = action === 'pause' ? await c.schedules.pause(name) : await c.schedules.resume(name);
    if (options.json) return io.out(toJson(row));
    io.out(`${name}: ${row.paused ? 'paused' : `active, next ${formatTime(row.nextAt)}`}\n`);
  },
};
