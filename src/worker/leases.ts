/**
 * Keeping the leases of the runs a worker executes: heartbeats that extend
 * them (and stop a run whose lease was lost), and cancel and pause requests
 * delivered to the running code, by NOTIFY (`control`) and by the poll and
 * heartbeat fallbacks for a missed notification.
 */
import { type ClaimedRun, runHeartbeatMany, runRequests } from '../db/runs.ts';
import type { Queryable } from '../db/queryable.ts';
import { LeaseLostError } from '../errors.ts';
import type { Execution } from '../replay/executor.ts';
import type { Logger } from '../workflow/logger.ts';

/** A run a worker executes. */
export interface Active {
  run: ClaimedRun;
  controller: AbortController;
  execution: Execution | undefined;
  done: Promise<void>;
}

export class LeaseKeeper {
  private checkingRequests = false;

  constructor(
    private readonly db: Queryable,
    private readonly active: ReadonlyMap<string, Active>,
    private readonly leaseMs: number,
    private readonly log: Logger,
  ) {}

  /** A cancel or pause request for a run this worker may be executing. */
  control(payload: string): void {
    const [verb, id] = payload.split(':');
    const execution = id ? this.active.get(id)?.execution : undefined;
    if (verb === 'cancel') execution?.requestCancel();
    else if (verb === 'pause') execution?.requestPause();
  }

  /** The poll fallback for cancel and pause requests whose NOTIFY was missed. */
  async checkRequests(): Promise<void> {
    if (!this.active.size || this.checkingRequests) return;
    this.checkingRequests = true;
    try {
      const held = [...this.active.values()].map((a) => ({ id: a.run.id, token: a.run.lease_token }));
      for (const r of await runRequests(this.db, held)) {
        const execution = this.active.get(r.id)?.execution;
        if (r.cancel_requested) execution?.requestCancel();
        if (r.pause_requested) execution?.requestPause();
      }
    } catch (error) {
      this.log.warn('checking cancel and pause requests failed', { error: String(error) });
    } finally {
      this.checkingRequests = false;
    }
  }

  async heartbeat(): Promise<void> {
    if (!this.active.size) return;
    const held = [...this.active.values()].map((a) => ({ id: a.run.id, token: a.run.lease_token }));
    try {
      const still = await runHeartbeatMany(this.db, held, this.leaseMs);
      for (const { id } of held) {
        const entry = this.active.get(id);
        const state = still.get(id);
        if (entry && !state && !entry.controller.signal.aborted) {
          this.log.warn('lease lost, stopping the run on this worker', { runId: id });
          entry.controller.abort(new LeaseLostError(`run ${id}: lease lost`));
        }
        // A second fallback for cancel and pause requests whose NOTIFY was missed.
        if (state?.cancel_requested) entry?.execution?.requestCancel();
        if (state?.pause_requested) entry?.execution?.requestPause();
      }
    } catch (error) {
      this.log.warn('heartbeat failed', { error: String(error) });
    }
  }
}
