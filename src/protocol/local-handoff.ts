/**
 * What a client and the workers in its process share when they use the same
 * pg Pool: the workers a start can hand its run to (no NOTIFY, no claim; see
 * docs/decisions/0015-local-hand-off.md), and the news that a run ended, so
 * a `result()` waiting in this process looks at once instead of waiting for
 * the NOTIFY. Keyed by the Pool object: one pool is one database.
 */
import type { Pool } from '../db/pg.ts';
import type { ClaimedRun } from './history.ts';

/** A free slot a worker keeps for a run its process is starting. Exactly one of adopt/cancel must follow. */
export interface Handoff {
  /** The worker id to lease the run to, for how long, and the queue to start it in. */
  readonly worker: string;
  readonly leaseMs: number;
  readonly queue: string;
  /** The start committed and leased the run to this worker: execute it. */
  adopt(run: ClaimedRun): void;
  /** Nothing was leased (the start failed, or returned a run it did not lease): free the slot. */
  cancel(): void;
}

/** A worker as a start in its process sees it. */
export interface LocalWorker {
  /** A slot for a run of `workflow@version` in `queue` (undefined: its queue), or undefined if this worker should not take it now. */
  reserve(workflow: string, version: string, queue: string | undefined): Handoff | undefined;
}

const workers = new WeakMap<Pool, Set<LocalWorker>>();
const finishListeners = new WeakMap<Pool, Set<(runId: string) => void>>();

function setOf<T>(map: WeakMap<Pool, Set<T>>, pool: Pool): Set<T> {
  let set = map.get(pool);
  if (!set) {
    set = new Set();
    map.set(pool, set);
  }
  return set;
}

/** Make `worker` a hand-off target for starts through `pool`; returns the undo. */
export function addLocalWorker(pool: Pool, worker: LocalWorker): () => void {
  setOf(workers, pool).add(worker);
  return () => void workers.get(pool)?.delete(worker);
}

/** The first worker on `pool` that keeps a slot for this run, with that slot. */
export function reserveLocal(pool: Pool, workflow: string, version: string, queue: string | undefined): Handoff | undefined {
  const set = workers.get(pool);
  if (!set) return undefined;
  for (const worker of set) {
    const handoff = worker.reserve(workflow, version, queue);
    if (handoff) return handoff;
  }
  return undefined;
}

/** Call `fn` with the id of every run a worker on `pool` ends (after the commit); returns the undo. */
export function onLocalFinish(pool: Pool, fn: (runId: string) => void): () => void {
  setOf(finishListeners, pool).add(fn);
  return () => void finishListeners.get(pool)?.delete(fn);
}

/** A worker on `pool` committed the end of `runId` (completed, failed or cancelled). */
export function localFinished(pool: Pool, runId: string): void {
  const set = finishListeners.get(pool);
  if (set) for (const fn of set) fn(runId);
}
