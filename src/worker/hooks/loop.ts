/**
 * The hook delivery loop of a worker: every `interval` it claims due hook
 * deliveries of the workflows it serves (trellis.hook_claim, SKIP LOCKED),
 * runs each hook with a timeout, and records the outcome: delivered
 * (deleted), retried after a backoff, or parked once the hook's retry
 * policy is spent. A hook that throws anything (an Error or not) or never
 * returns is a failed attempt; the loop never lets it reach the worker.
 * Deliveries are rows written with the run's transition, so a process that
 * dies right after ending a run loses nothing: another worker claims them
 * (at once, or after the lease of one that died mid-hook expires).
 */
import { hookClaim, type HookDeliveryRow, hookDone, hookFailed } from '../../db/events.ts';
import type { Queryable } from '../../db/queryable.ts';
import { CancelledError, TimeoutError, ValidationError } from '../../errors.ts';
import { serializeError } from '../../protocol/serialize.ts';
import type { WorkflowDefinition } from '../../workflow/define.ts';
import { type Duration, toMs } from '../../protocol/duration.ts';
import { settledWithin } from '../../protocol/timer.ts';
import { declaredHooks, type HookEvent, type HookName } from '../../workflow/hooks.ts';
import type { Logger } from '../../protocol/logger.ts';
import { nextDelay, type RetryDefaults, type RetryPolicy } from '../../workflow/retry.ts';

/**
 * Worker option `hookDelivery`.
 *
 * @example
 * createWorker({ pool, workflows: [order], hookDelivery: { interval: '250ms', concurrency: 16 } });
 */
export interface HookDeliveryOptions {
  /** How often due deliveries are claimed (default 1s, at least 10ms). */
  interval?: Duration | undefined;
  /** Hooks run at once by this worker (default 8). */
  concurrency?: number | undefined;
}

const HOOK_RETRY_DEFAULTS: RetryDefaults = {
  maxAttempts: 5, backoff: 'exponential', initialDelay: 1000, factor: 2, maxDelay: 300_000, jitter: 0.2,
};
const DEFAULT_TIMEOUT_MS = 30_000;

export interface HookLoopOptions {
  db: Queryable;
  workerId: string;
  definitions: ReadonlyMap<string, WorkflowDefinition>;
  delivery: HookDeliveryOptions | false | undefined;
  log: Logger;
  /** Called after each attempt. */
  onAttempt?: ((outcome: 'delivered' | 'retry' | 'parked') => void) | undefined;
}

/** A hook loop for the definitions that declare hooks, or undefined when none does (or it is turned off). */
export function createHookLoop(o: HookLoopOptions): HookLoop | undefined {
  if (o.delivery === false) return undefined;
  const served = [...o.definitions.values()].filter((d) => declaredHooks(d.hooks).length > 0);
  if (served.length === 0) return undefined;
  const intervalMs = toMs(o.delivery?.interval ?? 1000, 'hookDelivery.interval');
  if (intervalMs < 10) throw new ValidationError('hookDelivery.interval must be at least 10ms');
  const concurrency = o.delivery?.concurrency ?? 8;
  if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 1000) {
    throw new ValidationError('hookDelivery.concurrency must be an integer from 1 to 1000');
  }
  return new HookLoop(o, served, intervalMs, concurrency);
}

export class HookLoop {
  private timer: NodeJS.Timeout | undefined;
  private claiming: Promise<void> | undefined;
  private readonly inFlight = new Set<Promise<void>>();
  private stopped = false;
  private readonly controllers = new Set<AbortController>();
  /**
   * The served versions grouped by their hooks' timeout, each claimed with a
   * lease of that timeout plus 30 s: longer than the hook may run, so one
   * still within it is never claimed twice, and no longer, so a delivery
   * whose worker died is due again that soon (not after the longest timeout
   * of every workflow the worker serves).
   */
  private readonly groups: { leaseMs: number; served: WorkflowDefinition[] }[] = [];
  private nextGroup = 0;

  constructor(private readonly o: HookLoopOptions, served: WorkflowDefinition[],
    private readonly intervalMs: number, private readonly concurrency: number) {
    const byTimeout = new Map<number, WorkflowDefinition[]>();
    for (const d of served) byTimeout.set(timeoutOf(d), [...byTimeout.get(timeoutOf(d)) ?? [], d]);
    // (hooks.timeout is at most 12 hours, HOOK_TIMEOUT_MAX_MS; a lease at most a day.)
    for (const [timeout, group] of [...byTimeout].sort((a, b) => a[0] - b[0])) {
      this.groups.push({ leaseMs: Math.min(timeout + 30_000, 86_400_000), served: group });
    }
  }

