/**
 * The engine's own duties, each run under a role by one worker at a time.
 * A duty is one entry of the list `engineDuties` returns: to add one (the
 * outbox's hook relay, say), add one line there.
 *
 * Not a duty: reclaiming runs whose lease expired. trellis.run_claim does
 * it on every claim (a running run whose lease_expires_at passed is made
 * pending again and claimed in the same statement), so every worker
 * reclaims as a side effect of claiming and no sweeper is needed.
 */
import type { Queryable } from '../../db/queryable.ts';
import { cancelOverdueRuns, runResumeDue } from '../../db/control.ts';
import { eventsPurgeDue, runPurgeDue } from '../../db/retention.ts';
import { ValidationError } from '../../errors.ts';
import type { CronSchedule } from '../../workflow/cron.ts';
import { type Duration, toMs } from '../../protocol/duration.ts';
import type { RoleFunction } from './role-lease.ts';
import { tickSchedules } from './schedule-ticker.ts';

/** A duty: a role name (trellis.*), how often it runs while held, and what it does. */
export interface Duty {
  name: string;
  everyMs: number;
  run: RoleFunction;
}

export interface EngineDutyOptions {
  db: Queryable;
  /** Retention purge (undefined: this worker never purges). */
  purge: { intervalMs: number; batch: number } | undefined;
  /** Schedule ticker (undefined: this worker never ticks). */
  schedules: { intervalMs: number; batch: number } | undefined;
  /** Run deadlines (undefined: this worker never cancels overdue runs). */
  deadlines: { intervalMs: number; batch: number } | undefined;
  /** Parked runs resumed after their definition's resumeAfter (undefined: this worker never resumes them). */
  resumes?: { intervalMs: number; batch: number } | undefined;
  onResumed?: ((count: number) => void) | undefined;
  onPurged: (count: number) => void;
  onFired: (count: number) => void;
  onOverdue: (count: number) => void;
}

/**
 * One look of the purge: runs past their retention, a batch per
 * transaction until one comes back short; then the outbox's events the
 * same way (run_purge_due takes one batch of them per call, so a backlog
 * of events drained at one batch per interval).
 */
async function purgeDue(db: Queryable, batch: number, signal: AbortSignal, onPurged: (n: number) => void): Promise<void> {
  while (!signal.aborted) {
    const n = await runPurgeDue(db, batch);
    if (n === null) return;
    if (n > 0) onPurged(n);
    if (n < batch) break;
  }
  while (!signal.aborted) {
    const n = await eventsPurgeDue(db, batch);
    if (n === null || n < batch) return;
  }
}

export function engineDuties(o: EngineDutyOptions): Duty[] {
  const crons = new Map<string, CronSchedule>();
  const { purge, schedules, deadlines, resumes } = o;
  const duties: (Duty | undefined)[] = [
    purge && { name: 'trellis.purge', everyMs: purge.intervalMs, run: ({ signal }) => purgeDue(o.db, purge.batch, signal, o.onPurged) },
    schedules && {
      name: 'trellis.schedules',
      everyMs: schedules.intervalMs,
      run: async ({ token, signal }) => o.onFired(await tickSchedules(o.db, token, schedules.batch, signal, crons)),
    },
    deadlines && {
      name: 'trellis.deadlines',
      everyMs: deadlines.intervalMs,
      // One overdue run per transaction (decision 0031); past `batch`, the rest wait for the next look.
      run: async ({ signal }) => o.onOverdue(await cancelOverdueRuns(o.db, deadlines.batch, signal)),
    },
    resumes && {
      name: 'trellis.resumes',
      everyMs: resumes.intervalMs,
      // Up to `batch` per look, in one transaction (decision 0038).
      run: async () => o.onResumed?.(await runResumeDue(o.db, resumes.batch)),
    },
  ];
  return duties.filter((d): d is Duty => d !== undefined);
}

/** The worker option `schedules`, checked (ValidationError naming it); undefined for `false`. */
export function resolveTicker(option: { interval?: Duration | undefined; batch?: number | undefined } | false | undefined): { intervalMs: number; batch: number } | undefined {
  if (option === false) return undefined;
  const intervalMs = toMs(option?.interval ?? 1000, 'schedules.interval');
  if (intervalMs < 10) throw new ValidationError('schedules.interval must be at least 10ms');
  const batch = option?.batch ?? 500;
  if (!Number.isInteger(batch) || batch < 1 || batch > 10_000) throw new ValidationError('schedules.batch must be an integer from 1 to 10000');
  return { intervalMs, batch };
}
