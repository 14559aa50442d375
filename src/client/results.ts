/**
 * Waiting for runs to finish, for `client.result()` (and for the values runs
 * set, for `client.waitForValue()`, woken by `trellis:run_value` the same
 * way): each waiter re-reads the
 * run's outcome when a `trellis:run_finished` NOTIFY names it, when a worker
 * that joined this client (`createWorker({ client })`) reports that it ended
 * the run (before the NOTIFY could),
 * when the listener (re)connects, and on a slow poll; the row is the truth.
 * While it has waiters, the client watches for `trellis:run_finished` on a
 * session of its own (`trellis.run_finished_watch()`, decision 0029): the
 * server sends that NOTIFY only while some session watches, and every
 * waiter reads its run again each time the watch is taken, since runs that
 * ended unwatched before then notified nobody.
 * A run such a worker is executing is not read when the wait begins, and
 * one it completed needs no read at all: the worker passes the output
 * it committed, and the waiter parses PostgreSQL's text of that jsonb
 * (src/protocol/jsonb-text.ts) with the pool's own jsonb parser, which is
 * what the read would have returned (issue 18: one round trip fewer from
 * start to result).
 */
import { type ClientConfig, PgClient, type Pool } from '../db/pg.ts';
import { CancelledError, ConfigurationError, NotFoundError, TimeoutError, WorkflowFailedError } from '../errors.ts';
import { within } from '../db/connection.ts';
import { Listener } from '../db/listener.ts';
import { isTransient } from '../db/transient.ts';
import { jsonbText } from '../protocol/jsonb-text.ts';
import { longTimeout } from '../protocol/timer.ts';
import type { LocalCompletion, LocalHandoff } from '../protocol/local-handoff.ts';
import type { Logger } from '../protocol/logger.ts';
import { FINISHED_STATES, type RunState } from '../db/tables.ts';
import type { Run } from './runs.ts';

/** What a wait gets when its client is closed under it, or is begun on a closed one. */
function closedError(runId: string): ConfigurationError {
  return new ConfigurationError(`the client was closed while waiting on run ${runId}`, { details: { runId } });
}

/** How long a timed-out wait looks for the reason before it rejects without one. */
const STALL_MS = 1000;
/** How long the watch is kept after the last waiter is gone (so a steady stream of result() calls keeps one session). */
const WATCH_LINGER_MS = 5000;
/** The watch session's bound on connecting and on waiting for its locks. */
const WATCH_CHECK_MS = 10_000;

export interface ResultWaiterOptions {
  pool: Pool;
  /** The link to this process's workers that joined the client: they report the runs they end. */
  link: LocalHandoff;
  /** Where the LISTEN connection goes (see listenConnection). */
  connection: ClientConfig;
  log: Logger;
  /** The safety-net poll of each waiter. */
  pollMs: number;
  /** The run's status, output and error (undefined: no such run). */
  outcome(runId: string): Promise<Pick<Run, 'status' | 'output' | 'error'> | undefined>;
  /** The run's status and the value it set under `key` (setAt null: not yet; undefined: no such run). */
  value(runId: string, key: string): Promise<{ status: string; value: unknown; setAt: Date | null } | undefined>;
  /** The run's status and the entries of its stream `key` after `after` (undefined: no such run). */
  stream(runId: string, key: string, after: string | null): Promise<{ status: string; entries: StreamRow[] } | undefined>;
  /** Why the run has not finished yet (for the TimeoutError), if that can be said. */
  stall?(runId: string): Promise<string | undefined>;
  /**
   * The function the pool's connections parse jsonb text with, so a local
   * completion gives what `outcome` would; undefined (or a rejection): every
   * waiter reads the row.
   */
  jsonbParser?(): Promise<((text: string) => unknown) | undefined>;
}

/** An entry of trellis.run_stream. */
export interface StreamRow {
  cursor: string;
  value: unknown;
  closed: boolean;
  writtenAt: Date;
}

