/**
 * Keeping the leases of the runs a worker executes: heartbeats that extend
 * them (and stop a run whose lease was lost), and cancel and pause requests
 * delivered to the running code, by NOTIFY (`control`) and by the poll and
 * heartbeat fallbacks for a missed notification.
 *
 * The worker also keeps its own conservative view of each lease: it ends at
 * the time the claim (or the last successful heartbeat) was *sent* plus the
 * lease length, never later than the database's. A heartbeat that fails
 * transiently is retried with backoff; a run whose lease runs out before one
 * gets through is stopped here (LeaseLostError: released, never failed), so
 * its step bodies do not go on while another worker may claim it.
 */
import { runHeartbeatMany, runRequests } from '../db/runs.ts';
import type { ClaimedRun } from '../protocol/history.ts';
import type { Queryable } from '../db/queryable.ts';
import { LeaseLostError } from '../errors.ts';
import type { Execution } from '../replay/executor.ts';
import type { RunAbort } from '../replay/run-abort.ts';
import type { Logger } from '../protocol/logger.ts';
import { isTransient, sleep, transientDelay } from '../db/transient.ts';

/** A run a worker executes. */
export interface Active {
  run: ClaimedRun;
  /** Aborted when this worker stops executing the run (lease lost, shutdown, claimed again). */
  controller: RunAbort;
  execution: Execution | undefined;
  done: Promise<void>;
  /** performance.now() at which this worker's view of the lease ends. */
  leaseUntil: number;
  /** performance.now() when the statement that leased the run was sent. */
  sentAt: number;
  /**
   * Open transactions of ctx.transaction at repeatable read or serializable:
   * while any is, heartbeats leave the run's row alone (an update after the
   * transaction's snapshot would make its fenced record fail to serialize).
   */
  quiet?: number | undefined;
  /**
   * The execution's end (its last checkpoint) is being written: once it
   * commits the run's lease is gone, and a heartbeat that then finds no
   * lease is that commit, not a lease lost.
   */
  ending?: boolean | undefined;
}

export class LeaseKeeper {
  private checkingRequests = false;
  private beating = false;

  constructor(
    private readonly db: Queryable,
    private readonly active: ReadonlyMap<string, Active>,
    private readonly leaseMs: number,
    private readonly log: Logger,
  ) {}

  /**
   * A cancel or pause request for a run this worker may be executing
   * (`cancel:<id>`, `pause:<id>`). A cancellation's reason is not in the
   * notification (any role may LISTEN): it is read under the run's lease
   * token, then given to the code's CancelledError and the running step's
   * abort.
   */
  control(payload: string): void {
    const [verb, id] = payload.split(':');
    const entry = id ? this.active.get(id) : undefined;
    if (!entry?.execution) return;
    if (verb === 'cancel') void this.cancelWithReason(entry);
    else if (verb === 'pause') entry.execution.requestPause();
  }

  private async cancelWithReason(entry: Active): Promise<void> {
    let reason: string | undefined;
    try {
      const [held] = await runRequests(this.db, [{ id: entry.run.id, token: entry.run.lease_token }]);
      reason = held?.cancel_reason ?? undefined;
    } catch (error) {
      this.log.warn('reading the cancellation reason failed; cancelling without it', { runId: entry.run.id, error: String(error) });
    }
    entry.execution?.requestCancel(reason);
  }

  /** The poll fallback for cancel and pause requests whose NOTIFY was missed. */
  async checkRequests(): Promise<void> {
    if (!this.active.size || this.checkingRequests) return;
    this.checkingRequests = true;
    try {
      const held = [...this.active.values()].map((a) => ({ id: a.run.id, token: a.run.lease_token }));
      for (const r of await runRequests(this.db, held)) {
        const execution = this.active.get(r.id)?.execution;
        if (r.cancel_requested) execution?.requestCancel(r.cancel_reason ?? undefined);
        if (r.pause_requested) execution?.requestPause();
      }
    } catch (error) {
      this.log.warn('checking cancel and pause requests failed', { error: String(error) });
    } finally {
      this.checkingRequests = false;
    }
  }

  /** Whether this worker still holds (run, token) as far as it knows. */
  holds(run: string, token: string): boolean {
    const entry = this.active.get(run);
    return entry !== undefined && entry.run.lease_token === token && entry.leaseUntil > performance.now()
      && !entry.controller.aborted;
  }

  /** Extend every held lease; retried with backoff while the failure is transient. */
  async heartbeat(): Promise<void> {
    if (this.beating) return;
    this.beating = true;
    try {
      for (let attempt = 1; this.active.size; attempt++) {
        this.expireOverdue();
        if (!this.active.size) return;
        try {
          await this.beat();
          return;
        } catch (error) {
          this.log.warn('heartbeat failed', { error: String(error), attempt });
          if (!isTransient(error)) return;
          await sleep(transientDelay(attempt));
        }
      }
    } finally {
      this.beating = false;
    }
  }

  /**
   * Renew one run's lease now and keep heartbeats off its row until the
   * returned function is called (a transaction at repeatable read or
   * serializable: decision 0035). Rejects with LeaseLostError if the lease is no longer held.
   */
  async quiet(entry: Active): Promise<() => void> {
    const sentAt = performance.now();
    const still = await runHeartbeatMany(this.db, [{ id: entry.run.id, token: entry.run.lease_token }], this.leaseMs);
    if (!still.has(entry.run.id)) throw new LeaseLostError(`run ${entry.run.id}: lease lost`);
    entry.leaseUntil = Math.max(entry.leaseUntil, sentAt + this.leaseMs);
    entry.quiet = (entry.quiet ?? 0) + 1;
    let done = false;
    return () => {
      if (done) return;
      done = true;
      entry.quiet = (entry.quiet ?? 1) - 1;
    };
  }

  private async beat(): Promise<void> {
    const held = [...this.active.values()].filter((a) => !a.quiet).map((a) => ({ id: a.run.id, token: a.run.lease_token }));
    if (!held.length) return;
    const sentAt = performance.now();
    const still = await runHeartbeatMany(this.db, held, this.leaseMs);
    let cancels = false;
    for (const { id, token } of held) {
      const entry = this.active.get(id);
      if (entry?.run.lease_token !== token) continue;
      const state = still.get(id);
      if (state) entry.leaseUntil = Math.max(entry.leaseUntil, sentAt + this.leaseMs);
      if (!state && !entry.controller.aborted && !entry.ending) {
        this.log.warn('lease lost, stopping the run on this worker', { runId: id });
        entry.controller.abort(new LeaseLostError(`run ${id}: lease lost`));
      }
      // A second fallback for cancel and pause requests whose NOTIFY was
      // missed: a cancellation through the poll's read, which has its reason.
      if (state?.cancel_requested) cancels = true;
      if (state?.pause_requested) entry.execution?.requestPause();
    }
    if (cancels) void this.checkRequests();
  }

  /** Stop the runs whose lease ran out before a heartbeat got through. */
  private expireOverdue(): void {
    const now = performance.now();
    for (const entry of this.active.values()) {
      if (entry.leaseUntil > now || entry.controller.aborted) continue;
      this.log.warn('lease ran out before a heartbeat got through, stopping the run on this worker',
        { runId: entry.run.id, workflow: entry.run.workflow, version: entry.run.version, attempt: entry.run.attempt, execution: entry.run.execution });
      entry.controller.abort(new LeaseLostError(`run ${entry.run.id}: lease ran out while the database was unreachable`));
    }
  }
}
