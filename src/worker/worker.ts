/**
 * A worker: claims due runs of the workflows it serves in batches, executes
 * them with deterministic replay, checkpoints through the grouped committer,
 * keeps its leases alive with heartbeats, and wakes on NOTIFY, on a poll
 * timer, and at the next due time. Stateless: kill it at any moment and
 * another replica continues each run from its last checkpoint once the lease
 * expires.
 */
import { hostname } from 'node:os';
import type { Pool } from '../db/pg.ts';
import type { ClaimedRun } from '../protocol/history.ts';
import { runClaim, runIdleCheck, runReleaseOwned, settingInt, workflowRegister } from '../db/runs.ts';
import { CancelledError, ConfigurationError, ERROR_CODES, isTrellisError, LeaseLostError, PayloadTooLargeError, ValidationError } from '../errors.ts';
import { isDatabaseFault } from '../protocol/faults.ts';
import { serializeError } from '../protocol/serialize.ts';
import { type Execution, startExecution } from '../replay/executor.ts';
import { type Outcome, outcomeName } from '../replay/replay.ts';
import { RunAbort } from '../replay/run-abort.ts';
import type { CheckpointOp, Fence } from '../protocol/checkpoint.ts';
import type { WorkflowDefinition } from '../workflow/define.ts';
import { type Duration, toMs } from '../protocol/duration.ts';
import { settledWithin } from '../protocol/timer.ts';
import { childLogger, consoleLogger, type Logger } from '../protocol/logger.ts';
import { checkSchema } from '../db/schema-check.ts';
import { type Queryable, queryRows } from '../db/queryable.ts';
import { checkPreparedMode, PreparedStatements } from '../db/prepared.ts';
import { listenConnection, ownPool, type ResolvedTimeouts, within } from '../db/connection.ts';
import { toTrellisError } from '../db/errors.ts';
import { Committer } from './committer.ts';
import { outcomeOp } from './outcome.ts';
import { WorkflowRegistry } from '../db/registry.ts';
import { registrationOf } from '../workflow/registration.ts';
import { Listener } from '../db/listener.ts';
import { createHookLoop, type HookLoop } from './hooks/loop.ts';
import { engineDuties, resolveTicker } from './roles/duties.ts';
import { type RoleFunction, type RoleOptions, RoleRunner, roleTtlMs } from './roles/role-runner.ts';
import type { Handoff, LocalHandoff } from '../protocol/local-handoff.ts';
import { resolveWorkerOptions, type WorkerOptions } from './options.ts';
import { refuseUnknownKeys } from '../protocol/option-bounds.ts';
import { type Active, LeaseKeeper } from './leases.ts';
import { type ObservedExecution, WorkerObserver } from '../observability/worker-observer.ts';
import type { TrellisMetrics } from '../observability/metrics.ts';
import { isTransient, sleep, transientDelay } from '../db/transient.ts';
import { RunLog } from './run-log.ts';
import { runTransaction, TransactionSlots } from './transactions.ts';

export type { WorkerOptions } from './options.ts';

/** Error codes with which SQL refuses an op for good: retrying the same op cannot help. */
const REFUSED_END = new Set<string>([ERROR_CODES.payloadTooLarge, ERROR_CODES.validation]);

/**
 * A run whose writes fail with a database error that is not transient is
 * given back for a later attempt (a permission or a function missing
 * mid-deploy heals), after 1 s, 2 s, 4 s … (at most 60 s); at the
 * `FAULT_PARK_AFTER`th give-back in a row on this worker it is parked
 * (paused, with the error) for an operator instead: an error that does not
 * heal (a value PostgreSQL cannot index) would otherwise claim it, and run
 * its steps again, for ever.
 */
const FAULT_PARK_AFTER = 8;
/** Runs tracked for that count at most (the oldest forgotten first). */
const FAULT_STREAKS_MAX = 10_000;
/**
 * A give-back longer ago than this starts the count afresh: the streak's
 * delays add up to about 2 minutes, and a run that ended well on another
 * worker meanwhile must not be parked by this one's old count.
 */
const FAULT_STREAK_MS = 10 * 60_000;


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

/**
 * The worker `createWorker` returns: it claims runs of its workflows,
 * executes them and checkpoints every step. Any number of workers (in one
 * process or many) can serve the same queues.
 *
 * @example
 * const worker: Worker = createWorker({ pool, workflows: [onboard] });
 * await worker.start();
 * console.log(worker.id);
 */