/** One result() (or waitForValue()) call waiting on a run. */
interface Waiter {
  /** Read the run's outcome again. */
  check(): void;
  /** Give the wait up with `error` (the client is closing). */
  abandon(error: Error): void;
  /** The run completed with this output (committed); absent for a wait the local end does not settle. */
  completed?(output: unknown): void;
}

export class ResultWaiter {
  private readonly waiters = new Map<string, Set<Waiter>>();
  private listener: Promise<Listener> | undefined;
  /** The listener could not connect and a waiter said so; cleared when it connects. */
  private listenerDownLogged = false;
  private parser: Promise<((text: string) => unknown) | undefined> | undefined;
  /** The pool's jsonb parser once known (undefined: local completions are read like any other). */
  private parse: ((text: string) => unknown) | undefined;
  private readonly offLocalFinish: () => void;
  /** The session holding the watch (decision 0029), once connected; undefined while there is none. */
  private watch: PgClient | undefined;
  /** The session of a watch being taken, until it is taken or failed. */
  private taking: PgClient | undefined;
  private watchFailures = 0;
  private watchRetry: NodeJS.Timeout | undefined;
  private watchLinger: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(private readonly o: ResultWaiterOptions) {
    this.offLocalFinish = o.link.onFinish((id, completed) => this.localFinish(id, completed));
  }

  /** Waiters of `runId` read its outcome again. */
  private recheck(runId: string): void {
    for (const waiter of this.waiters.get(runId) ?? []) waiter.check();
  }

  /** A worker in this process ended `runId`: a completion settles its waiters, anything else rereads. */
  private localFinish(runId: string, completed: LocalCompletion | undefined): void {
    const waiters = this.waiters.get(runId);
    if (!waiters) return;
    if (!completed || !this.parse) return this.recheck(runId);
    let text: string;
    try {
      text = jsonbText(completed.output ?? 'null');
    } catch {
      return this.recheck(runId);
    }
    // Each waiter gets its own parse, as each read would.
    for (const waiter of [...waiters]) {
      if (!waiter.completed) {
        waiter.check();
        continue;
      }
      let output: unknown;
      try {
        output = this.parse(text);
      } catch {
        waiter.check();
        continue;
      }
      waiter.completed(output);
    }
  }

  /** Every waiter reads its run again. */
  private recheckAll(): void {
    for (const set of this.waiters.values()) for (const waiter of set) waiter.check();
  }

  /** Every waiter whose run no worker in this process is executing reads it again (the link reports the others). */
  private recheckRemote(): void {
    for (const [runId, set] of this.waiters) {
      const executing = this.o.link.isExecuting(runId);
      for (const waiter of set) if (!executing || !waiter.completed) waiter.check();
    }
  }

  /**
   * Watch for trellis:run_finished while there are waiters (decision 0029).
   * Never awaited by a wait: taking the watch can wait for a transaction
   * that ended runs unwatched (an app's open transaction, for as long as it
   * stays open), and until then the waiters' polls stand in. Once it is
   * taken every waiter reads its run again (but those whose run a worker in
   * this process executes: the link reports their end): a run that ended
   * before then committed before that read, and every later end notifies.
   */
  private ensureWatch(): void {
    if (this.watchLinger) {
      clearTimeout(this.watchLinger);
      this.watchLinger = undefined;
    }
    if (this.closed || this.watch || this.taking || this.watchRetry) return;
    // Bounded as the listener's connection is: a connect or a statement with
    // no answer (a silent partition) fails, and the watch is taken again.
    // A watch that waits on a transaction for more than lock_timeout gives
    // up and tries again after the back-off (its waiters poll meanwhile).
    const session = new PgClient({ ...this.o.connection, application_name: 'trellis-client-watch', keepAlive: true,
      keepAliveInitialDelayMillis: WATCH_CHECK_MS, connectionTimeoutMillis: WATCH_CHECK_MS, query_timeout: 2 * WATCH_CHECK_MS });
    session.on('error', (error) => {
      if (!this.closed) this.o.log.warn('result watch session error', { error: String(error) });
    });
    session.on('end', () => {
      if (this.watch !== session) return;
      this.watch = undefined;
      // Lost with waiters: take it again (their polls cover the gap, and the
      // new watch has them read their runs again).
      if (this.waiters.size > 0) this.retryWatch();
    });
    this.taking = session;
    void (async () => {
      await session.connect();
      await session.query(`set lock_timeout = ${WATCH_CHECK_MS}; select trellis.run_finished_watch()`);
    })().then(
      () => {
        this.taking = undefined;
        if (this.closed) {
          void session.end().catch(() => undefined);
          return;
        }
        this.watch = session;
        this.watchFailures = 0;
        if (this.waiters.size === 0) this.lingerWatch();
        else this.recheckRemote();
      },
      (error: unknown) => {
        this.taking = undefined;
        void session.end().catch(() => undefined);
        if (this.closed) return;
        this.o.log.warn('result watch failed; waiters poll until it is taken', { error: String(error) });
        if (this.waiters.size > 0) this.retryWatch();
      },
    );
  }

