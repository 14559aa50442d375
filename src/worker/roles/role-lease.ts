/**
 * One role as a worker keeps it: try to acquire it every renew interval;
 * once held, run the duty with the fencing token and an AbortSignal, renew
 * every renew interval, and abort the signal when the lease is lost.
 *
 * The local deadline is the time a successful acquire or renew was *sent*
 * plus the TTL: the database counts the lease from when the statement ran,
 * which is later, so the signal fires before the row expires, whatever the
 * network did. A holder that renews late (its event loop blocked) finds its
 * deadline past and gives up before renewing; role_renew refuses an expired
 * lease anyway. Another replica acquires at most one renew interval after
 * the row expired, so the takeover bound is TTL + one renew interval after
 * the holder's last successful renew.
 */
import { roleAcquire, roleRecord, roleRelease, roleRenew } from '../../db/roles.ts';
import type { Queryable } from '../../db/queryable.ts';
import { toTrellisError } from '../../db/errors.ts';
import { LeaseLostError } from '../../errors.ts';
import type { Logger } from '../../protocol/logger.ts';
import { longTimeout } from '../../protocol/timer.ts';

/**
 * What a role's function is given.
 *
 * @example
 * worker.role('exporter', async ({ name, token, signal }) => {
 *   while (!signal.aborted) await exportBatch({ fence: [name, token] });
 * });
 */
export interface RoleContext {
  /** The role's name. */
  readonly name: string;
  /** The fencing token of this lease: pass it to `trellis.role_check(name, token)` in writes that must be fenced. */
  readonly token: string;
  /** Aborted (with a LeaseLostError) when the lease is lost or the worker stops. */
  readonly signal: AbortSignal;
}

/**
 * The function `worker.role` runs on the holder of the role.
 *
 * @example
 * const sweep: RoleFunction = async ({ token }) => { await pool.query('select my_sweep($1)', [token]); };
 */
export type RoleFunction = (ctx: RoleContext) => Promise<unknown> | unknown;

export interface RoleSpec {
  name: string;
  run: RoleFunction;
  /** Run again every this many ms while held (engine duties); without it, once per lease. */
  everyMs?: number | undefined;
  ttlMs: number;
  renewMs: number;
}

export interface RoleLeaseDeps {
  db: Queryable;
  holder: string;
  log: Logger;
}

const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });

export class RoleLease {
  /** The token while held. */
  token: string | undefined;
  private deadline = 0;
  private controller: AbortController | undefined;
  private duty: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private deadlineTimer: NodeJS.Timeout | undefined;
  private stepping: Promise<void> | undefined;
  private stopped = false;
  /** Leases taken and lost, for tests and metrics. */
  readonly stats = { acquired: 0, lost: 0, runs: 0, failures: 0 };

  constructor(readonly spec: RoleSpec, private readonly deps: RoleLeaseDeps) {}

  start(): void {
    this.timer = setInterval(() => this.step(), this.spec.renewMs);
    this.timer.unref();
    this.step();
  }

  /** Acquire or renew now (unless a step is under way). */
  step(): Promise<void> {
    if (this.stopped) return Promise.resolve();
    this.stepping ??= (this.token === undefined ? this.acquire() : this.renew()).finally(() => (this.stepping = undefined));
    return this.stepping;
  }

  private async acquire(): Promise<void> {
    if (this.duty) return; // the last lease's duty has not settled yet
    const sent = performance.now();
    let token: string | null;
    try {
      token = await roleAcquire(this.deps.db, this.spec.name, this.deps.holder, this.spec.ttlMs);
    } catch (error) {
      this.deps.log.warn('role acquire failed', { role: this.spec.name, error: String(error) });
      return;
    }
    if (token === null) return;
    if (this.stopped) {
      await roleRelease(this.deps.db, this.spec.name, this.deps.holder, token).catch(() => undefined);
      return;
    }
    this.stats.acquired++;
    this.token = token;
    this.setDeadline(sent + this.spec.ttlMs);
    const controller = new AbortController();
    this.controller = controller;
    this.duty = this.runDuty(token, controller.signal).finally(() => {
      this.duty = undefined;
      // Lost (not stopped): try again at once; the database says whether another holder has it.
      if (!this.stopped && this.token === undefined) setTimeout(() => void this.step(), 0).unref();
    });
  }