export class Worker {
  /** This worker's id in `lease_owner` (the `id` option, else host:pid:random). */
  readonly id: string;
  private readonly pool: Pool;
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
  private readonly timeouts: ResolvedTimeouts;
  private readonly log: Logger;
  private readonly committer: Committer;
  private readonly active = new Map<string, Active>();
  /** Give-backs in a row of a run after database faults (FAULT_PARK_AFTER), and when the last was; deleted when the run's execution ends well here. */
  private readonly faultStreaks = new Map<string, { n: number; at: number }>();
  private listener: Listener | undefined;
  private state: 'idle' | 'running' | 'stopping' | 'stopped' = 'idle';
  private claiming = false;
  /** The last drained claim left due runs behind (see armDueTimer). */
  private dueLeft = false;
  /**
   * A claim is owed once a slot frees: the last claim loop stopped for lack
   * of a free slot, so it neither claimed nor closed the wake-up gate.
   */
  private lookOwed = false;
  /**
   * Runs may be waiting that this worker has not claimed: before its first
   * claim, after a claim that came back full, or when a sign of new work
   * (NOTIFY, poll, due timer, wake()) found every slot busy. Hand-offs wait
   * until a claim comes back short: a started run must not overtake them.
   */
  private backlog = true;
  /** A sign of new work came after the last claim was sent (see backlog). */
  private signalled = true;
  /** Resolves start()'s wait for the first claim. */
  private firstClaimed: (() => void) | undefined;
  private claimPromise: Promise<void> = Promise.resolve();
  private wakeAgain = false;
  /**
   * The running claim loop has sent its claim: a wake now may be about a run
   * its snapshot missed, so the loop runs again. A wake before it sends the
   * claim is seen by that claim (its snapshot is taken later) and needs no
   * second round.
   */
  private claimSent = false;
  /** Claims in a row that failed transiently (their retry backs off). */
  private claimFailures = 0;
  /**
   * This worker may hold leases it does not know of: at start (a previous
   * process with the same id), and after a claim failed transiently (its
   * commit may have gone through). The next claim round gives them back first.
   */
  private leasesUnknown = true;
  /**
   * After a claim failed transiently, its statement may still run later (a
   * pooler that was paused queues it, and runs it once resumed, maybe after
   * this worker's next statements): until this time (performance.now()),
   * each claim round gives back unknown leases again, so such a late claim's
   * runs wait for a poll, not for their lease to expire. A failure sets it
   * to Infinity; the next give-back makes it one lease from then.
   */
  private leasesDoubtedUntil = 0;
  /** A give-back of unknown leases is in flight: no hand-off is reserved (`reserve`). */
  private releasingOwned = false;
  private pollTimer: NodeJS.Timeout | undefined;
  private dueTimer: NodeJS.Timeout | undefined;
  /** Backoff of looks at a wake-up gate held by a coalescing start (0: not held at the last look). */
  private gateRetryMs = 0;
  /**
   * Claims in a row that found nothing while runs stayed due (held back by
   * a queue's flow control, or locked by another claimer): each waits twice
   * as long as the one before (25 ms up to a second) before looking again.
   */
  private emptyDueClaims = 0;
  private heartbeatTimer: NodeJS.Timeout | undefined;
  private readonly hookLoop: HookLoop | undefined;
  /** Role leases: the engine's duties (purge, schedule ticker) and `role()`s (src/worker/roles). */
  private readonly roleRunner: RoleRunner;
  /**
   * Slots kept for runs a client in this process is starting (see local.ts):
   * each settles when its hand-off is adopted or cancelled; stop() waits for them.
   */
  private readonly handoffs = new Set<Promise<void>>();
  private removeLocal: (() => void) | undefined;
  /** The client this worker joined (createWorker({ client })), if any. */
  private readonly link: LocalHandoff | undefined;
  private maxPayloadBytes = 1_048_576;
  private maxHistorySteps = 10_000;
  /**
   * Counters for tests, metrics and benchmarks (`handedOff`: runs begun from
   * a start in this process, not claimed; `gateBusy`: looks before going
   * idle that found a coalescing start holding the wake-up gate, each
   * followed by another look; `givenBack`: claimed runs released at once
   * because hand-offs had taken their slots while the claim was in flight;
   * `overdue`: deadlines this worker looked at once they passed, decision
   * 0031: a run cancelled for its deadline, or one that had ended first;
   * `resumed`: parked runs this worker's resumes duty resumed, decision 0038).
   */
  readonly stats = { claimed: 0, claims: 0, handedOff: 0, gateBusy: 0, givenBack: 0, completed: 0, failed: 0, cancelled: 0, release: 0, wait: 0, pause: 0, continue: 0, abandoned: 0, purged: 0,
    fired: 0, overdue: 0, resumed: 0, hooks: { delivered: 0, retry: 0, parked: 0 } };
  private readonly registry: WorkflowRegistry<WorkflowDefinition>;
  private readonly leases: LeaseKeeper;
  /** ctx.transaction bodies open at once: the pool's size less two connections left to the engine. */
  private readonly transactionSlots: TransactionSlots;
  /** Metrics and tracing (src/observability); undefined when both are off. */
  private observer: WorkerObserver | undefined;
  private readonly runLog: RunLog;

