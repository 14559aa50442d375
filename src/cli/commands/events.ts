/** `trellis events`: the outbox, oldest first (or after a cursor), optionally following new events. */
import { EVENT_KINDS, type EventKind } from '../../db/events.ts';
import { integer, quote } from '../args.ts';
import { JSON_OPTION, type Command } from '../command.ts';
import { UsageError } from '../exit-codes.ts';
import { formatTime, oneLine } from '../format.ts';

export const events: Command = {
  name: 'events',
  summary: 'print the outbox\'s events in commit-safe order (filter by workflow, kind, run; --follow waits for new ones)',
  description: 'Each line: cursor, time, kind, workflow@version, run, key. Resume with --after <cursor>; '
    + '--json prints one JSON object per line. See docs/events.md.',
  options: {
    workflow: { type: 'string', value: 'NAME', multiple: true, description: 'only events of this workflow (repeatable)' },
    kind: { type: 'string', value: 'K', multiple: true, description: `only events of this kind (repeatable or comma-separated: ${EVENT_KINDS.join(', ')})` },
    run: { type: 'string', value: 'ID', description: 'only events of this run' },
    after: { type: 'string', value: 'CURSOR', description: 'start after this event\'s cursor (default: the oldest event kept)' },
    limit: { type: 'string', value: 'N', description: 'stop after N events (default: all, or until interrupted with --follow)' },
    follow: { type: 'boolean', short: 'f', description: 'keep waiting for new events until SIGINT / SIGTERM' },
    ...JSON_OPTION,
  },
  async run({ options, client, io, interrupted }) {
    const kinds = ((options.kind as string[] | undefined) ?? []).flatMap((k) => k.split(',')).map((k) => k.trim()).filter(Boolean);
    for (const k of kinds) if (!EVENT_KINDS.includes(k as EventKind)) throw new UsageError(`unknown event kind ${quote(k)} (one of ${EVENT_KINDS.join(', ')})`);
    const limit = options.limit === undefined ? undefined : integer(options.limit as string, 'limit', 1, 1_000_000_000, 0);
    const stop = new AbortController();
    if (options.follow) void interrupted().then(() => stop.abort());
    const workflows = options.workflow as string[] | undefined;
    let printed = 0;
    for await (const e of (await client()).events({
      ...(workflows?.length ? { workflows } : {}),
      ...(kinds.length ? { kinds: kinds as EventKind[] } : {}),
      ...(options.run === undefined ? {} : { runId: options.run as string }),
      ...(options.after === undefined ? {} : { after: options.after as string }),
      follow: Boolean(options.follow),
      signal: stop.signal,
    })) {
      io.out(options.json ? `${JSON.stringify(e)}\n`
        : `${e.cursor}  ${formatTime(e.createdAt)}  ${e.kind.padEnd(14)}  ${e.workflow}@${e.version}  ${e.runId}${e.key === null ? '' : `  ${oneLine(e.key)}`}\n`);
      if (limit !== undefined && ++printed >= limit) break;
    }
  },
};
