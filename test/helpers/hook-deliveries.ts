/**
 * Hook deliveries made with the engine's own SQL, for tests of the tools that
 * show and retry them: runs of a version declaring onComplete, completed (one
 * pending delivery each), and one delivery failed for good (parked).
 */
import type pg from 'pg';

/** Register `workflow` (version 1, onComplete, its own queue), start a run per key and complete them all. */
export async function completedHookedRuns(pool: pg.Pool, workflow: string, keys: readonly string[]): Promise<string[]> {
  const queue = `${workflow}-q`;
  await pool.query('select trellis.workflow_register($1)', [JSON.stringify([{ name: workflow, version: '1', queue, hooks: ['onComplete'] }])]);
  const ids: string[] = [];
  for (const key of keys) ids.push((await pool.query(`select trellis.run_start($1, '{}', $2) as id`, [workflow, JSON.stringify({ key })])).rows[0].id);
  const { rows: held } = await pool.query(
    `select id, lease_token, execution from trellis.run_claim('test', array[$1], array[$2], '{1}', 100, '30 seconds')`, [queue, workflow]);
  await pool.query('select trellis.checkpoint_apply($1)', [JSON.stringify(held.map((r) => (
    { op: 'complete', run: r.id, token: r.lease_token, execution: r.execution, output: 1 })))]);
  return ids;
}

/** Claim one delivery of `workflow` and fail it for good with `message`; its id. */
export async function parkOne(pool: pg.Pool, workflow: string, message: string): Promise<string> {
  const { rows: [d] } = await pool.query(`select id::text, attempts from trellis.hook_claim('test', array[$1], '{1}', 1, '30 seconds')`, [workflow]);
  await pool.query(`select trellis.hook_failed($1, 'test', $2, $3::jsonb, null)`, [d.id, d.attempts, JSON.stringify({ message })]);
  return d.id as string;
}
