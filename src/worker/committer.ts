/**
 * Grouped commits: checkpoint ops from every run this worker executes are
 * queued and written together by one trellis.checkpoint_apply call, with at
 * most one call in flight, so under load one transaction carries the steps
 * of many runs. Each op's promise settles only after its transaction
 * committed (or was refused), so a step is never acknowledged early.
 *
 * A flush starts on the next macrotask after the first op is queued, which
 * lets a workflow that returns right after its last step queue its
 * completion into the same transaction as that step (the workflow continues
 * on a step's result before its checkpoint commits; see
 * docs/decisions/0008-speculative-continuation.md).
 *
 * Ops of one execution (run + lease token) are ordered: once one of them is
 * refused or fails, every later op of that execution is rejected with the
 * same error without being written, until the worker calls `forget`. So a
 * completion can never commit without the step checkpoints queued before it.
 *
 * A transient failure (a lost connection, a restart, a deadlock: see
 * transient.ts) retries the same batch with backoff for as long as the
 * worker still holds each op's lease (`holds`); an op whose lease ran out
 * meanwhile is rejected with LeaseLostError, so the run is given up on this
 * worker, never failed. A retry is safe even when the failed attempt did
 * commit (the connection died during COMMIT): step results are never
 * overwritten once final, a child start whose call is recorded is skipped,
 * and an end op finds its lease token gone and is refused (see
 * test/sql/checkpoint-retry.test.ts).
 */
import type { Queryable } from '../db/queryable.ts';
import { checkpointApply } from '../db/checkpoints.ts';
import type { CheckpointOp } from '../protocol/checkpoint.ts';
import { LeaseLostError } from '../errors.ts';
import { isTransient, sleep, transientDelay } from '../db/transient.ts';

interface Pending {
  op: CheckpointOp;
  resolve: () => void;
  reject: (error: unknown) => void;
  /**
   * The callers of the queued 'running' markers this op replaced (a step's
   * saved progress, an attempt's marker): settled with it, in one flat list
   * however many saves replaced each other (a chain of closures would
   * recurse once per save when settled).
   */
  replaced?: Settlers[] | undefined;
  /** This op's own caller, once `resolve` / `reject` also settle `replaced`. */
  own?: Settlers | undefined;
}

interface Settlers {
  resolve: () => void;
  reject: (error: unknown) => void;
}

export interface CommitterStats {
  flushes: number;
  ops: number;
  /** Batches written again after a transient failure. */
  retries: number;
}

export interface CommitterOptions {
  /** Most ops per transaction (default 500). */
  maxBatch?: number | undefined;
  /** Told of every failed write; `transient` when it will be retried. */
  onError?: ((error: unknown, transient: boolean) => void) | undefined;
  /** Whether this worker still holds the lease of (run, token); default: always. */
  holds?: ((run: string, token: string) => boolean) | undefined;
}

export class Committer {
  private queue: Pending[] = [];
  /** Queued 'running' markers by run:token:seq, so a newer marker or a result replaces them. */
  private readonly markers = new Map<string, Pending>();
  /** Executions (`run:token`) with a refused or failed op, and the error. */
  private readonly poisoned = new Map<string, unknown>();
  private flushing: Promise<void> | undefined;
  private scheduled = false;
  readonly stats: CommitterStats = { flushes: 0, ops: 0, retries: 0 };
  private readonly maxBatch: number;
  private readonly onError: (error: unknown, transient: boolean) => void;
  private readonly holds: (run: string, token: string) => boolean;

  constructor(private readonly pool: Queryable, options: CommitterOptions = {}) {
    this.maxBatch = options.maxBatch ?? 500;
    this.onError = options.onError ?? (() => {});
    this.holds = options.holds ?? (() => true);
  }