  private retryWatch(): void {
    if (this.closed || this.watchRetry) return;
    const delay = Math.min(100 * 2 ** this.watchFailures++, 5000);
    this.watchRetry = setTimeout(() => {
      this.watchRetry = undefined;
      if (this.waiters.size > 0) this.ensureWatch();
    }, delay);
    this.watchRetry.unref();
  }

  /**
   * The listener (re)connected, so the network may have failed: a held
   * watch takes its locks again (a no-op while its session is alive), and a
   * session that no longer answers is ended and the watch taken anew.
   */
  private verifyWatch(): void {
    const session = this.watch;
    if (!session) return;
    session.query('select trellis.run_finished_watch()').catch(() => {
      void session.end().catch(() => undefined);
    });
  }

  /** The last waiter is gone: end the watch after WATCH_LINGER_MS unless another comes. */
  private lingerWatch(): void {
    if (this.watchLinger || (!this.watch && !this.taking)) return;
    this.watchLinger = setTimeout(() => {
      this.watchLinger = undefined;
      if (this.waiters.size > 0 || !this.watch) return;
      const session = this.watch;
      this.watch = undefined;
      void session.end().catch(() => undefined);
    }, WATCH_LINGER_MS);
    this.watchLinger.unref();
  }

  /** The run's output once it finished (rejects as `client.result()` documents). */
  async wait<O>(runId: string, timeoutMs: number | undefined): Promise<O> {
    // The parser is learned beside the wait, never before it: a pool with no
    // free connection must not hold result() past its timeout. Until it is
    // known, a local completion is read like any other end.
    void this.ensureParser();
    return this.settle<O>(runId, timeoutMs, 'finish', true, async () => {
      const run = await this.o.outcome(runId);
      if (!run) return { error: new NotFoundError(`run ${runId} does not exist`) };
      if (run.status === 'completed') return { value: run.output as O };
      if (run.status === 'failed') {
        const e = run.error as { message?: string | undefined } | null;
        return { error: new WorkflowFailedError(`run ${runId} failed: ${e?.message ?? 'unknown error'}`, { details: { error: run.error } }) };
      }
      if (run.status === 'cancelled') return { error: new CancelledError(`run ${runId} was cancelled`, { details: { error: run.error } }) };
      return undefined;
    });
  }

  /**
   * The value `runId` sets under `key` (`client.waitForValue()`): woken by
   * `trellis:run_value` (sent while watched, as run_finished is) and by the
   * run's end, which settles a key never set as NotFoundError.
   */
  async waitValue<T>(runId: string, key: string, timeoutMs: number | undefined): Promise<T> {
    return this.settle<T>(runId, timeoutMs, `set value ${key}`, false, async () => {
      const row = await this.o.value(runId, key);
      if (!row) return { error: new NotFoundError(`run ${runId} does not exist`) };
      if (row.setAt) return { value: row.value as T };
      if (FINISHED_STATES.includes(row.status as RunState)) {
        return { error: new NotFoundError(`run ${runId} ${row.status} without setting value ${key}`, { details: { runId, key, status: row.status } }) };
      }
      return undefined;
    });
  }