  constructor(private readonly options: WorkerOptions) {
    const o = resolveWorkerOptions(options);
    this.definitions = o.definitions;
    this.queues = o.queues;
    this.concurrency = o.concurrency;
    this.claimBatch = o.claimBatch;
    this.pollMs = o.pollMs;
    this.leaseMs = o.leaseMs;
    this.listenerCheckMs = o.listenerCheckMs;
    this.timeouts = o.timeouts;
    this.link = o.link;
    this.id = options.id ?? `${hostname()}:${process.pid}:${crypto.randomUUID().slice(0, 8)}`;
    this.log = childLogger(options.logger ?? consoleLogger('warn'), { worker: this.id });
    if (options.pool) {
      this.pool = options.pool;
      this.ownsPool = false;
    } else if (options.connectionString) {
      this.pool = ownPool(options.connectionString, 'trellis-worker', o.timeouts);
      this.pool.on('error', (error) => this.log.warn('idle pool client error', { error: String(error) }));
      this.ownsPool = true;
    } else {
      throw new ValidationError('createWorker needs a pool or a connectionString');
    }
    this.db = new PreparedStatements(this.pool, checkPreparedMode(options.preparedStatements), this.log).pool;
    this.registry = new WorkflowRegistry(this.pool, registrationOf);
    if (options.roles !== undefined) refuseUnknownKeys(options.roles, ['ttl'], 'roles');
    this.roleRunner = new RoleRunner({ db: this.db, holder: this.id, log: this.log, ttlMs: roleTtlMs(options.roles?.ttl, 'roles.ttl') });
    for (const duty of engineDuties({ db: this.db, purge: o.purge, schedules: resolveTicker(options.schedules), deadlines: o.deadlines,
      resumes: o.resumes, onResumed: (n) => (this.stats.resumed += n),
      onPurged: (n) => (this.stats.purged += n), onFired: (n) => (this.stats.fired += n), onOverdue: (n) => (this.stats.overdue += n) })) {
      this.roleRunner.add(duty.name, duty.run, { everyMs: duty.everyMs }, true);
    }
    this.hookLoop = createHookLoop({ db: this.db, workerId: this.id, definitions: this.definitions, delivery: options.hookDelivery,
      log: this.log, onAttempt: (outcome) => (this.stats.hooks[outcome] += 1) });
    this.runLog = new RunLog(this.log);
    this.leases = new LeaseKeeper(this.db, this.active, this.leaseMs, this.log);
    this.transactionSlots = new TransactionSlots(((this.pool as { options?: { max?: number } }).options?.max ?? 10) - 2);
    this.committer = new Committer(this.db, {
      maxBatch: o.maxBatch,
      holds: (run, token) => this.leases.holds(run, token),
      onError: (error, transient) => this.log.warn(transient ? 'checkpoint failed, retrying while the leases last' : 'checkpoint batch failed, retrying per run', { error: String(error) }),
    });
  }

  /**
   * Run `fn` on exactly one replica at a time under role lease `name`: every
   * worker that adds the role competes for it, the holder runs `fn` with the
   * lease's fencing token and an AbortSignal that fires when the lease is
   * lost (or the worker stops). Fence writes with `trellis.role_check(name,
   * token)`. After the holder dies, another replica takes over within the
   * TTL plus one renew interval (a third of the TTL). See docs/operations.md.
   *
   * @example
   * worker.role('nightly-export', async ({ token, signal }) => {
   *   await exportOrders({ signal, fence: token });
   * }, { every: '1 hour' });
   */
  role(name: string, fn: RoleFunction, options: RoleOptions = {}): void {
    refuseUnknownKeys(options, ['ttl', 'every'], `role ${String(name).slice(0, 60)} options`);
    this.roleRunner.add(name, fn, {
      ...(options.ttl === undefined ? {} : { ttlMs: roleTtlMs(options.ttl, 'ttl') }),
      ...(options.every === undefined ? {} : { everyMs: Math.max(10, toMs(options.every, 'every')) }),
    });
  }

  /** Per role this worker takes part in: leases taken and lost, duty runs and failures. */
  get roleStats(): ReturnType<RoleRunner['stats']> {
    return this.roleRunner.stats();
  }

  /** How many times the LISTEN connection has been (re)established. */
  get listenerConnects(): number {
    return this.listener?.connects ?? 0;
  }

  /** This worker's Prometheus metrics (with `metrics` set, once started). */
  get metrics(): TrellisMetrics | undefined {
    return this.observer?.metrics;
  }

  /** The URL of this worker's metrics endpoint (with `metrics: { port }`, once started). */
  get metricsUrl(): string | undefined {
    return this.observer?.metricsUrl;
  }

  /** Runs currently executing on this worker. */
  get activeCount(): number {
    return this.active.size;
  }

