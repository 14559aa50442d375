/**
 * Waiting for runs to finish, for `client.result()`: each waiter re-reads the
 * run's outcome when a `trellis:run_finished` NOTIFY names it, when a worker
 * that joined this client (`createWorker({ client })`) reports that it ended
 * the run (before the NOTIFY could),
 * when the listener (re)connects, and on a slow poll; the row is the truth.
 * A run such a worker is executing is not read when the wait begins, and
 * one it completed needs no read at all: the worker passes the output
 * it committed, and the waiter parses PostgreSQL's text of that jsonb
 * (src/protocol/jsonb-text.ts) with the pool's own jsonb parser, which is
 * what the read would have returned (issue 18: one round trip fewer from
 * start to result).
 */
import type { ClientConfig, Pool } from '../db/pg.ts';
import { CancelledError, NotFoundError, TimeoutError, WorkflowFailedError } from '../errors.ts';
import { within } from '../db/connection.ts';
import { Listener } from '../db/listener.ts';
import { jsonbText } from '../protocol/jsonb-text.ts';
import type { LocalCompletion, LocalHandoff } from '../protocol/local-handoff.ts';
import type { Logger } from '../protocol/logger.ts';
import type { Run } from './runs.ts';

/** How long a timed-out wait looks for the reason before it rejects without one. */
const STALL_MS = 1000;

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
  /** Why the run has not finished yet (for the TimeoutError), if that can be said. */
  stall?(runId: string): Promise<string | undefined>;
  /**
   * The function the pool's connections parse jsonb text with, so a local
   * completion gives what `outcome` would; undefined (or a rejection): every
   * waiter reads the row.
   */
  jsonbParser?(): Promise<((text: string) => unknown) | undefined>;
}

/** One result() call waiting on a run. */
interface Waiter {
  /** Read the run's outcome again. */
  check(): void;
  /** The run completed with this output (committed). */
  completed(output: unknown): void;
}

export class ResultWaiter {
  private readonly waiters = new Map<string, Set<Waiter>>();
  private listener: Promise<Listener> | undefined;
  private parser: Promise<((text: string) => unknown) | undefined> | undefined;
  /** The pool's jsonb parser once known (undefined: local completions are read like any other). */
  private parse: ((text: string) => unknown) | undefined;
  private readonly offLocalFinish: () => void;

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

  /** The run's output once it finished (rejects as `client.result()` documents). */
  async wait<O>(runId: string, timeoutMs: number | undefined): Promise<O> {
    // The parser is learned beside the wait, never before it: a pool with no
    // free connection must not hold result() past its timeout. Until it is
    // known, a local completion is read like any other end.
    void this.ensureParser();
    await this.ensureListener();
    return new Promise<O>((resolve, reject) => {
      let done = false;
      let checking = false;
      let again = false;
      const finish = (fn: () => void) => {
        if (done) return;
        done = true;
        clearInterval(poll);
        if (timer) clearTimeout(timer);
        const set = this.waiters.get(runId);
        set?.delete(waiter);
        if (set?.size === 0) this.waiters.delete(runId);
        fn();
      };
      const check = (): void => {
        if (done) return;
        if (checking) {
          again = true;
          return;
        }
        checking = true;
        this.o.outcome(runId).then(
          (run) => {
            checking = false;
            if (!run) return finish(() => reject(new NotFoundError(`run ${runId} does not exist`)));
            if (run.status === 'completed') return finish(() => resolve(run.output as O));
            if (run.status === 'failed') {
              const e = run.error as { message?: string } | null;
              return finish(() => reject(new WorkflowFailedError(`run ${runId} failed: ${e?.message ?? 'unknown error'}`, { details: { error: run.error } })));
            }
            if (run.status === 'cancelled') return finish(() => reject(new CancelledError(`run ${runId} was cancelled`, { details: { error: run.error } })));
            if (again) {
              again = false;
              check();
            }
          },
          (error: unknown) => {
            checking = false;
            finish(() => reject(error));
          },
        );
      };
      const waiter: Waiter = { check, completed: (output) => finish(() => resolve(output as O)) };
      const set = this.waiters.get(runId) ?? new Set();
      set.add(waiter);
      this.waiters.set(runId, set);
      const poll = setInterval(check, this.o.pollMs);
      const timer = timeoutMs === undefined ? undefined : setTimeout(() => {
        const timedOut = (why?: string) => finish(() => reject(new TimeoutError(
          `run ${runId} did not finish within ${timeoutMs} ms${why ? `: ${why}` : ''}`, { details: { runId } })));
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
      if (!this.o.link.isExecuting(runId)) check();
    });
  }

  private ensureListener(): Promise<Listener> {
    this.listener ??= (async () => {
      const listener = new Listener({
        connection: this.o.connection,
        channels: ['trellis:run_finished'],
        onNotify: (_channel, payload) => {
          for (const id of payload.split(',')) this.recheck(id);
        },
        onConnect: () => {
          for (const set of this.waiters.values()) for (const waiter of set) waiter.check();
        },
        log: this.o.log,
        applicationName: 'trellis-client-listener',
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
    this.offLocalFinish();
    if (this.listener) await (await this.listener.catch(() => undefined))?.close();
  }
}
