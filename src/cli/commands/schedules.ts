/** `trellis schedules`: list the cron schedules, pause, resume or delete one, or trigger or backfill its ticks. */
import { OVERLAP_POLICIES, type OverlapPolicy } from '../../client/schedules.ts';
import { NotFoundError } from '../../errors.ts';
import { actionOf, time } from '../args.ts';
import { JSON_OPTION, type Command } from '../command.ts';
import { UsageError } from '../exit-codes.ts';
import { formatTime, table, toJson } from '../format.ts';

const ACTIONS = ['list', 'pause', 'resume', 'delete', 'trigger', 'backfill'] as const;


export const schedules: Command = {
  name: 'schedules',
  summary: 'list the cron schedules (next tick, last run, errors), pause / resume / delete one, or trigger / backfill its ticks',
  args: '[list | pause <name> | resume <name> | delete <name> | trigger <name> | backfill <name>]',
  description: 'Schedules are created from TypeScript (client.schedules.set) or SQL (trellis.schedule_set); see docs/operations.md. '
    + 'trigger starts a run now, as a tick at this moment would; backfill starts the runs of the ticks from --from to --to '
    + '(default now) that have none (a tick that ran is found by its key), at most 1000. Both judge --overlap '
    + '(default the schedule\'s) against its last run.',
  positionals: [0, 2],
  options: {
    from: { type: 'string', value: 'TIME', description: 'backfill: the first time (ISO, or a duration ago: 6h)' },
    to: { type: 'string', value: 'TIME', description: 'backfill: the last time (ISO, or a duration ago; default now)' },
    overlap: { type: 'string', value: 'POLICY', description: `trigger / backfill: ${OVERLAP_POLICIES.join(' | ')} (default the schedule's)` },
    ...JSON_OPTION,
  },
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
    if (action !== 'backfill' && (options.from !== undefined || options.to !== undefined)) throw new UsageError('--from and --to are for backfill');
    if (action === 'trigger' || action === 'backfill') {
      // Checked by the client (a ValidationError: exit 2, before anything is read or written).
      const overlap = options.overlap as OverlapPolicy | undefined;
      let ticks;
      if (action === 'trigger') {
        ticks = [await c.schedules.trigger(name, overlap === undefined ? {} : { overlap })];
      } else {
        if (typeof options.from !== 'string') throw new UsageError('backfill needs --from');
        const from = time(options.from, 'from');
        const to = typeof options.to === 'string' ? time(options.to, 'to') : undefined;
        ticks = await c.schedules.backfill(name, { from, ...(to === undefined ? {} : { to }), ...(overlap === undefined ? {} : { overlap }) });
      }
      if (options.json) return io.out(toJson(ticks));
      io.out(ticks.length
        ? table(['tick', 'outcome', 'run'], ticks.map((t) => [formatTime(t.tick), t.outcome, t.runId ?? '']))
        : 'no tick in that range\n');
      return;
    }
    if (options.overlap !== undefined) throw new UsageError('--overlap is for trigger and backfill');
    const row = action === 'pause' ? await c.schedules.pause(name) : await c.schedules.resume(name);
    if (options.json) return io.out(toJson(row));
    io.out(`${name}: ${row.paused ? 'paused' : `active, next ${formatTime(row.nextAt)}`}\n`);
  },
};
