/**
 * The retention loop of a worker: every `interval` it asks Postgres to purge
 * the finished runs that are past the retention set with
 * `trellis.retention_set` (`client.setRetention`), in batches, until less
 * than a batch is left. Every worker runs it; an advisory try-lock in
 * `trellis.run_purge_due` lets one of them work at a time, so replicas add
 * no contention, and when no retention is set each tick is one cheap query.
 */
import type { Queryable } from '../../db/queryable.ts';
import { runPurgeDue } from '../../db/retention.ts';
import type { Logger } from '../../workflow/logger.ts';

export interface PurgeLoopOptions {
  db: Queryable;
  intervalMs: number;
  batch: number;
  log: Logger;
  /** Called with the number of runs each batch deleted. */
  onPurged: (count: number) => void;
}

export class PurgeLoop {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private stopped = false;

  constructor(private readonly o: PurgeLoopOptions) {}

  start(): void {
    this.timer = setInterval(() => this.tick(), this.o.intervalMs);
    this.timer.unref();
  }

  /** Purge now (unless a purge is already under way); resolves when it is done. */
  tick(): Promise<void> {
    this.running ??= this.drain().finally(() => {
      this.running = undefined;
    });
    return this.running;
  }

  private async drain(): Promise<void> {
    try {
      while (!this.stopped) {
        const n = await runPurgeDue(this.o.db, this.o.batch);
        if (n === null) return;
        if (n > 0) this.o.onPurged(n);
        if (n < this.o.batch) return;
      }
    } catch (error) {
      this.o.log.warn('purging finished runs failed', { error: String(error) });
    }
  }

  /** Stop the timer and wait for a batch under way. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    await this.running;
  }
}