  /**
   * Wait until `read` settles (a value or an error; undefined: not yet),
   * woken as waitValue is: for a wait the client composes of reads of its
   * own (`client.request()`).
   */
  waitRead<T>(runId: string, timeoutMs: number | undefined, what: string,
    read: () => Promise<{ value: T } | { error: Error } | undefined>): Promise<T> {
    return this.settle<T>(runId, timeoutMs, what, false, read);
  }

  /**
   * The next entries of stream `key` of `runId` after `after`
   * (`client.readStream()`), woken as waitValue is; `done` once the run has
   * finished and every entry it wrote was returned. The status is read
   * before the entries: a run seen finished wrote all of them before.
   */
  async waitStream(runId: string, key: string, after: string | null, timeoutMs: number | undefined,
    signal?: AbortSignal): Promise<{ entries: StreamRow[]; done: boolean }> {
    return this.settle<{ entries: StreamRow[]; done: boolean }>(runId, timeoutMs, `write to stream ${key}`, false, async () => {
      const read = await this.o.stream(runId, key, after);
      if (!read) return { error: new NotFoundError(`run ${runId} does not exist`) };
      if (read.entries.length > 0) return { value: { entries: read.entries, done: false } };
      if (FINISHED_STATES.includes(read.status as RunState)) return { value: { entries: [], done: true } };
      return undefined;
    }, signal);
  }

  /**
   * Wait until `read` settles (a value or an error; undefined: not yet),
   * reading again on each NOTIFY naming the run, the watch, the listener's
   * reconnect and the poll. `followsLocal`: the link of this process's
   * workers reports the run's end (result()); a value wait has no such
   * report and reads whatever a worker in this process does.
   */
  private async settle<T>(runId: string, timeoutMs: number | undefined, what: string, followsLocal: boolean,
    read: () => Promise<{ value: T } | { error: Error } | undefined>, signal?: AbortSignal): Promise<T> {
    signal?.throwIfAborted();
    if (this.closed) throw closedError(runId);
    // A listener that cannot connect now (the server full or restarting) is
    // not the run's outcome either: the waiter polls, each poll tries the
    // listener again, and its connect reads every waiter's row again.
    const listening = await this.ensureListener().then(() => true, (error: unknown) => {
      if (!isTransient(error)) throw error;
      // Once until the listener connects, not once per waiter.
      if (!this.listenerDownLogged) this.o.log.warn('result listener could not connect; waiters poll until it does', { runId, error: String(error) });
      this.listenerDownLogged = true;
      return false;
    });
    if (this.closed) throw closedError(runId); // closed while the listener connected
    return new Promise<T>((resolve, reject) => {
      let done = false;
      let checking = false;
      let again = false;
      let transientLogged = false;
      const finish = (fn: () => void) => {
        if (done) return;
        done = true;
        clearInterval(poll);
        clearTimer?.();
        signal?.removeEventListener('abort', aborted);
        const set = this.waiters.get(runId);
        set?.delete(waiter);
        if (set?.size === 0) this.waiters.delete(runId);
        if (this.waiters.size === 0) this.lingerWatch();
        fn();
      };
      const check = (): void => {
        if (done) return;
        if (checking) {
          again = true;
          return;
        }
        checking = true;
        read().then(
          (settled) => {
            checking = false;
            if (settled && 'error' in settled) return finish(() => reject(settled.error));
            if (settled) return finish(() => resolve(settled.value));
            if (again) {
              again = false;
              check();
            }
          },
          (error: unknown) => {
            checking = false;
            // A lost connection or a server restarting is not the run's
            // outcome: the poll, a NOTIFY or the listener's reconnect reads
            // the row again (a timeout still bounds the wait).
            if (isTransient(error)) {
              if (!transientLogged) this.o.log.warn('result read failed; reading again', { runId, error: String(error) });
              transientLogged = true;
              if (again) {
                again = false;
                check();
              }
              return;
            }
            finish(() => reject(error));
          },
        );
      };
      // Given up by the caller (a stream reader whose client went away): the
      // waiter and its poll go at once, and the wait rejects with the reason.
      const aborted = () => finish(() => reject(signal?.reason));
      if (signal?.aborted) return reject(signal.reason); // (during ensureListener: nothing registered yet)
      signal?.addEventListener('abort', aborted, { once: true });
      const abandon = (error: Error) => finish(() => reject(error));
      const waiter: Waiter = followsLocal ? { check, abandon, completed: (output) => finish(() => resolve(output as T)) } : { check, abandon };
      const set = this.waiters.get(runId) ?? new Set();
      set.add(waiter);
      this.waiters.set(runId, set);
      this.ensureWatch();
      const poll = setInterval(listening ? check : () => {
        if (!this.listener && !this.closed) this.ensureListener().catch(() => undefined);
        check();
      }, this.o.pollMs);
      const clearTimer = timeoutMs === undefined ? undefined : longTimeout(() => {
        const timedOut = (why?: string) => finish(() => reject(new TimeoutError(
          `run ${runId} did not ${what} within ${timeoutMs} ms${why ? `: ${why}` : ''}`, { details: { runId } })));
        if (!this.o.stall) return timedOut();
        // Only words for the message: bounded, so a pool that cannot answer
        // (no free connection, a silent partition) still times out.
        within(this.o.stall(runId), STALL_MS, 'why the run has not finished').then(timedOut, () => timedOut());
      }, timeoutMs);
      // A run a worker in this process is executing has not ended, and the
      // link reports when that execution is over (with the output, or so
      // this waiter reads the row): no read now. It ran concurrently with
      // the run's own first hops and cost ~0.3 ms of start -> result on
      // two cores (issue 18). Checked in the same tick the waiter joins.
      if (!followsLocal || !this.o.link.isExecuting(runId)) check();
    });
  }

