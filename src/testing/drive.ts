/**
 * Driving a run to its end under the virtual clock (`env.drive`,
 * `env.runToEnd`). Each round reads the run and every run below it (its
 * children, their children, …, and the runs they wait for with
 * `ctx.waitForRun`) in one statement and, when none of them can
 * move without time passing, advances the clock to the earliest timer among
 * them in that same statement. Otherwise it waits for progress: woken by the
 * engine's NOTIFYs, with a short poll for the changes that send none (a run
 * parking in `waiting`).
 */
import { cancelOverdueRuns, runResumeDue } from '../db/control.ts';
import { PgClient, type Pool } from '../db/pg.ts';
import { toQueryable } from '../db/queryable.ts';

/** How often a round is repeated when no notification arrives (ms). */
const POLL_MS = 15;

export interface DriveRound {
  /** The run's status, or undefined if it does not exist. */
  status: string | undefined;
  /** Nothing in the run's tree is running or due: only time (or outside help) moves it. */
  idle: boolean;
  /** A run of the tree is past its deadline and not yet cancelled (decision 0031). */
  overdue: boolean;
  /** A run of the tree is parked by its code and its resume_at has passed (decision 0038). */
  resumable: boolean;
  /** The run is paused to be resumed at a time (its code parked it under resumeAfter), not by an operator. */
  resumes: boolean;
  /** The earliest timer (or run deadline) of the tree in the future, or null if none. */
  nextAt: Date | null;
  /** The engine time after this round's advance, if it advanced the clock. */
  advancedTo: Date | null;
}

/*
 * The run's tree: the run and its descendants along parent_run_id, and the
 * runs any of them waits for with ctx.waitForRun (trellis.run_watches,
 * decision 0039) with theirs. \`union\`, not \`union all\`: runs waiting for
 * each other make a cycle, which it ends.
 */
const TREE = `
with recursive tree as (
  select id from trellis.runs where id = $1
  union
  select x.id from tree t cross join lateral (
    select r.id from trellis.runs r where r.parent_run_id = t.id
    union all
    select w.run_id from trellis.run_watches w where w.waiter_id = t.id) x
), live as (
  select r.* from tree join trellis.runs r using (id)
   where r.status not in ('completed', 'failed', 'cancelled')
)`;

/*
 * One statement, so the decision to advance and the advance see the same
 * snapshot: the clock jumps only if, in that snapshot, nothing of the tree
 * is running or due, and the run itself is neither finished nor paused.
 */
const ROUND = `${TREE}, s as (
  select (select status from trellis.runs where id = $1) as status,
         not exists (select 1 from live
                      where status = 'running'
                         or (status in ('pending', 'waiting') and run_at <= trellis.now())) as idle,
         exists (select 1 from live where deadline_at <= trellis.now() and cancel_requested_at is null) as overdue,
         exists (select 1 from live where status = 'paused' and resume_at <= trellis.now()) as resumable,
         (select resume_at is not null from trellis.runs where id = $1 and status = 'paused') as resumes,
         (select least(pg_catalog.min(run_at) filter (where status in ('pending', 'waiting') and run_at > trellis.now() and run_at < 'infinity'),
                       pg_catalog.min(deadline_at) filter (where cancel_requested_at is null and deadline_at > trellis.now()),
                       pg_catalog.min(resume_at) filter (where status = 'paused' and resume_at > trellis.now()))
            from live) as next_at
)
select status, idle, overdue, resumable, coalesce(resumes, false) as resumes, next_at,
       case when idle and not overdue and not resumable and (status in ('pending', 'waiting') or resumes) and next_at is not null
            then trellis.clock_advance(next_at - trellis.now()) end as advanced_to
  from s`;

const DESCRIBE = `${TREE}
select id, workflow, status, queue, lease_owner,
       case when run_at = 'infinity' then null else run_at end as run_at,
       run_at <= trellis.now() as due
  from live order by (id = $1) desc, created_at, id`;