  /**
   * Check the schema, register the workflows, start listening and claiming.
   * Returns once the first claim has come back (or the start-up bound has
   * passed), so runs that were waiting are taken before a start in this
   * process can be handed off past them. Throws `SchemaVersionError` if the
   * database schema is older than this code (run `migrate` first).
   *
   * @example
   * await migrate(pool);
   * await worker.start();
   */
  async start(): Promise<void> {
    if (this.state !== 'idle') throw new ValidationError(`worker is ${this.state}`);
    // Bounded even on a pool without timeouts of its own (a server that never answers).
    const startMs = this.timeouts.connectMs + (this.timeouts.queryMs ?? 30_000);
    await within((async () => {
      await checkSchema(this.pool);
      // A role that cannot checkpoint would claim nothing and log 42501 every
      // poll for ever (a login given trellis_client, not trellis_worker).
      const { rows } = await this.pool.query<{ ok: boolean }>(
        `select pg_catalog.has_function_privilege('trellis.checkpoint_apply(jsonb)', 'execute') and pg_catalog.has_function_privilege('trellis.run_release_owned(text, uuid[])', 'execute') as ok`);
      if (!rows[0]?.ok) {
        throw new ConfigurationError('the worker\'s database role may not execute the worker functions (trellis.checkpoint_apply, trellis.run_release_owned): grant it trellis_worker (docs/security.md)');
      }
      await workflowRegister(this.pool, [...this.definitions.values()].map(registrationOf));
      this.maxPayloadBytes = await settingInt(this.pool, 'max_payload_bytes', this.maxPayloadBytes);
      this.maxHistorySteps = await settingInt(this.pool, 'max_history_steps', this.maxHistorySteps);
      // A TrellisError whatever failed (a connection lost during the privilege check was pg's raw error):
      // a boot that retries on a retryable DatabaseError can.
    })().catch((error: unknown) => {
      throw toTrellisError(error);
    }), startMs, 'worker.start');
    this.observer = await WorkerObserver.create({ metrics: this.options.metrics, tracing: this.options.tracing, pool: this.pool, worker: this.id })
      .catch((error: unknown) => {
        throw toTrellisError(error);
      });
    this.state = 'running';
    const listener = new Listener({
      connection: listenConnection(this.pool, this.options.listenUrl, this.timeouts),
      channels: ['trellis:run_ready', 'trellis:run_control'],
      onNotify: (channel, payload) => {
        if (channel === 'trellis:run_control') this.leases.control(payload);
        else if (this.queues.includes(payload)) this.wake();
      },
      onConnect: () => {
        const reconnect = this.listenerConnects > 1;
        this.observer?.listenerConnected(reconnect);
        // A reconnect has LISTENed again before it reports (pg-listen): catch
        // up on what was missed meanwhile. The first connect reports before
        // its LISTEN; the wake at the end of start() comes after it.
        if (reconnect) this.wake();
      },
      log: this.log,
      applicationName: 'trellis-worker-listener',
      echoVia: (channel, payload) => queryRows(this.db, 'select pg_catalog.pg_notify($1, $2)', [channel, payload]),
      healthCheckMs: this.listenerCheckMs,
    });
    try {
      await within(listener.start(), startMs, 'worker.start (LISTEN)', () => void listener.close());
    } catch (error) {
      void listener.close();
      this.state = 'idle';
      await this.observer?.close();
      throw error;
    }
    this.listener = listener;
    this.removeLocal = this.link?.join({ reserve: (w, v, q) => this.reserve(w, v, q) });
    this.pollTimer = setInterval(() => {
      this.wake();
      void this.leases.checkRequests();
    }, this.pollMs);
    this.heartbeatTimer = setInterval(() => void this.leases.heartbeat(), Math.max(250, Math.floor(this.leaseMs / 3)));
    this.roleRunner.start();
    this.hookLoop?.start();
    // The first claim, before start() returns: a start made right after it
    // (a local hand-off) knows whether runs were waiting. Bounded as the
    // rest of start(); the loop itself goes on if it is slower.
    const first = new Promise<void>((resolve) => (this.firstClaimed = resolve));
    this.wake();
    let bound: NodeJS.Timeout | undefined;
    await Promise.race([first, new Promise<void>((resolve) => (bound = setTimeout(resolve, startMs)))]);
    clearTimeout(bound);
  }

  /**
   * Look for work now (also called by NOTIFY, the poll timer and the due timer).
   *
   * @example
   * await pool.query(`update app.jobs set ready = true`); // something your own code knows makes runs due
   * worker.wake();
   */
  wake(): void {
    if (this.state !== 'running') return;
    this.signalled = true;
    if (this.claiming) {
      if (this.claimSent) this.wakeAgain = true;
      return;
    }
    this.claimPromise = this.claimLoop();
  }

  /**
   * Claim now, or once more after the loop under way, with no new sign of
   * work: for a slot freed while a claim is owed or due runs were left
   * behind (the loop under way may have counted the slot busy), and for a
   * wake its sent claim may have missed.
   */
  private claimAgain(): void {
    if (this.state !== 'running') return;
    if (this.claiming) {
      this.wakeAgain = true;
      return;
    }
    this.claimPromise = this.claimLoop();
  }