  private ensureListener(): Promise<Listener> {
    this.listener ??= (async () => {
      const listener = new Listener({
        connection: this.o.connection,
        channels: ['trellis:run_finished', 'trellis:run_value'],
        onNotify: (_channel, payload) => {
          for (const id of payload.split(',')) this.recheck(id);
        },
        onConnect: () => {
          this.listenerDownLogged = false;
          this.recheckAll();
          this.verifyWatch();
        },
        log: this.o.log,
        applicationName: 'trellis-client-listener',
        echoVia: (channel, payload) => this.o.pool.query('select pg_catalog.pg_notify($1, $2)', [channel, payload]),
      });
      await listener.start();
      return listener;
    })();
    // A failed connect is not remembered: the next result() tries again.
    const pending = this.listener;
    pending.catch(() => {
      if (this.listener === pending) this.listener = undefined;
    });
    return pending;
  }

  /**
   * Learn the pool's jsonb parser once. A failure (no connection) only means
   * local completions are read for now; the next result() asks again.
   */
  private ensureParser(): Promise<unknown> {
    if (!this.parser) {
      const pending = (this.o.jsonbParser?.() ?? Promise.resolve(undefined)).then(
        (parse) => (this.parse = parse),
        () => {
          if (this.parser === pending) this.parser = undefined;
          return undefined;
        },
      );
      this.parser = pending;
    }
    return this.parser;
  }

  async close(): Promise<void> {
    this.closed = true;
    // Waits still pending end now (their polls would go on through a pool
    // the client may not own, or fail on one that was ended).
    for (const [runId, set] of [...this.waiters]) for (const waiter of [...set]) waiter.abandon(closedError(runId));
    clearTimeout(this.watchRetry);
    clearTimeout(this.watchLinger);
    // A watch being taken may wait on another transaction: end its session
    // (its promise is not awaited: a connect cut off by end() may never settle).
    await this.taking?.end().catch(() => undefined);
    const session = this.watch;
    this.watch = undefined;
    await session?.end().catch(() => undefined);
    this.offLocalFinish();
    if (this.listener) await (await this.listener.catch(() => undefined))?.close();
  }
}
