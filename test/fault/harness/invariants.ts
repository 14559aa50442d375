/**
 * The invariant checker of the fault harness: reads trellis.runs,
 * trellis.steps, trellis.signals and the effects ledger after a scenario and
 * counts every broken promise. All times compared are the server's
 * (clock_timestamp() in the ledger, trellis.now() in the engine), so a
 * worker's own clock plays no part.
 */
import assert from 'node:assert/strict';
import type pg from 'pg';

export interface InvariantOptions {
  /** Workflows whose runs may end failed (poison, changed code). */
  mayFail?: readonly string[] | undefined;
  /** Workflows whose runs may end paused (a dead letter). */
  mayPause?: readonly string[] | undefined;
  /** No process died: every (run, step) body must have run exactly once. */
  exactlyOnce?: boolean | undefined;
}

export interface Report {
  runs: number;
  /** Runs not completed, failed, cancelled (or paused where allowed). */
  notEnded: number;
  /** Runs failed (or paused) whose workflow may not. */
  failedWrongly: number;
  /** fh-steps runs whose output is not n + 3. */
  wrongOutput: number;
  /**
   * Step bodies that began after that step's completion committed (a completed
   * step run again), by the earliest time each can have begun (`at_earliest`).
   */
  completedStepsRerun: number;
  /** (run, step) pairs whose body ran more than once (allowed after a crash before the checkpoint). */
  bodiesRunAgain: number;
  /** With exactlyOnce: (run, step) pairs of completed steps not in the ledger exactly once. */
  notExactlyOnce: number;
  /**
   * Stale writes accepted: a completed step (whose output names the pid that
   * ran it) written by a process although another execution of that step
   * began after this process's and before the write committed (that one
   * held the lease then, so this process's lease was gone).
   */
  staleWrites: number;
  /** fh-timer runs whose step after the sleep began before the sleep was over. */
  timersEarly: number;
  /** fh-timer runs whose step after the sleep ran again after it completed. */
  timersFiredTwice: number;
  /** fh-signal: a signal row consumed by two waits, or a completed run with repeated payloads. */
  signalsConsumedTwice: number;
  /** fh-signal: runs not completed, or signals sent and never consumed on a completed run. */
  signalsLost: number;
}

export async function checkInvariants(pool: pg.Pool, options: InvariantOptions = {}): Promise<Report> {
  const mayFail = [...(options.mayFail ?? [])];
  const mayPause = [...(options.mayPause ?? [])];
  const one = async (sql: string, params: unknown[] = []): Promise<number> =>
    (await pool.query<{ n: number }>(sql, params)).rows[0]!.n;
  const completedSteps = `select s.run_id, s.name, s.finished_at from trellis.steps s
    where s.kind = 'step' and s.status = 'completed'`;
  return {
    runs: await one('select count(*)::int as n from trellis.runs'),
    notEnded: await one(`select count(*)::int as n from trellis.runs
      where status in ('pending', 'running', 'waiting') or (status = 'paused' and not workflow = any($1))`, [mayPause]),
    failedWrongly: await one(`select count(*)::int as n from trellis.runs
      where (status = 'failed' and not workflow = any($1)) or (status = 'paused' and not workflow = any($2))`, [mayFail, mayPause]),
    wrongOutput: await one(`select count(*)::int as n from trellis.runs where workflow = 'fh-steps' and status = 'completed'
      and (output->>'v')::int is distinct from (input->>'n')::int + 3`),
    completedStepsRerun: await one(`select count(*)::int as n from public.effects e
      join (${completedSteps}) s on s.run_id = e.run_id and s.name = e.step where coalesce(e.at_earliest, e.at) > s.finished_at`),
    bodiesRunAgain: await one(`select count(*)::int as n from (select 1 from public.effects
      group by run_id, step having count(*) > 1) t`),
    notExactlyOnce: options.exactlyOnce ? await one(`select count(*)::int as n from (${completedSteps}) s
      where (select count(*) from public.effects e where e.run_id = s.run_id and e.step = s.name) <> 1`) : 0,
    staleWrites: await one(`select count(*)::int as n from trellis.steps s
      where s.kind = 'step' and s.status = 'completed' and s.output ? 'pid'
        and (s.output->>'pid')::int <> (select e.pid from public.effects e where e.run_id = s.run_id and e.step = s.name
                                         and e.at < s.finished_at order by e.at desc limit 1)`),
    timersEarly: await one(`select count(*)::int as n from public.effects a join public.effects b
      on b.run_id = a.run_id and b.step = 'before' and b.workflow = 'fh-timer'
      where a.workflow = 'fh-timer' and a.step = 'after'
        and a.at < b.at + make_interval(secs => (b.info->>'ms')::numeric / 1000)`),
    timersFiredTwice: await one(`select count(distinct e.run_id)::int as n from public.effects e
      join (${completedSteps}) s on s.run_id = e.run_id and s.name = e.step
      where e.workflow = 'fh-timer' and e.step = 'after' and e.at > s.finished_at`),
    signalsConsumedTwice: await one(`select count(*)::int as n from trellis.runs r where r.workflow = 'fh-signal' and (
        exists (select 1 from trellis.signals g where g.run_id = r.id and g.consumed_seq is not null
                group by g.consumed_seq having count(*) > 1)
        or (r.status = 'completed' and (select count(distinct x) from jsonb_array_elements(r.output->'got') x)
                                      <> jsonb_array_length(r.output->'got')))`),
    signalsLost: await one(`select count(*)::int as n from trellis.runs r where r.workflow = 'fh-signal' and (
        r.status <> 'completed'
        or exists (select 1 from trellis.signals g where g.run_id = r.id and g.consumed_at is null))`),
  };
}

/** Assert that a report breaks no promise (runs > 0, every count 0 but bodiesRunAgain). */
export function assertClean(report: Report, label: string): void {
  const { runs, bodiesRunAgain, ...broken } = report;
  assert.ok(runs > 0, `${label}: no runs`);
  const bad = Object.entries(broken).filter(([, n]) => n !== 0);
  assert.deepEqual(Object.fromEntries(bad), {}, `${label}: invariants broken: ${JSON.stringify(report)}`);
}