  /** Queue an op; resolves once it has committed, rejects with LeaseLostError if refused. */
  push(op: CheckpointOp): Promise<void> {
    const failed = this.poisoned.get(`${op.run}:${op.token}`);
    if (failed !== undefined) return Promise.reject(failed);
    return new Promise<void>((resolve, reject) => {
      const pending: Pending = { op, resolve, reject };
      if (op.op === 'step') {
        // One execution's call: (run, lease token, call number).
        const key = `${op.run}:${op.token}:${op.seq}`;
        // A newer op of the call replaces its still-queued 'running' marker
        // (an attempt's marker, a step's saved progress), whose callers then
        // settle with it: many saves between two flushes are one write, of
        // the newest, and a save replaced by the step's result resolves
        // when that result has committed.
        const older = this.markers.get(key);
        if (older) {
          this.markers.delete(key);
          const replaced = older.replaced ?? [];
          replaced.push(older.own ?? { resolve: older.resolve, reject: older.reject });
          pending.own = { resolve, reject };
          pending.replaced = replaced;
          pending.resolve = () => {
            resolve();
            for (const r of replaced) r.resolve();
          };
          pending.reject = (error) => {
            reject(error);
            for (const r of replaced) r.reject(error);
          };
        }
        if (op.status === 'running') this.markers.set(key, pending);
      }
      this.queue.push(pending);
      this.schedule();
    });
  }

  /** The worker is done with this execution: accept its ops again. */
  forget(run: string, token: string): void {
    this.poisoned.delete(`${run}:${token}`);
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
        const key = `${p.op.run}:${p.op.token}:${p.op.seq}`;
        if (this.markers.get(key) !== p) continue; // replaced: it settles with the op that replaced it
        this.markers.delete(key);
      }
      const failed = this.poisoned.get(`${p.op.run}:${p.op.token}`);
      if (failed !== undefined) p.reject(failed);
      else batch.push(p);
    }
    if (!batch.length) return;
    this.stats.flushes++;
    this.stats.ops += batch.length;
    await this.write(batch, true);
  }

  /**
   * Apply a batch, retrying transient failures while the leases are held.
   * Any other failure (a bad op) splits a batch of several runs into one
   * write per run, so one run's problem rejects only that run's ops.
   */
  private async write(batch: Pending[], split: boolean): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        this.settle(batch, await checkpointApply(this.pool, batch.map((p) => p.op)));
        return;
      } catch (error) {
        const transient = isTransient(error);
        this.onError(error, transient);
        if (!transient) {
          if (split) await this.isolate(batch, error);
          else for (const p of batch) this.reject(p, error);
          return;
        }
        await sleep(transientDelay(attempt));
        batch = batch.filter((p) => {
          if (this.holds(p.op.run, p.op.token)) return true;
          this.reject(p, new LeaseLostError(`run ${p.op.run}: lease ran out while the database was unreachable`, { cause: error }));
          return false;
        });
        if (!batch.length) return;
        this.stats.retries++;
      }
    }
  }

  private async isolate(batch: Pending[], batchError: unknown): Promise<void> {
    const byRun = new Map<string, Pending[]>();
    for (const p of batch) {
      const list = byRun.get(p.op.run) ?? [];
      list.push(p);
      byRun.set(p.op.run, list);
    }
    if (byRun.size === 1) {
      for (const p of batch) this.reject(p, batchError);
      return;
    }
    for (const items of byRun.values()) await this.write(items, false);
  }

  private settle(batch: Pending[], refused: Set<string>): void {
    for (const p of batch) {
      if (refused.has(`${p.op.run}:${p.op.token}`)) {
        this.reject(p, new LeaseLostError(`run ${p.op.run}: lease lost, ${p.op.op} refused`));
      } else {
        p.resolve();
      }
    }
  }

  private reject(p: Pending, error: unknown): void {
    const key = `${p.op.run}:${p.op.token}`;
    if (!this.poisoned.has(key)) this.poisoned.set(key, error);
    p.reject(error);
  }
}
