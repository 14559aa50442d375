/**
 * The explicit link between a client and the workers in its process
 * (docs/decisions/0015-local-hand-off.md, 0023-floors.md): the workers a
 * start can hand its run to (no NOTIFY, no claim), and the news that a run
 * ended, so a `result()` waiting in this process looks at once instead of
 * waiting for the NOTIFY. Each client owns one; a worker joins it with
 * `createWorker({ client })`. No module-level state: two clients and two
 * workers in one process are paired only as the app says.
 */
import type { ClaimedRun } from './history.ts';

/** A run a joined worker completed: its output as the committed op carried it. */
export interface LocalCompletion {
  /** The JSON text of the output (undefined: null), as `JSON.stringify` wrote it. */
  readonly output: string | undefined;
}

/** A free slot a worker keeps for a run its process is starting. Exactly one of adopt/cancel must follow. */
export interface Handoff {
  /** The worker id to lease the run to, for how long, and the queue to start it in. */
  readonly worker: string;
  readonly leaseMs: number;
  readonly queue: string;
  /** The start committed and leased the run to this worker: execute it. */
  adopt(run: ClaimedRun): void;
  /**
   * Nothing was leased (the start failed, or returned a run it did not
   * lease): free the slot. `unknown`: the start failed with the connection
   * (its commit may have leased a run the worker never saw), so the worker
   * gives back what is leased to it that it does not hold.
   */
  cancel(unknown?: boolean): void;
}

/** A worker as a start in its process sees it. */
export interface LocalWorker {
  /** A slot for a run of `workflow@version` in `queue` (undefined: its queue), or undefined if this worker should not take it now. */
  reserve(workflow: string, version: string, queue: string | undefined): Handoff | undefined;
}

/**
 * The link one client shares with the workers that joined it
 * (`createWorker({ client })`). Internal: apps pass the client, not this.
 */
export class LocalHandoff {
  private readonly workers = new Set<LocalWorker>();
  private readonly finishListeners = new Set<(runId: string, completed?: LocalCompletion) => void>();
  /** Executions joined workers are running now, by run id (two may overlap: a stale one and its successor). */
  private readonly executing = new Map<string, number>();

  /**
   * @param handsOff whether starts may be handed to the joined workers
   *   (`createClient({ handoff: false })` turns it off; finish news still flows).
   */
  constructor(readonly handsOff = true) {}

  /** Make `worker` a hand-off target of this client's starts; returns the undo. */
  join(worker: LocalWorker): () => void {
    this.workers.add(worker);
    return () => void this.workers.delete(worker);
  }

  /** The first joined worker that keeps a slot for this run, with that slot. */
  reserve(workflow: string, version: string, queue: string | undefined): Handoff | undefined {
    if (!this.handsOff) return undefined;
    for (const worker of this.workers) {
      const handoff = worker.reserve(workflow, version, queue);
      if (handoff) return handoff;
    }
    return undefined;
  }

  /**
   * Call `fn` with the id of every run a joined worker ends (after the
   * commit), and for a completed run its output as committed; returns the undo.
   */
  onFinish(fn: (runId: string, completed?: LocalCompletion) => void): () => void {
    this.finishListeners.add(fn);
    return () => void this.finishListeners.delete(fn);
  }

  /** A joined worker committed the end of `runId` (completed, with `completed`; failed or cancelled, without). */
  finished(runId: string, completed?: LocalCompletion): void {
    for (const fn of this.finishListeners) fn(runId, completed);
  }

  /** A joined worker began executing `runId`; `ended` must follow, whatever happens. */
  began(runId: string): void {
    this.executing.set(runId, (this.executing.get(runId) ?? 0) + 1);
  }

  /**
   * A joined worker's execution of `runId` is over, after `finished` if it
   * ended the run. The finish listeners hear it without a completion (so a
   * waiter still there reads the row): the execution may have parked the
   * run, given it back, or lost its lease to another worker that ends it.
   */
  ended(runId: string): void {
    const left = (this.executing.get(runId) ?? 1) - 1;
    if (left > 0) this.executing.set(runId, left);
    else this.executing.delete(runId);
    for (const fn of this.finishListeners) fn(runId);
  }

  /**
   * Whether a joined worker is executing `runId` now. If so, the run has not
   * ended (in this process's view), and this link will report when that
   * execution is over, so a result() need not read the row first.
   */
  isExecuting(runId: string): boolean {
    return this.executing.has(runId);
  }
}

/**
 * What `createWorker({ client })` takes: anything that carries a client's
 * link, in practice a `Client`. Declared here so worker/ need not import client/.
 */
export interface HandoffSource {
  readonly localHandoff: LocalHandoff;
}
