/**
 * A worker: claims due runs of the workflows it serves in batches, executes
 * them with deterministic replay, checkpoints through the grouped committer,
 * keeps its leases alive with heartbeats, and wakes on NOTIFY, on a poll
 * timer, and at the next due time. Stateless: kill it at any moment and
 * another replica continues each run from its last checkpoint once the lease
 * expires.
 */
import { hostname } from 'node:os';
import pg from 'pg';
import { runClaim, type ClaimedRun, runNextDue, settingInt, workflowRegister } from '../db/runs.ts';
import { CancelledError, ERROR_CODES, isTrellisError, LeaseLostError, ValidationError } from '../errors.ts';
import { serializeError } from '../replay/serialize.ts';
import { type Execution, type Outcome, startExecution } from '../replay/executor.ts';
import type { CheckpointOp } from '../db/checkpoints.ts';
import type { WorkflowDefinition } from '../workflow/define.ts';
import { type Duration, toMs } from '../workflow/duration.ts';
import { childLogger, consoleLogger, type Logger } from '../workflow/logger.ts';
import { checkSchema } from '../schema/install.ts';
import { type Queryable, unprepared } from '../db/queryable.ts';
import { Committer } from './committer.ts';
import { outcomeOp } from './outcome.ts';
import { WorkflowRegistry } from '../db/registry.ts';
import { Listener } from './listener.ts';
import { PurgeLoop } from './maintenance/purge.ts';
import { createHookLoop, type HookLoop } from './hooks/loop.ts';
import { addLocalWorker, type Handoff, localFinished } from './local.ts';
import { resolveWorkerOptions, type WorkerOptions } from './options.ts';
import { type Active, LeaseKeeper } from './leases.ts';

export type { WorkerOptions } from './options.ts';

/** Error codes with which SQL refuses an op for good: retrying the same op cannot help. */
const REFUSED_END = new Set<string>([ERROR_CODES.payloadTooLarge, ERROR_CODES.validation]);


/**
 * Create a worker; call `start()` to begin and `stop()` to shut down gracefully.
 *
 * @example
 * const worker = createWorker({ connectionString: process.env.DATABASE_URL, workflows: [greet] });
 * await worker.start();
 * process.on('SIGTERM', () => worker.stop({ timeout: '10s' }));
 */
export function createWorker(options: WorkerOptions): Worker {
  return new Worker(options);
}

export class Worker {
  readonly id: string;
  private readonly pool: pg.Pool;
  /** The pool, as the engine's statements use it (unprepared if so configured). */
  private readonly db: Queryable;
  private readonly ownsPool: boolean;
  private readonly definitions: Map<string, WorkflowDefinition>;
  private readonly queues: string[];
  private readonly concurrency: number;
  private readonly claimBatch: number;
  private readonly pollMs: number;
  private readonly leaseMs: number;
  private readonly listenerCheckMs: number;
  private readonly log: Logger;
  private readonly committer: Committer;
  private readonly active = new Map<string, Active>();
  private listener: Listener | undefined;
  private state: 'idle' | 'running' | 'stopping' | 'stopped' = 'idle';
  private claiming = false;
  /** The last drained claim left due runs behind (see armDueTimer). */
  private dueLeft = false;
  /** The last claim loop stopped with work possibly left (no free slot, or a full batch). */
  private saturated = false;
  private claimPromise: Promise<void> = Promise.resolve();
  private wakeAgain = false;
  private pollTimer: NodeJS.Timeout | undefined;
  private dueTimer: NodeJS.Timeout | undefined;
  private heartbeatTimer: NodeJS.Timeout | undefined;
  private readonly purgeLoop: PurgeLoop | undefined;
  private readonly hookLoop: HookLoop | undefined;
  /**
   * Slots kept for runs a client in this process is starting (see local.ts):
   * each settles when its hand-off is adopted or cancelled; stop() waits for them.
   */
  private readonly handoffs = new Set<Promise<void>>();
  private removeLocal: (() => void) | undefined;
  private maxPayloadBytes = 1_048_576;
  private maxHistorySteps = 10_000;
  /** Counters for tests, metrics and benchmarks (`handedOff`: runs begun from a start in this process, not claimed). */
  readonly stats = { claimed: 0, claims: 0, handedOff: 0, completed: 0, failed: 0, cancelled: 0, release: 0, wait: 0, pause: 0, continue: 0, abandoned: 0, purged: 0,
    hooks: { delivered: 0, retry: 0, parked: 0 } };
  private readonly registry: WorkflowRegistry;
  private readonly leases: LeaseKeeper;