  start(): void {
    this.timer = setInterval(() => void this.tick(), this.intervalMs);
    this.timer.unref();
    void this.tick();
  }

  /** Claim and start due deliveries now (unless a claim is under way). */
  tick(): Promise<void> {
    this.claiming ??= this.claim().finally(() => {
      this.claiming = undefined;
    });
    return this.claiming;
  }

  private async claim(): Promise<void> {
    // One claim per group of versions with one hook timeout (usually one),
    // starting from the next group each time: a group with a backlog that
    // fills every slot does not keep the others waiting.
    const first = this.nextGroup++ % this.groups.length;
    for (const group of [...this.groups.slice(first), ...this.groups.slice(0, first)]) {
      const free = this.concurrency - this.inFlight.size;
      if (this.stopped || free <= 0) return;
      let rows: HookDeliveryRow[];
      try {
        rows = await hookClaim(this.o.db, this.o.workerId, group.served, free, group.leaseMs);
      } catch (error) {
        this.o.log.warn('claiming hook deliveries failed', { error: String(error) });
        return;
      }
      for (const row of rows) {
        const p = this.deliver(row).finally(() => this.inFlight.delete(p));
        this.inFlight.add(p);
      }
    }
  }

  private async deliver(row: HookDeliveryRow): Promise<void> {
    const definition = this.o.definitions.get(`${row.workflow}@${row.version}`);
    const fn = definition?.hooks?.[row.hook as HookName];
    const controller = new AbortController();
    this.controllers.add(controller);
    const timeoutMs = definition ? timeoutOf(definition) : DEFAULT_TIMEOUT_MS;
    let timer: NodeJS.Timeout | undefined;
    try {
      if (typeof fn !== 'function') throw new ValidationError(`workflow ${row.workflow}@${row.version} has no ${row.hook} hook in this worker`);
      const event: HookEvent = {
        hook: row.hook as HookName, runId: row.run_id, workflow: row.workflow, version: row.version, key: row.key,
        status: row.status, input: row.input, output: row.output ?? undefined, error: row.error ?? undefined,
        metadata: row.metadata, attempt: row.attempts, signal: controller.signal,
      };
      await Promise.race([
        // Anything the hook throws, synchronously or not, is its failure.
        new Promise((resolve) => resolve(fn(event, { db: this.o.db }))),
        new Promise((_, reject) => {
          timer = setTimeout(() => {
            const error = new TimeoutError(`${row.hook} hook of ${row.workflow} did not return within ${timeoutMs} ms`);
            controller.abort(error);
            reject(error);
          }, timeoutMs);
        }),
      ]);
      clearTimeout(timer);
      // Aborted by the worker's stop, then returned (a caught AbortError):
      // not delivered, as a timeout is not.
      if (controller.signal.aborted) throw controller.signal.reason;
      await hookDone(this.o.db, row.id, this.o.workerId, row.attempts);
      this.o.onAttempt?.('delivered');
    } catch (error) {
      clearTimeout(timer);
      const delay = nextDelay(definition?.hooks?.retry, row.attempts, error, HOOK_RETRY_DEFAULTS);
      this.o.log.warn('lifecycle hook failed', { hook: row.hook, runId: row.run_id, attempt: row.attempts, parked: delay === null, error: String(error) });
      try {
        await hookFailed(this.o.db, row.id, this.o.workerId, row.attempts, serializeError(error), delay);
        this.o.onAttempt?.(delay === null ? 'parked' : 'retry');
      } catch (recordError) {
        // The lease expires and another worker claims the delivery again.
        this.o.log.warn('recording a hook failure failed', { error: String(recordError) });
      }
    } finally {
      this.controllers.delete(controller);
    }
  }

  /**
   * Stop claiming and wait for the hooks under way, at most `waitMs`; then
   * abort the signal of each hook still running (`event.signal`) and wait
   * up to a second more: a hook that heeds it has its delivery recorded as
   * failed (due again after its backoff); one that does not keeps its lease
   * (its hook's timeout plus 30 s) until it expires, and another worker
   * delivers it again.
   */
  async stop(waitMs = 5000): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    await this.claiming;
    if (await settledWithin([...this.inFlight], waitMs)) return;
    for (const c of this.controllers) c.abort(new CancelledError('worker is shutting down'));
    // A hook that heeds its signal ends now, and its delivery is recorded as
    // failed (due again after its backoff) while the pool is still open.
    await settledWithin([...this.inFlight], 1000);
  }
}

function timeoutOf(definition: WorkflowDefinition): number {
  return definition.hooks?.timeout === undefined ? DEFAULT_TIMEOUT_MS : toMs(definition.hooks.timeout, 'hooks.timeout');
}