/** Read the run's tree and advance the clock if only time can move it. */
export async function driveRound(pool: Pool, runId: string): Promise<DriveRound> {
  const { rows } = await pool.query<{
    status: string | null; idle: boolean; overdue: boolean; resumable: boolean; resumes: boolean; next_at: Date | null; advanced_to: Date | null;
  }>(ROUND, [runId]);
  const row = rows[0];
  return {
    status: row?.status ?? undefined,
    idle: row?.idle ?? false,
    overdue: row?.overdue ?? false,
    resumable: row?.resumable ?? false,
    resumes: row?.resumes ?? false,
    nextAt: row?.next_at ?? null,
    advancedTo: row?.advanced_to ?? null,
  };
}

/**
 * Cancel every overdue run (decision 0031) now, as the deadlines duty of a
 * worker would within its interval: the test kit does not wait for it.
 */
export async function cancelOverdue(pool: Pool): Promise<void> {
  await cancelOverdueRuns(toQueryable(pool), 10_000);
}

/**
 * Resume every parked run whose resume_at has passed (decision 0038) now, as
 * the resumes duty of a worker would within its interval.
 */
export async function resumeDue(pool: Pool): Promise<void> {
  while ((await runResumeDue(toQueryable(pool), 10_000)) === 10_000);
}

/** The unfinished runs of the tree, one per line, for error messages. */
export async function describeTree(pool: Pool, runId: string): Promise<string> {
  const { rows } = await pool.query<{
    id: string; workflow: string; status: string; queue: string; lease_owner: string | null; run_at: Date | null; due: boolean;
  }>(DESCRIBE, [runId]);
  return rows.map((r) => {
    const parts = [`  ${r.id === runId ? 'run' : 'below or awaited'} ${r.id} (${r.workflow}, queue ${r.queue}): ${r.status}`];
    if (r.status === 'running') parts.push(`held by ${r.lease_owner ?? 'nobody'}`);
    else if (r.status === 'pending' || r.status === 'waiting') {
      parts.push(r.run_at ? `${r.due ? 'due since' : 'until'} ${r.run_at.toISOString()}` : 'with no timer');
    }
    return parts.join(', ');
  }).join('\n');
}

/**
 * A LISTEN connection on the channels that mean "something moved", shared by
 * every drive of one env. `next(ms)` resolves on the next notification or
 * after `ms`, whichever is first. Without a connection it is a plain timer.
 */
export class Wakeups {
  private client: Promise<PgClient | undefined> | undefined;
  private readonly waiters = new Set<() => void>();

  constructor(private readonly url: string) {}

  private connect(): Promise<PgClient | undefined> {
    this.client ??= (async () => {
      const client = new PgClient({ connectionString: this.url, application_name: 'trellis-test-drive' });
      client.on('error', () => undefined);
      client.on('notification', () => {
        for (const wake of [...this.waiters]) wake();
      });
      try {
        await client.connect();
        await client.query('listen "trellis:run_ready"; listen "trellis:run_finished"');
        // run_finished is sent only while a session watches (decision 0029). Not
        // awaited: it may wait for a transaction that ended runs unwatched, and
        // the drive polls meanwhile.
        client.query('select trellis.run_finished_watch()').catch(() => undefined);
        return client;
      } catch {
        await client.end().catch(() => undefined);
        return undefined; // polling alone still works
      }
    })();
    return this.client;
  }

  async next(ms = POLL_MS): Promise<void> {
    await this.connect();
    await new Promise<void>((resolve) => {
      const wake = () => {
        clearTimeout(timer);
        this.waiters.delete(wake);
        resolve();
      };
      const timer = setTimeout(wake, Math.max(0, Math.min(ms, POLL_MS)));
      this.waiters.add(wake);
    });
  }

  async close(): Promise<void> {
    for (const wake of [...this.waiters]) wake();
    const client = await this.client?.catch(() => undefined);
    this.client = undefined;
    await client?.end().catch(() => undefined);
  }
}