  private async renew(): Promise<void> {
    const token = this.token as string;
    if (performance.now() >= this.deadline) return this.lose(token, 'its lease ran out before it was renewed');
    const sent = performance.now();
    try {
      await roleRenew(this.deps.db, this.spec.name, this.deps.holder, token, this.spec.ttlMs);
      if (this.token === token && performance.now() < this.deadline) this.setDeadline(sent + this.spec.ttlMs);
    } catch (error) {
      if (error instanceof LeaseLostError) this.lose(token, 'the database refused the renew');
      else this.deps.log.warn('role renew failed; retrying until the lease runs out', { role: this.spec.name, error: String(error) });
    }
  }

  private setDeadline(deadline: number): void {
    this.deadline = deadline;
    clearTimeout(this.deadlineTimer);
    const token = this.token;
    this.deadlineTimer = setTimeout(() => {
      if (token !== undefined && this.token === token && performance.now() >= this.deadline) this.lose(token, 'its lease ran out');
    }, Math.max(0, deadline - performance.now()) + 1);
    this.deadlineTimer.unref();
  }

  private lose(token: string, why: string): void {
    if (this.token !== token) return;
    this.token = undefined;
    this.stats.lost++;
    clearTimeout(this.deadlineTimer);
    if (!this.stopped) this.deps.log.warn('role lost', { role: this.spec.name, token, why });
    this.controller?.abort(new LeaseLostError(`role ${this.spec.name}: lease ${token} lost (${why})`));
  }

  private async runDuty(token: string, signal: AbortSignal): Promise<void> {
    const ctx: RoleContext = { name: this.spec.name, token, signal };
    do {
      let error: string | null = null;
      try {
        await this.spec.run(ctx);
      } catch (e) {
        error = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
        // A fenced write refused (role_check: TR003): the database knows the lease is gone. The
        // duty's writes go through the user's own pool, so it is most often pg's error with that
        // code (or one wrapping it), not a LeaseLostError: each was a duty failure run again
        // under the dead token until the next renew.
        if (fencedOut(e) && !signal.aborted) this.lose(token, 'a write fenced by its token was refused');
      }
      if (signal.aborted) return;
      this.stats.runs++;
      if (error !== null) {
        this.stats.failures++;
        this.deps.log.warn('role duty failed', { role: this.spec.name, error });
      }
      await roleRecord(this.deps.db, this.spec.name, token, error).catch(() => undefined);
      if (this.spec.everyMs === undefined) return;
      await sleep(this.spec.everyMs, signal);
    } while (!signal.aborted);
  }

  /**
   * Stop: abort the duty, wait for it (at most `waitMs`: a duty that ignores
   * its signal must not hold the worker's stop), and release the lease so
   * another replica takes it at once. A duty still running then is left to
   * finish; its writes fenced by the token are refused from the release on.
   */
  async stop(waitMs = Infinity): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    await this.stepping;
    const token = this.token;
    if (token !== undefined) this.lose(token, 'the worker is stopping');
    if (this.duty) {
      let clear: (() => void) | undefined;
      const settled = await Promise.race([
        this.duty.then(() => true),
        new Promise<boolean>((resolve) => { clear = Number.isFinite(waitMs) ? longTimeout(() => resolve(false), waitMs) : undefined; }),
      ]);
      clear?.();
      if (!settled) this.deps.log.warn('role duty did not stop when asked; its lease is released', { role: this.spec.name, waitedMs: waitMs });
    }
    if (token !== undefined) await roleRelease(this.deps.db, this.spec.name, this.deps.holder, token).catch(() => undefined);
  }
}

/** Whether a duty's error is (or wraps, as its `cause`) a write its role's fence refused: TR003, however it reached the duty. */
export function fencedOut(error: unknown): boolean {
  for (let e = error, depth = 0; e !== null && e !== undefined && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    if (toTrellisError(e) instanceof LeaseLostError) return true;
  }
  return false;
}
