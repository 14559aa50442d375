/**
 * Recovery after a worker process died: for each run it held, how long
 * from the kill (server clock) until the run moved again (its next step
 * body began, or it ended).
 */
import type pg from 'pg';

export interface Kill {
  held: string[];
  at: Date;
}

/** Milliseconds from each kill to each held run's next progress, worst first. */
export async function recoveryTimes(pool: pg.Pool, kills: readonly Kill[]): Promise<number[]> {
  const out: number[] = [];
  for (const kill of kills) {
    if (!kill.held.length) continue;
    const { rows } = await pool.query<{ ms: number | null }>(`
      select extract(epoch from (least(
        (select min(e.at) from public.effects e where e.run_id = r.id and e.at > $2),
        r.finished_at) - $2)) * 1000 as ms
      from trellis.runs r where r.id = any($1::uuid[])`, [kill.held, kill.at]);
    // A run that ended in a transaction begun just before the mark counts as 0.
    for (const r of rows) out.push(r.ms === null ? Number.POSITIVE_INFINITY : Math.max(0, Math.round(Number(r.ms))));
  }
  return out.sort((a, b) => b - a);
}

/** The runs of `kill` that moved again `ms` or more after it (or never), with how long they took: for a failure message. */
export async function slowRuns(pool: pg.Pool, kill: Kill, ms: number): Promise<{ id: string; ms: number | null }[]> {
  const { rows } = await pool.query<{ id: string; ms: number | null }>(`
    select id, ms from (select r.id, extract(epoch from (least(
        (select min(e.at) from public.effects e where e.run_id = r.id and e.at > $2),
        r.finished_at) - $2)) * 1000 as ms
      from trellis.runs r where r.id = any($1::uuid[])) t
    where ms is null or ms >= $3 order by ms desc nulls first`, [kill.held, kill.at, ms]);
  return rows;
}