  /** Claim until a claim comes back short, then arm the due timer; `gateOnly`: only that last part. */
  private async claimLoop(gateOnly = false): Promise<void> {
    this.claiming = true;
    let drained = gateOnly;
    // A look at the gate alone that finds runs due: runs whose starts skipped their NOTIFY, claimed at once.
    let lastClaimed = gateOnly ? 1 : 0;
    // A look at the gate alone sends its statement at once: a wake from now
    // on may be about a run that statement's snapshot misses.
    this.claimSent = gateOnly;
    try {
      while (this.state === 'running' && !gateOnly) {
        this.claimSent = false;
        if ((this.leasesUnknown || performance.now() < this.leasesDoubtedUntil) && this.handoffs.size === 0) {
          // No hand-off is reserved meanwhile: its start could commit before
          // this statement's snapshot and be given back as it is adopted.
          this.releasingOwned = true;
          let released: number;
          try {
            released = await runReleaseOwned(this.db, this.id, [...this.active.keys()]);
          } finally {
            this.releasingOwned = false;
          }
          this.leasesUnknown = false;
          if (this.leasesDoubtedUntil === Number.POSITIVE_INFINITY) this.leasesDoubtedUntil = performance.now() + this.leaseMs;
          if (released) this.log.warn('gave back runs leased to this worker that it did not know of', { released });
        }
        // Counted here, right before the claim: a hand-off may have taken a slot meanwhile.
        const free = this.concurrency - this.active.size - this.handoffs.size;
        if (free <= 0) {
          this.lookOwed = true;
          if (this.signalled) this.backlog = true;
          break;
        }
        const limit = Math.min(free, this.claimBatch);
        this.stats.claims++;
        const sentAt = performance.now();
        this.claimSent = true;
        this.signalled = false;
        let runs: ClaimedRun[];
        try {
          runs = await runClaim(this.db, {
            worker: this.id,
            queues: this.queues,
            served: [...this.definitions.values()],
            limit,
            leaseMs: this.leaseMs,
          });
        } finally {
          // (Its continuation runs after this loop's bookkeeping below.)
          this.firstClaimed?.();
        }
        lastClaimed = runs.length;
        if (runs.length > 0) this.emptyDueClaims = 0;
        this.observer?.claimed(performance.now() - sentAt, runs.length);
        this.claimFailures = 0;
        // Hand-offs may have taken slots while the claim was in flight (they
        // do not wait for it): runs past the slots left go back at once, so
        // concurrency stays a hard limit; a claim is then owed.
        const room = this.concurrency - this.active.size - this.handoffs.size;
        runs.forEach((run, i) => {
          if (this.state === 'running' && i < room) {
            this.stats.claimed++;
            this.begin(run, sentAt);
          } else {
            if (this.state === 'running') this.stats.givenBack++;
            this.giveBack(run);
          }
        });
        if (runs.length > room && this.state === 'running') {
          this.lookOwed = true;
          this.backlog = true;
          break;
        }
        if (runs.length < limit) {
          drained = true;
          this.lookOwed = false;
          this.backlog = false;
          break;
        }
        this.backlog = true;
      }
      if (drained && this.state === 'running') await this.armDueTimer(lastClaimed);
    } catch (error) {
      // Whatever was waiting still is.
      this.signalled = true;
      this.log.error('claim failed', { error: String(error) });
      // The database is back within moments of a restart: look again soon, not at the next poll.
      if (isTransient(error) && this.state === 'running') {
        this.leasesUnknown = true;
        this.leasesDoubtedUntil = Number.POSITIVE_INFINITY;
        if (this.dueTimer) clearTimeout(this.dueTimer);
        this.dueTimer = setTimeout(() => this.wake(), Math.min(transientDelay(++this.claimFailures), this.pollMs));
      }
    } finally {
      this.claiming = false;
      this.claimSent = false;
      // A loop that ended without a claim (stopping, no free slot): start() waits no longer.
      this.firstClaimed?.();
      this.firstClaimed = undefined;
      if (this.wakeAgain) {
        this.wakeAgain = false;
        this.claimAgain();
      }
    }
  }

  /**
   * Before waiting: close the wake-up gate of the queues (sql/210_wakeups.sql)
   * and wake at the next due time (a scheduled run, a retry backoff, an
   * expiring lease, or a run whose start skipped its NOTIFY). While a
   * coalescing start holds the gate, look again after a short backoff.
   */
  private async armDueTimer(lastClaimed: number): Promise<void> {
    const { ms, gateBusy } = await runIdleCheck(this.db, this.queues, [...this.definitions.values()]);
    if (this.dueTimer) clearTimeout(this.dueTimer);
    this.dueTimer = undefined;
    if (gateBusy) {
      this.stats.gateBusy++;
      this.gateRetryMs = Math.min(50, this.gateRetryMs ? this.gateRetryMs * 2 : 1);
      // Not a sign of waiting runs (the start holding the gate is in flight,
      // or another worker is closing it): look at the gate again, without a
      // claim (which would hold hand-offs back while in flight).
      this.dueTimer = setTimeout(() => {
        // A loop under way closes the gate itself (or owes a claim that will).
        if (this.state === 'running' && !this.claiming) this.claimPromise = this.claimLoop(true);
      }, this.gateRetryMs);
      return;
    }
    this.gateRetryMs = 0;
    // Due but not claimed: locked by another claimer, or held back by the
    // queue's flow control (sql/230_queue_claim.sql). A slot this worker
    // frees may be what the queue's limit waits for: claim when one does.
    this.dueLeft = ms !== null && ms <= 0;
    if (ms === null || ms >= this.pollMs) return;
    // Due already: a run committed after the claim's snapshot (look again at
    // once, if that claim found work), or runs another claimer holds locked
    // or the queue's flow control holds back (look again soon, then twice
    // as late each time nothing came: the claimer that holds them claims
    // them, a run that ends on this worker or another claims again at once
    // on that worker, and a start's NOTIFY is a wake-up of its own).
    let delay = ms + 5;
    if (ms <= 0) {
      delay = lastClaimed > 0 ? 0 : Math.min(25 * 2 ** Math.min(this.emptyDueClaims, 6), 1000, this.pollMs);
      if (lastClaimed === 0) this.emptyDueClaims++;
    }
    this.dueTimer = setTimeout(() => this.wake(), delay);
  }

