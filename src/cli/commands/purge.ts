/** `trellis purge --older-than D`: delete finished runs in batches, with progress. */
import { duration, integer } from '../args.ts';
import type { Command } from '../command.ts';
import { UsageError } from '../exit-codes.ts';
import { progress } from '../progress.ts';

export const purge: Command = {
  name: 'purge',
  summary: 'delete runs that finished more than --older-than ago (with their steps and signals)',
  description: 'Deletes in batches (trellis.run_purge) until none is left, oldest first; a child run is kept while its parent waits on it,\n'
    + 'and a run while a lifecycle hook of it is not delivered (pending, retrying, running or parked).\n'
    + 'Progress goes to stderr: a bar on a terminal, a line per batch otherwise. Ctrl-C stops after the current batch.\n'
    + 'Prints how many runs were deleted.',
  options: {
    'older-than': { type: 'string', value: 'DURATION', description: 'required: finished more than this long ago (7 days, 12h)' },
    workflow: { type: 'string', value: 'NAME', description: 'only runs of this workflow' },
    batch: { type: 'string', value: 'N', description: 'runs per transaction, 1-100000 (default 1000)' },
  },
  async run({ options, client, pool, io, interrupted }) {
    if (options['older-than'] === undefined) throw new UsageError('--older-than is required');
    const olderThan = duration(options['older-than'] as string, 'older-than');
    const batch = integer(options.batch as string | undefined, 'batch', 1, 100_000, 1000);
    const workflow = options.workflow as string | undefined;
    const c = await client();
    // The estimate for the bar: finished runs past the cutoff (children a parent waits on are counted but kept).
    const { rows } = await pool().query<{ n: number }>(
      `select pg_catalog.count(*)::int as n from trellis.runs
        where finished_at < trellis.now() - pg_catalog.make_interval(secs => $1::double precision / 1000)
          and ($2::text is null or workflow = $2)`, [olderThan, workflow ?? null]);
    const total = rows[0]?.n ?? 0;
    let stop = false;
    void interrupted().then(() => (stop = true));
    const bar = progress(io, 'purged');
    let done = 0;
    try {
      while (!stop) {
        const n = await c.purge({ olderThan, limit: batch, workflow });
        done += n;
        if (n > 0) bar.update(done, total);
        if (n === 0) break;
      }
    } finally {
      bar.end();
    }
    io.out(`purged ${done} run${done === 1 ? '' : 's'}${stop ? ' (interrupted)' : ''}\n`);
    return stop ? 130 : 0;
  },
};
