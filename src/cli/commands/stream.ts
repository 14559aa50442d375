/** `trellis stream <run> <key>`: the entries a run wrote to a stream (ctx.writeStream), optionally following new ones. */
import { STREAM_CURSOR } from '../../client/runs.ts';
import { NotFoundError } from '../../errors.ts';
import { assertName } from '../../workflow/names.ts';
import { integer, runId } from '../args.ts';
import { JSON_OPTION, type Command } from '../command.ts';
import { UsageError } from '../exit-codes.ts';
import { formatTime } from '../format.ts';

export const stream: Command = {
  name: 'stream',
  summary: 'print the entries a run wrote to a stream (ctx.writeStream); --follow waits for new ones until the stream closes or the run ends',
  args: '<run> <key>',
  description: 'Each line: cursor, time, the entry as JSON. Resume with --after <cursor>; --json prints one JSON object per line. '
    + 'See docs/workflows.md#streams.',
  positionals: [2, 2],
  options: {
    after: { type: 'string', value: 'CURSOR', description: 'start after this entry\'s cursor (default: the first entry)' },
    limit: { type: 'string', value: 'N', description: 'stop after N entries' },
    follow: { type: 'boolean', short: 'f', description: 'wait for new entries until the stream closes, the run ends, or SIGINT / SIGTERM' },
    ...JSON_OPTION,
  },
  async run({ args, options, client, io, interrupted }) {
    const id = runId(args[0]);
    const key = args[1] as string;
    try {
      assertName(key, 'stream');
    } catch (error) {
      throw new UsageError((error as Error).message);
    }
    const limit = options.limit === undefined ? undefined : integer(options.limit as string, 'limit', 1, 1_000_000_000, 0);
    const after = options.after as string | undefined;
    if (after !== undefined && !STREAM_CURSOR.test(after)) throw new UsageError(`--after must be a cursor this command printed (<execution>.<call>), not ${JSON.stringify(after)}`);
    const c = await client();
    let printed = 0;
    const print = (e: { value: unknown; cursor: string; writtenAt: Date }) => {
      io.out(options.json ? `${JSON.stringify({ cursor: e.cursor, writtenAt: e.writtenAt, value: e.value })}\n`
        : `${e.cursor}  ${formatTime(e.writtenAt)}  ${JSON.stringify(e.value)}\n`);
      return limit !== undefined && ++printed >= limit;
    };
    if (!options.follow) {
      // What is there now, without waiting, in pages.
      if ((await c.get(id)) === undefined) throw new NotFoundError(`run ${id} does not exist`);
      let cursor = after;
      for (;;) {
        const page = await c.streamEntries(id, key, { after: cursor, limit: 1000, consistency: 'primary' });
        for (const e of page.entries) if (print(e)) return;
        if (page.closed || page.entries.length < 1000) return;
        cursor = page.entries[page.entries.length - 1]!.cursor;
      }
    }
    const stop = new AbortController();
    void interrupted().then(() => stop.abort(new Error('interrupted')));
    try {
      for await (const e of c.readStream(id, key, { ...(after === undefined ? {} : { after }), signal: stop.signal })) {
        if (print(e)) break;
      }
    } catch (error) {
      if (!stop.signal.aborted) throw error;
    }
  },
};