  constructor(private readonly options: WorkerOptions) {
    const o = resolveWorkerOptions(options);
    this.definitions = o.definitions;
    this.queues = o.queues;
    this.concurrency = o.concurrency;
    this.claimBatch = o.claimBatch;
    this.pollMs = o.pollMs;
    this.leaseMs = o.leaseMs;
    this.listenerCheckMs = o.listenerCheckMs;
    this.id = options.id ?? `${hostname()}:${process.pid}:${crypto.randomUUID().slice(0, 8)}`;
    this.log = childLogger(options.logger ?? consoleLogger('warn'), { worker: this.id });
    if (options.pool) {
      this.pool = options.pool;
      this.ownsPool = false;
    } else if (options.connectionString) {
      this.pool = new pg.Pool({ connectionString: options.connectionString, max: 10, application_name: 'trellis-worker' });
      this.pool.on('error', (error) => this.log.warn('idle pool client error', { error: String(error) }));
      this.ownsPool = true;
    } else {
      throw new ValidationError('createWorker needs a pool or a connectionString');
    }
    this.db = options.preparedStatements === false ? unprepared(this.pool) : this.pool;
    this.registry = new WorkflowRegistry(this.pool);
    if (o.purge) {
      this.purgeLoop = new PurgeLoop({ db: this.db, ...o.purge, log: this.log, onPurged: (n) => (this.stats.purged += n) });
    }
    this.hookLoop = createHookLoop({ db: this.db, workerId: this.id, definitions: this.definitions, delivery: options.hookDelivery,
      log: this.log, onAttempt: (outcome) => (this.stats.hooks[outcome] += 1) });
    this.leases = new LeaseKeeper(this.db, this.active, this.leaseMs, this.log);
    this.committer = new Committer(this.db, o.maxBatch, (error) =>
      this.log.warn('checkpoint batch failed, retrying per run', { error: String(error) }));
  }

  /** How many times the LISTEN connection has been (re)established. */
  get listenerConnects(): number {
    return this.listener?.connects ?? 0;
  }

  /** Runs currently executing on this worker. */
  get activeCount(): number {
    return this.active.size;
  }

  /** Check the schema, register the workflows, start listening and claiming. */
  async start(): Promise<void> {
    if (this.state !== 'idle') throw new ValidationError(`worker is ${this.state}`);
    await checkSchema(this.pool);
    await workflowRegister(this.pool, [...this.definitions.values()]);
    this.maxPayloadBytes = await settingInt(this.pool, 'max_payload_bytes', this.maxPayloadBytes);
    this.maxHistorySteps = await settingInt(this.pool, 'max_history_steps', this.maxHistorySteps);
    this.state = 'running';
    const listener = new Listener({
      connection: (this.pool as unknown as { options: pg.ClientConfig }).options,
      channels: ['trellis:run_ready', 'trellis:run_control'],
      onNotify: (channel, payload) => {
        if (channel === 'trellis:run_control') this.leases.control(payload);
        else if (this.queues.includes(payload)) this.wake();
      },
      onConnect: () => this.wake(),
      log: this.log,
      applicationName: 'trellis-worker-listener',
      healthCheckMs: this.listenerCheckMs,
    });
    try {
      await listener.start();
    } catch (error) {
      this.state = 'idle';
      throw error;
    }
    this.listener = listener;
    this.removeLocal = addLocalWorker(this.pool, { reserve: (w, v, q) => this.reserve(w, v, q) });
    this.pollTimer = setInterval(() => {
      this.wake();
      void this.leases.checkRequests();
    }, this.pollMs);
    this.heartbeatTimer = setInterval(() => void this.leases.heartbeat(), Math.max(250, Math.floor(this.leaseMs / 3)));
    this.purgeLoop?.start();
    this.hookLoop?.start();
    this.wake();
  }

  /** Look for work now (also called by NOTIFY, the poll timer and the due timer). */
  wake(): void {
    if (this.state !== 'running') return;
    if (this.claiming) {
      this.wakeAgain = true;
      return;
    }
    this.claimPromise = this.claimLoop();
  }

