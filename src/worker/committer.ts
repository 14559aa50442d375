/**
 * Grouped commits: checkpoint ops from every run this worker executes are
 * queued and written together by one trellis.checkpoint_apply call, with at
 * most one call in flight, so under load one transaction carries the steps
 * of many runs. Each op's promise settles only after its transaction
 * committed (or was refused), so a step is never acknowledged early.
 *
 * A flush starts on the next macrotask after the first op is queued, which
 * lets a workflow that returns right after its last step queue its
 * completion into the same transaction as that step.
 */
import type pg from 'pg';
import { checkpointApply, type CheckpointOp } from '../db/checkpoints.ts';
import { LeaseLostError } from '../errors.ts';

interface Pending {
  op: CheckpointOp;
  resolve: () => void;
  reject: (error: unknown) => void;
}

export interface CommitterStats {
  flushes: number;
  ops: number;
}

export class Committer {
  private queue: Pending[] = [];
  /** Queued 'running' markers by run:seq, so a result can drop its marker. */
  private readonly markers = new Map<string, Pending>();
  private flushing: Promise<void> | undefined;
  private scheduled = false;
  readonly stats: CommitterStats = { flushes: 0, ops: 0 };

  constructor(
    private readonly pool: pg.Pool,
    private readonly maxBatch = 500,
    private readonly onError: (error: unknown) => void = () => {},
  ) {}

  /** Queue an op; resolves once it has committed, rejects with LeaseLostError if refused. */
  push(op: CheckpointOp): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const pending: Pending = { op, resolve, reject };
      if (op.op === 'step') {
        const key = `${op.run}:${op.seq}`;
        if (op.status === 'running') {
          this.markers.set(key, pending);
        } else {
          // A result supersedes its own still-queued 'running' marker.
          const marker = this.markers.get(key);
          if (marker) {
            this.markers.delete(key);
            marker.resolve();
          }
        }
      }
      this.queue.push(pending);
      this.schedule();
    });
  }

  /** Resolves when everything queued so far has been written. */
  async drain(): Promise<void> {
    while (this.queue.length || this.flushing || this.scheduled) {
      if (this.flushing) await this.flushing;
      else await new Promise((r) => setImmediate(r));
    }
  }

  private schedule(): void {
    if (this.scheduled || this.flushing) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.flushing = this.flush().finally(() => {
        this.flushing = undefined;
        if (this.queue.length) this.schedule();
      });
    });
  }

  private async flush(): Promise<void> {
    const taken = this.queue.splice(0, this.maxBatch);
    const batch: Pending[] = [];
    for (const p of taken) {
      if (p.op.op === 'step' && p.op.status === 'running') {
        const key = `${p.op.run}:${p.op.seq}`;
        if (this.markers.get(key) !== p) continue; // superseded and already resolved
        this.markers.delete(key);
      }
      batch.push(p);
    }
    if (!batch.length) return;
    this.stats.flushes++;
    this.stats.ops += batch.length;
    try {
      const refused = await checkpointApply(this.pool, batch.map((p) => p.op));
      settle(batch, refused);
    } catch (error) {
      this.onError(error);
      await this.isolate(batch, error);
    }
  }

  /**
   * A batch failed as a whole (a bad op, a lost connection): retry each run's
   * ops on their own so one run's problem fails only that run.
   */
  private async isolate(batch: Pending[], batchError: unknown): Promise<void> {
    const byRun = new Map<string, Pending[]>();
    for (const p of batch) {
      const list = byRun.get(p.op.run) ?? [];
      list.push(p);
      byRun.set(p.op.run, list);
    }
    if (byRun.size === 1) {
      for (const p of batch) p.reject(batchError);
      return;
    }
    for (const items of byRun.values()) {
      try {
        settle(items, await checkpointApply(this.pool, items.map((p) => p.op)));
      } catch (error) {
        for (const p of items) p.reject(error);
      }
    }
  }
}

function settle(batch: Pending[], refused: Set<string>): void {
  for (const p of batch) {
    if (refused.has(`${p.op.run}:${p.op.token}`)) {
      p.reject(new LeaseLostError(`run ${p.op.run}: lease lost, ${p.op.op} refused`));
    } else {
      p.resolve();
    }
  }
}
