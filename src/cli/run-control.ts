/**
 * The shape shared by cancel, pause, resume and retry: one run by id (or
 * workflow and key), its status afterwards; or with --all, every run the
 * filters match, in batches, with progress.
 */
import type { RunState } from '../db/tables.ts';
import type { Client } from '../client/client.ts';
import type { ControlFilter, ControlManyOptions, ControlManyResult, RunRef } from '../client/options.ts';
import { integer, runFilterOptions, runRef } from './args.ts';
import type { Command, OptionSpec } from './command.ts';
import { UsageError } from './exit-codes.ts';
import { progress } from './progress.ts';

const REF_OPTIONS: Record<string, OptionSpec> = {
  workflow: { type: 'string', value: 'NAME', description: 'with --key: the run of this workflow started with that key' },
  key: { type: 'string', value: 'KEY', description: 'with --workflow: the run started with this key' },
};

const MANY_OPTIONS: Record<string, OptionSpec> = {
  all: { type: 'boolean', description: 'every run the filters below (and --workflow, --key) match, instead of one run; alone: every run' },
  version: { type: 'string', value: 'V', description: 'with --all: only runs of this version' },
  queue: { type: 'string', value: 'NAME', description: 'with --all: only runs on this queue' },
  status: { type: 'string', value: 'S', multiple: true, description: 'with --all: only runs in this status (also comma-separated)' },
  since: { type: 'string', value: 'TIME', description: 'with --all: created after (an ISO time or a duration ago: 1h, 7 days)' },
  until: { type: 'string', value: 'TIME', description: 'with --all: created before (an ISO time or a duration ago)' },
  metadata: { type: 'string', value: 'JSON', description: 'with --all: only runs whose metadata contains this JSON object' },
  batch: { type: 'string', value: 'N', description: 'with --all: runs per transaction, 1-10000 (default 1000)' },
  'dry-run': { type: 'boolean', description: 'with --all: print the runs it would change (one id a line) and their count; change nothing' },
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
  /** Past tense for the progress and the total (`cancelled`). */
  done: string;
  /** Said after the --all total (what the count means, when a control is a request). */
  totalNote?: string | undefined;
  act(client: Client, run: RunRef, reason: string | undefined): Promise<RunState>;
  many(client: Client, filter: ControlFilter, options: ControlManyOptions): Promise<ControlManyResult>;
}): Command {
  return {
    name: o.name,
    summary: o.summary,
    description: `${o.description}\nPrints the run's status afterwards. With --all: every run the filters match that the ${o.name} applies to,\n`
      + `in batches (progress on stderr; Ctrl-C stops after the current batch); prints how many were ${o.done}.\n`
      + 'See what it would change first with --dry-run (or what the filters match with `trellis ls` and the same filters).',
    args: '<run>',
    positionals: [0, 1],
    options: { ...REF_OPTIONS, ...MANY_OPTIONS, ...(o.reason ? REASON_OPTION : {}) },
    async run({ args, options, client, io, interrupted }) {
      const manyFlags = Object.keys(MANY_OPTIONS).filter((k) => k !== 'all' && options[k] !== undefined);
      if (!options.all) {
        if (manyFlags.length) throw new UsageError(`--${manyFlags[0]} needs --all`);
        const ref = runRef(args[0], options);
        const status = await o.act(await client(), ref, options.reason as string | undefined);
        io.out(`${status}\n`);
        return 0;
      }
      if (args[0] !== undefined) throw new UsageError('give a run id or --all with filters, not both');
      const filter: ControlFilter = { ...runFilterOptions(options), version: options.version as string | undefined };
      for (const k of Object.keys(filter) as (keyof ControlFilter)[]) if (filter[k] === undefined) delete filter[k];
      if (Object.keys(filter).length === 0) filter.all = true;
      const batchSize = integer(options.batch as string | undefined, 'batch', 1, 10_000, 1000);
      const c = await client();
      if (options['dry-run']) {
        const { changed } = await o.many(c, filter, { batchSize, dryRun: true });
        for (const id of changed) io.out(`${id}\n`);
        io.out(`would have ${o.done} ${changed.length} run${changed.length === 1 ? '' : 's'} (dry run: nothing changed)\n`);
        return 0;
      }
      let stop = false;
      void interrupted().then(() => (stop = true));
      const bar = progress(io, o.done);
      let result: ControlManyResult;
      try {
        // onBatch runs after each batch (its own transaction): Ctrl-C stops between two.
        result = await o.many(c, filter, {
          batchSize,
          ...(o.reason && options.reason !== undefined ? { reason: options.reason as string } : {}),
          onBatch: (p) => {
            bar.update(p.changed.length, 0);
            if (stop) throw new Interrupted(p);
          },
        }).catch((error: unknown) => {
          if (error instanceof Interrupted) return error.progress;
          throw error;
        });
      } finally {
        bar.end();
      }
      const n = result.changed.length;
      io.out(`${o.done} ${n} run${n === 1 ? '' : 's'}${result.unchanged.length ? ` (${result.unchanged.length} changed meanwhile, left as they were)` : ''}${stop ? ' (interrupted)' : ''}${n && o.totalNote ? `; ${o.totalNote}` : ''}\n`);
      return stop ? 130 : 0;
    },
  };
}

/** Thrown from onBatch to stop a bulk control between two batches. */
class Interrupted extends Error {
  constructor(readonly progress: ControlManyResult) {
    super('interrupted');
  }
}