  private async claimLoop(): Promise<void> {
    this.claiming = true;
    let drained = false;
    try {
      while (this.state === 'running') {
        const free = this.concurrency - this.active.size - this.handoffs.size;
        if (free <= 0) {
          this.saturated = true;
          break;
        }
        const limit = Math.min(free, this.claimBatch);
        this.stats.claims++;
        const runs = await runClaim(this.db, {
          worker: this.id,
          queues: this.queues,
          served: [...this.definitions.values()],
          limit,
          leaseMs: this.leaseMs,
        });
        this.stats.claimed += runs.length;
        for (const run of runs) {
          if (this.state === 'running') this.begin(run);
          else this.giveBack(run);
        }
        if (runs.length < limit) {
          drained = true;
          this.saturated = false;
          break;
        }
      }
      if (drained && this.state === 'running') await this.armDueTimer();
    } catch (error) {
      this.log.error('claim failed', { error: String(error) });
    } finally {
      this.claiming = false;
      if (this.wakeAgain) {
        this.wakeAgain = false;
        this.wake();
      }
    }
  }

  /** Wake at the next due time (a scheduled run, a retry backoff, an expiring lease). */
  private async armDueTimer(): Promise<void> {
    const ms = await runNextDue(this.db, this.queues, [...this.definitions.values()]);
    if (this.dueTimer) clearTimeout(this.dueTimer);
    this.dueTimer = undefined;
    // Due but not claimed: locked by another claimer, or held back by the
    // queue's flow control (sql/230_queue_claim.sql). A slot this worker
    // frees may be what the queue's limit waits for: claim when one does.
    this.dueLeft = ms !== null && ms <= 0;
    if (ms === null || ms >= this.pollMs) return;
    // Already due but not claimed (locked by another claimer): look again soon, not in a tight loop.
    this.dueTimer = setTimeout(() => this.wake(), ms <= 0 ? 25 : ms + 5);
  }

  /**
   * Keep a slot for a run a client in this process is starting with this
   * worker's lease, so it begins without a NOTIFY and a claim. Only while
   * running with a free slot and no backlog left behind (a started run must
   * not overtake pending ones), for a served workflow, version and queue.
   */
  private reserve(workflow: string, version: string, queue: string | undefined): Handoff | undefined {
    if (this.state !== 'running' || this.saturated || this.active.size + this.handoffs.size >= this.concurrency) return undefined;
    const definition = this.definitions.get(`${workflow}@${version}`);
    const q = queue ?? definition?.queue;
    if (!definition || q === undefined || !this.queues.includes(q)) return undefined;
    let settle!: () => void;
    const settled = new Promise<void>((r) => (settle = r));
    this.handoffs.add(settled);
    // Once: the first adopt or cancel frees the slot, a second does nothing.
    const close = () => {
      if (!this.handoffs.delete(settled)) return false;
      settle();
      return true;
    };
    return {
      worker: this.id,
      leaseMs: this.leaseMs,
      queue: q,
      adopt: (run) => {
        if (!close()) return;
        this.stats.handedOff++;
        if (this.state === 'running') this.begin(run);
        else this.giveBack(run);
      },
      cancel: () => {
        // The kept slot may be what stopped a claim loop: look again.
        if (close() && this.saturated) this.wake();
      },
    };
  }

  /** Release a run leased while stopping, so another replica takes it at once. */
  private giveBack(run: ClaimedRun): void {
    void this.committer.push({ op: 'release', run: run.id, token: run.lease_token, execution: run.execution, delay_ms: 0, failure: false }).catch(() => undefined);
  }

  private begin(run: ClaimedRun): void {
    const controller = new AbortController();
    const entry: Active = { run, controller, execution: undefined, done: Promise.resolve() };
    // Claiming a run we still execute means our old lease was taken away
    // (released or expired) before we noticed: stop the stale execution.
    this.active.get(run.id)?.controller.abort(new LeaseLostError(`run ${run.id}: lease lost (run claimed again)`));
    this.active.set(run.id, entry);
    entry.done = this.execute(entry)
      .catch((error) => this.log.error('run execution crashed', { runId: run.id, error: String(error) }))
      .finally(() => {
        if (this.active.get(run.id) === entry) this.active.delete(run.id);
        // A freed slot matters only if work was left behind; otherwise NOTIFY,
        // the poll and the due timer bring the next run (no empty claim per run).
        if (this.saturated || this.dueLeft) this.wake();
      });
  }