  /**
   * Keep a slot for a run a client in this process is starting with this
   * worker's lease, so it begins without a NOTIFY and a claim. Only while
   * running with a free slot and no backlog left behind (a started run must
   * not overtake pending ones), for a served workflow, version and queue.
   */
  private reserve(workflow: string, version: string, queue: string | undefined): Handoff | undefined {
    if (this.state !== 'running' || this.backlog || this.releasingOwned
        || this.active.size + this.handoffs.size >= this.concurrency) return undefined;
    const definition = this.definitions.get(`${workflow}@${version}`);
    const q = queue ?? definition?.queue;
    if (!definition || q === undefined || !this.queues.includes(q)) return undefined;
    let settle!: () => void;
    const settled = new Promise<void>((r) => (settle = r));
    this.handoffs.add(settled);
    // The start that leases the run is sent after this: its lease ends no sooner.
    const reservedAt = performance.now();
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
        if (this.state === 'running') this.begin(run, reservedAt);
        else this.giveBack(run);
      },
      cancel: (unknown = false) => {
        if (!close()) return;
        if (unknown && this.state === 'running') {
          // The start's commit may have leased a run to this worker: the next
          // claim round gives back what is leased to it that it does not hold.
          this.leasesUnknown = true;
          this.claimAgain();
          return;
        }
        // The kept slot may be what stopped a claim loop: look again.
        if (this.lookOwed) this.claimAgain();
      },
    };
  }

  /**
   * Release a run claimed but not executed (leased while stopping, or past the
   * slots a hand-off left), so another replica takes it at once; its attempt
   * is not counted.
   */
  private giveBack(run: ClaimedRun): void {
    void this.releaseUnbegun(run).catch(() => undefined);
  }

  /** The release of a claimed run this worker never executed: pending now, the claim's attempt taken back. */
  private releaseUnbegun(run: ClaimedRun): Promise<void> {
    return this.committer.push({ op: 'release', run: run.id, token: run.lease_token, execution: run.execution, delay_ms: 0, failure: false, begun: false });
  }

  /** Execute a run leased by a statement sent at `sentAt` (performance.now()). */
  private begin(run: ClaimedRun, sentAt: number): void {
    const controller = new RunAbort();
    const entry: Active = { run, controller, execution: undefined, done: Promise.resolve(), leaseUntil: sentAt + this.leaseMs, sentAt };
    // Claiming a run we still execute means our old lease was taken away
    // (released or expired) before we noticed: stop the stale execution.
    this.active.get(run.id)?.controller.abort(new LeaseLostError(`run ${run.id}: lease lost (run claimed again)`));
    this.active.set(run.id, entry);
    this.runLog.started(run);
    this.link?.began(run.id);
    entry.done = this.execute(entry)
      .catch((error) => this.log.error('run execution crashed', { runId: run.id, error: String(error) }))
      .finally(() => {
        if (this.active.get(run.id) === entry) this.active.delete(run.id);
        this.link?.ended(run.id);
        // A freed slot matters only if work was left behind; otherwise NOTIFY,
        // the poll and the due timer bring the next run (no empty claim per run).
        if (this.lookOwed || this.dueLeft) this.claimAgain();
      });
  }

  private async execute(entry: Active): Promise<void> {
    const { run, controller } = entry;
    const definition = this.definitions.get(`${run.workflow}@${run.version}`);
    const fence = { run: run.id, token: run.lease_token, execution: run.execution };
    const push = (op: CheckpointOp) => this.committer.push(op);
    if (!definition) {
      // Claimed only for served pairs, so this means a bug; give the run back.
      await this.releaseUnbegun(run);
      return;
    }
    if (run.oversized) {
      // Its history (or its children's ends) cannot be read as one value:
      // no execution of it can replay, and claiming it again would not help.
      const error = new PayloadTooLargeError(`run ${run.id}: its history `
        + `cannot be handed to a worker as one value (PostgreSQL's limit is 256 MB: ${run.oversized.detail}); the run fails instead `
        + 'of replaying. Keep results small (store large data elsewhere and return a reference), or continue as new to start a fresh history.');
      this.log.error('run failed: its history is too large to replay', { runId: run.id });
      try {
        await this.finish(fence, undefined, { op: 'fail', error: serializeError(error) }, false);
      } finally {
        this.committer.forget(run.id, run.lease_token);
      }
      return;
    }
    const observed = this.observer?.execution(run);
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
      claimSentAt: entry.sentAt,
      deadline: run.deadline_at,
      execution: run.execution,
      cancelRequested: run.cancel_requested,
      cancelReason: run.cancel_reason ?? undefined,
      pauseRequested: run.pause_requested,
      abort: controller,
      leaseHeld: () => {
        if (entry.leaseUntil > performance.now()) return true;
        controller.abort(new LeaseLostError(`run ${run.id}: lease ran out before a step began`));
        return false;
      },
      maxPayloadBytes: this.maxPayloadBytes,
      maxHistorySteps: this.maxHistorySteps,
      log: this.log,
      register: (def) => this.registerForRun(def, fence),
      observer: observed,
      transact: (work, request) => runTransaction({
        pool: this.pool, slots: this.transactionSlots, log: this.log, holds: () => this.leases.holds(run.id, run.lease_token), quiet: () => this.leases.quiet(entry),
      }, fence, work, request),
      sink: {
        // A checkpoint is the body of its op: the fence is added to it in
        // place (a fresh object the replay does not touch again; a spread
        // copy of each checkpoint cost ~8 µs).
        record: (cp) => push(Object.assign(cp, fence)),
      },
    });
    entry.execution = execution;
    try {
      await this.finish(fence, execution, await execution.done, true, observed);
    } finally {
      observed?.end(undefined); // a crash; after an end it does nothing
      this.committer.forget(run.id, run.lease_token);
    }
  }

  /**
   * Whether `error` is a write refused for its size under a max_payload_bytes
   * lowered since this worker read it (its own check let the write
   * through); if so, the limit is read again and the run given back at
   * once, so its next execution decides with the new limit (a step's result
   * over it fails the step, a metadata call is refused and recorded)
   * instead of failing the run for a check its code never saw.
   */
  private async overLoweredLimit(fence: Fence, error: unknown, observed: ObservedExecution | undefined): Promise<boolean> {
    if (!isTrellisError(error) || error.code !== ERROR_CODES.payloadTooLarge || !await this.limitLowered()) return false;
    this.log.warn('a write was over max_payload_bytes, lowered since this worker read it: the limit was read again and the run is executed again',
      { runId: fence.run, error: String(error) });
    this.stats.abandoned++;
    observed?.end({ op: 'abandoned', reason: error });
    this.committer.forget(fence.run, fence.token);
    await this.committer.push({ ...fence, op: 'release', delay_ms: 0, failure: false }).catch(() => undefined);
    return true;
  }

  /** Read max_payload_bytes again; whether it is lower than the one this worker used (a read that fails keeps it). */
  private async limitLowered(): Promise<boolean> {
    const used = this.maxPayloadBytes;
    this.maxPayloadBytes = await settingInt(this.pool, 'max_payload_bytes', used).catch(() => used);
    return this.maxPayloadBytes < used;
  }

  /** Register a child's workflow before its start, retrying transient faults while the lease is held. */
  private async registerForRun(definition: WorkflowDefinition, fence: { run: string; token: string }): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.registry.register(definition);
      } catch (error) {
        if (!isTransient(error)) throw error;
        await sleep(transientDelay(attempt));
        if (!this.leases.holds(fence.run, fence.token)) throw new LeaseLostError(`run ${fence.run}: lease ran out while the database was unreachable`, { cause: error });
      }
    }
  }

  /**
   * Write the op that ends an execution. It is queued behind the execution's
   * last checkpoints (often into the same transaction); if one of those
   * failed, the committer refuses it and the outcome that failure forced
   * (a failed run, or an abandoned execution) is written instead.
   */
  private async finish(fence: Fence, execution: Execution | undefined, outcome: Outcome, fallback = true,
    observed?: ObservedExecution): Promise<void> {
    const shuttingDown = outcome.op === 'abandoned' && outcome.reason instanceof CancelledError && this.state === 'stopping';
    // An execution given up after a database fault its retries did not get
    // past is given back as an end op's fault is (faultGiveBack: growing
    // delays, then parked), wherever the fault struck.
    const faulted = outcome.op === 'abandoned' && isDatabaseFault(outcome.reason);
    const refusal = execution?.refusal();
    if (fallback && refusal?.outcome === outcome && await this.overLoweredLimit(fence, refusal.error, observed)) return;
    const op = faulted ? this.faultGiveBack(fence, outcome.reason) : outcomeOp(fence, outcome, shuttingDown);
    // That give-back, and the failure the engine's refusal of a checkpoint
    // forced, follow ops the committer refused for this execution.
    if (faulted || refusal?.outcome === outcome) this.committer.forget(fence.run, fence.token);
    // Its commit ends the lease: a heartbeat that finds none meanwhile is not a lost lease.
    const ending = this.active.get(fence.run);
    if (ending?.run.lease_token === fence.token) ending.ending = true;
    try {
      if (op) await this.committer.push(op);
      if (!faulted && this.faultStreaks.size) this.faultStreaks.delete(fence.run);
      this.stats[outcomeName(outcome)]++;
      observed?.end(outcome);
      this.runLog.ended(this.active.get(fence.run)?.run, fence.run, outcome);
      if (outcome.op === 'complete') this.link?.finished(fence.run, { output: outcome.output });
      else if (outcome.op === 'fail' || outcome.op === 'cancelled') this.link?.finished(fence.run);
      return;
    } catch (error) {
      // A write refused for its size under a max_payload_bytes lowered since
      // this worker read it (its own check let the write through): read the
      // limit again and give the run back at once, so its next execution
      // decides with the new limit (a step's result over it fails the step,
      // a metadata call is refused and recorded) instead of crashing on
      // every claim until its lease runs out, and then being parked as a
      // poison pill.
      if (fallback && await this.overLoweredLimit(fence, error, observed)) return;
      const forced = await execution?.settle();
      if (fallback && forced && forced.op !== 'abandoned' && !(error instanceof LeaseLostError)) {
        this.committer.forget(fence.run, fence.token);
        return await this.finish(fence, execution, forced, false, observed);
      }
      if (fallback && !forced && op && op.op !== 'fail' && isTrellisError(error) && REFUSED_END.has(error.code)) {
        // The engine refused this end itself (an output over the payload
        // limit, say): fail the run with that error rather than re-running it.
        this.log.warn('the end of the run was refused; failing it', { runId: fence.run, error: String(error) });
        this.committer.forget(fence.run, fence.token);
        return await this.finish(fence, execution, { op: 'fail', error: serializeError(error) }, false, observed);
      }
      if (!isTrellisError(error) && !forced) throw error; // not a write's failure: a bug
      // Refused by the engine with nothing to fall back on (the failure a
      // refusal forced, refused in turn): given back like a fault, so it is
      // parked for an operator rather than left until its lease runs out.
      const refused = !forced && !(error instanceof LeaseLostError) && !isDatabaseFault(error);
      this.stats.abandoned++;
      observed?.end({ op: 'abandoned', reason: error });
      if (error instanceof LeaseLostError || isDatabaseFault(error)) this.runLog.ended(this.active.get(fence.run)?.run, fence.run, { op: 'abandoned', reason: error });
      this.log.warn('the run could not be finished on this worker', { runId: fence.run, error: String(error) });
      // A database error that is not the workflow's (a permission, a missing
      // function mid-deploy): give the run back for a later attempt rather
      // than leave it until its lease expires; it is never failed for this.
      if ((isDatabaseFault(error) || refused) && !faulted && op?.op !== 'release') {
        this.committer.forget(fence.run, fence.token);
        await this.committer.push(this.faultGiveBack(fence, error)).catch(() => undefined);
      }
    }
  }

  /**
   * The op that gives run `fence.run` back after a database fault: a release
   * after a growing delay, or, at the FAULT_PARK_AFTER-th in a row, a pause
   * with the error (the dead letter an operator resumes or retries).
   */
  private faultGiveBack(fence: Fence, error: unknown): CheckpointOp {
    const last = this.faultStreaks.get(fence.run);
    const streak = last && Date.now() - last.at < FAULT_STREAK_MS ? last.n + 1 : 1;
    this.faultStreaks.delete(fence.run);
    if (streak >= FAULT_PARK_AFTER) {
      this.log.error('the run\'s writes failed with a database error at every attempt: parked (paused) for an operator', { runId: fence.run, attempts: streak, error: String(error) });
      const cause = serializeError(error);
      return { ...fence, op: 'pause', error: { ...cause, message: `parked after ${streak} attempts in a row whose writes failed with a database error: ${cause.message}` } };
    }
    if (this.faultStreaks.size >= FAULT_STREAKS_MAX) this.faultStreaks.delete(this.faultStreaks.keys().next().value as string);
    this.faultStreaks.set(fence.run, { n: streak, at: Date.now() });
    return { ...fence, op: 'release', delay_ms: Math.min(1000 * 2 ** (streak - 1), 60_000), failure: false };
  }

  /**
   * Stop claiming, let running runs finish until `timeout` (default 10s), then
   * abort the rest (their step AbortSignals fire) and release their leases so
   * another replica continues them at once.
   *
   * @example
   * process.on('SIGTERM', () => void worker.stop({ timeout: '30s' }));
   */
  async stop(options: { timeout?: Duration | undefined } = {}): Promise<void> {
    if (this.state === 'stopped' || this.state === 'stopping') return;
    const deadline = toMs(options.timeout ?? 10_000, 'timeout');
    const wasRunning = this.state === 'running';
    this.state = 'stopping';
    this.removeLocal?.();
    clearInterval(this.pollTimer);
    if (this.dueTimer) clearTimeout(this.dueTimer);
    // The role duties get the same bound as the runs (a duty that ignores its signal is left behind).
    await this.roleRunner.stop(deadline);
    await this.hookLoop?.stop();
    if (wasRunning) {
      await this.claimPromise;
      // Starts handed to this worker still settle into `active` (or a release).
      if (!(await settledWithin([...this.handoffs, ...[...this.active.values()].map((a) => a.done)], deadline))) {
        for (const a of this.active.values()) a.controller.abort(new CancelledError('worker is shutting down'));
        // Not the hand-offs again: a start stuck on a full pool must not hold up the stop
        // (if it commits later, its lease expires and another worker claims the run).
        // An execution that does not end once aborted (code of the
        // application's that never returns and heeds no signal) gets as long
        // again; then its lease is given back and it is left behind (its late
        // writes are fenced out by the lease).
        const ended = await settledWithin([...this.active.values()].map((a) => a.done), deadline);
        if (!ended && this.active.size > 0) {
          const left = [...this.active.keys()];
          this.log.error('runs whose execution did not end after it was aborted: their leases are given back and the executions left behind', { runIds: left });
          await this.committer.drain();
          await runReleaseOwned(this.db, this.id, []).catch((error: unknown) =>
            this.log.warn('giving back the leases of executions left behind failed: they expire instead', { error: String(error) }));
          this.active.clear();
        }
      }
      await this.committer.drain();
      await this.listener?.close();
    }
    clearInterval(this.heartbeatTimer);
    await this.observer?.close();
    this.state = 'stopped';
    if (this.ownsPool) await this.pool.end();
  }
}

