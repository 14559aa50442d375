/** What `show` and `diagram` read about one run: the run, its steps, its children, its signals and the runs waiting on it. */
import type { Client } from '../client/client.ts';
import type { Run, Step } from '../client/runs.ts';
import { NotFoundError } from '../errors.ts';

export interface ChildRun {
  id: string;
  workflow: string;
  status: string;
  parentSeq: number | null;
  createdAt: Date;
  finishedAt: Date | null;
}

export interface ReceivedSignal {
  name: string;
  signalId: string | null;
  receivedAt: Date;
  consumedAt: Date | null;
  consumedSeq: number | null;
  /** For a request (decision 0044): when the run answered it, and whether it refused. */
  answeredAt: Date | null;
  refused: boolean;
}

/** A run waiting on this one without being its child (ctx.waitForRun, decision 0039). */
export interface WatchingRun {
  id: string;
  workflow: string;
  status: string;
  createdAt: Date;
}

export interface RunDetails {
  run: Run;
  steps: Step[];
  children: ChildRun[];
  signals: ReceivedSignal[];
  /** The runs waiting on this one through trellis.run_watches. */
  watchers: WatchingRun[];
}

/**
 * The run with everything recorded about it; NotFoundError when there is no such run.
 *
 * @example
 * const { run, steps, children, signals } = await runDetails(client, id);
 */
export async function runDetails(client: Client, id: string, o: { signals?: boolean | undefined } = {}): Promise<RunDetails> {
  const run = await client.get(id);
  if (!run) throw new NotFoundError(`run ${id} does not exist`);
  const [steps, children, signals, watchers] = await Promise.all([
    client.history(id),
    client.db.selectFrom('trellis.runs')
      .select(['id', 'workflow', 'status', 'parent_seq', 'created_at', 'finished_at'])
      .where('parent_run_id', '=', id).orderBy('parent_seq').orderBy('created_at').execute(),
    o.signals === false ? [] : client.db.selectFrom('trellis.signals')
      .select(['name', 'signal_id', 'created_at', 'consumed_at', 'consumed_seq', 'replied_at', 'reply'])
      .where('run_id', '=', id).orderBy('id').execute(),
    // The waiters by id (each lives in its own bucket, not the watch's).
    client.db.selectFrom('trellis.runs').select(['id', 'workflow', 'status', 'created_at'])
      .where('id', 'in', (eb) => eb.selectFrom('trellis.run_watches').select('waiter_id').where('run_id', '=', id))
      .orderBy('created_at').execute(),
  ]);
  return {
    run,
    steps,
    children: children.map((c) => ({
      id: c.id, workflow: c.workflow, status: c.status, parentSeq: c.parent_seq,
      createdAt: c.created_at as Date, finishedAt: c.finished_at as Date | null,
    })),
    signals: signals.map((s) => ({
      name: s.name, signalId: s.signal_id, receivedAt: s.created_at as Date,
      consumedAt: s.consumed_at as Date | null, consumedSeq: s.consumed_seq,
      answeredAt: s.replied_at as Date | null,
      refused: typeof s.reply === 'object' && s.reply !== null && 'error' in s.reply && !('value' in s.reply),
    })),
    watchers: watchers.map((w) => ({ id: w.id, workflow: w.workflow, status: w.status, createdAt: w.created_at as Date })),
  };
}