  private async execute(entry: Active): Promise<void> {
    const { run, controller } = entry;
    const definition = this.definitions.get(`${run.workflow}@${run.version}`);
    const fence = { run: run.id, token: run.lease_token, execution: run.execution };
    const push = (op: CheckpointOp) => this.committer.push(op);
    if (!definition) {
      // Claimed only for served pairs, so this means a bug; give the run back.
      await push({ ...fence, op: 'release', delay_ms: 0, failure: false });
      return;
    }
    const execution = startExecution({
      runId: run.id,
      definition,
      input: run.input,
      attempt: run.attempt,
      failures: run.failures,
      metadata: run.metadata,
      history: run.history,
      signals: run.signals,
      children: run.children,
      now: run.now,
      execution: run.execution,
      cancelRequested: run.cancel_requested,
      pauseRequested: run.pause_requested,
      signal: controller.signal,
      maxPayloadBytes: this.maxPayloadBytes,
      maxHistorySteps: this.maxHistorySteps,
      log: this.log,
      register: (def) => this.registry.register(def),
      sink: {
        // A checkpoint becomes the op of the same kind (`type` is `op`), fenced.
        // Copied field by field: rest/spread of each checkpoint cost ~8 µs.
        record: (cp) => {
          const op: Record<string, unknown> = { op: cp.type, run: fence.run, token: fence.token, execution: fence.execution };
          for (const key in cp) if (key !== 'type') op[key] = (cp as unknown as Record<string, unknown>)[key];
          return push(op as unknown as CheckpointOp);
        },
      },
    });
    entry.execution = execution;
    try {
      await this.finish(fence, execution, await execution.done);
    } finally {
      this.committer.forget(run.id, run.lease_token);
    }
  }

  /**
   * Write the op that ends an execution. It is queued behind the execution's
   * last checkpoints (often into the same transaction); if one of those
   * failed, the committer refuses it and the outcome that failure forced
   * (a failed run, or an abandoned execution) is written instead.
   */
  private async finish(fence: { run: string; token: string; execution: number }, execution: Execution, outcome: Outcome, fallback = true): Promise<void> {
    const shuttingDown = outcome.kind === 'abandoned' && outcome.reason instanceof CancelledError && this.state === 'stopping';
    const op = outcomeOp(fence, outcome, shuttingDown);
    try {
      if (op) await this.committer.push(op);
      this.stats[outcome.kind]++;
      if (outcome.kind === 'completed' || outcome.kind === 'failed' || outcome.kind === 'cancelled') localFinished(this.pool, fence.run);
      return;
    } catch (error) {
      const forced = await execution.settle();
      if (fallback && forced && forced.kind !== 'abandoned' && !(error instanceof LeaseLostError)) {
        this.committer.forget(fence.run, fence.token);
        return await this.finish(fence, execution, forced, false);
      }
      if (fallback && !forced && op && op.op !== 'fail' && isTrellisError(error) && REFUSED_END.has(error.code)) {
        // The engine refused this end itself (an output over the payload
        // limit, say): fail the run with that error rather than re-running it.
        this.log.warn('the end of the run was refused; failing it', { runId: fence.run, error: String(error) });
        this.committer.forget(fence.run, fence.token);
        return await this.finish(fence, execution, { kind: 'failed', error: serializeError(error) }, false);
      }
      if (!(error instanceof LeaseLostError) && !forced) throw error;
      this.stats.abandoned++;
      this.log.warn('the run could not be finished on this worker', { runId: fence.run, error: String(error) });
    }
  }

  /**
   * Stop claiming, let running runs finish until `timeout` (default 10s), then
   * abort the rest (their step AbortSignals fire) and release their leases so
   * another replica continues them at once.
   */
  async stop(options: { timeout?: Duration } = {}): Promise<void> {
    if (this.state === 'stopped' || this.state === 'stopping') return;
    const wasRunning = this.state === 'running';
    this.state = 'stopping';
    this.removeLocal?.();
    clearInterval(this.pollTimer);
    if (this.dueTimer) clearTimeout(this.dueTimer);
    await this.purgeLoop?.stop();
    await this.hookLoop?.stop();
    if (wasRunning) {
      await this.claimPromise;
      const deadline = toMs(options.timeout ?? 10_000, 'timeout');
      // Starts handed to this worker still settle into `active` (or a release).
      const all = () => Promise.allSettled([...this.handoffs, ...[...this.active.values()].map((a) => a.done)]);
      let timer: NodeJS.Timeout | undefined;
      const timedOut = await Promise.race([
        all().then(() => false),
        new Promise<boolean>((r) => {
          timer = setTimeout(() => r(true), deadline);
        }),
      ]);
      clearTimeout(timer);
      if (timedOut) {
        for (const a of this.active.values()) a.controller.abort(new CancelledError('worker is shutting down'));
        // Not the hand-offs again: a start stuck on a full pool must not hold up the stop
        // (if it commits later, its lease expires and another worker claims the run).
        await Promise.allSettled([...this.active.values()].map((a) => a.done));
      }
      await this.committer.drain();
      await this.listener?.close();
    }
    clearInterval(this.heartbeatTimer);
    this.state = 'stopped';
    if (this.ownsPool) await this.pool.end();
  }
}
