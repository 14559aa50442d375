/** The batched, fenced write path: trellis.checkpoint_apply (sql/300_checkpoints.sql). */
import { type CheckpointOp, encodeOps } from '../protocol/checkpoint.ts';
import { type Queryable, queryRows } from './queryable.ts';

/** trellis.checkpoint_apply: returns `${run}:${token}` of every refused (stale) lease. */
export async function checkpointApply(db: Queryable, ops: readonly CheckpointOp[]): Promise<Set<string>> {
  const rows = await queryRows<{ run_id: string; token: string }>(db, 'select run_id, token from trellis.checkpoint_apply($1::jsonb)', [encodeOps(ops)], 'trellis_checkpoint_apply');
  return new Set(rows.map((r) => `${r.run_id}:${r.token}`));
}
