/** The batched, fenced write path: trellis.checkpoint_apply (sql/300_checkpoints.sql). */
import type { SerializedError, StepCheckpoint } from '../replay/history.ts';
import { type Queryable, run } from './queryable.ts';

export type CheckpointOp =
  | ({ op: 'step'; run: string; token: string } & StepCheckpoint)
  | { op: 'complete'; run: string; token: string; output: string }
  | { op: 'fail'; run: string; token: string; error: SerializedError }
  | { op: 'release'; run: string; token: string; delay_ms: number; error?: SerializedError; failure: boolean };

/**
 * Build the JSON array for checkpoint_apply by hand: outputs are already JSON
 * text, so they are spliced in rather than parsed and re-serialised.
 */
export function encodeOps(ops: readonly CheckpointOp[]): string {
  const parts = ops.map((o) => {
    const { output, ...rest } = o as { output?: string } & Record<string, unknown>;
    const head = JSON.stringify(rest);
    return output === undefined ? head : `${head.slice(0, -1)},"output":${output}}`;
  });
  return `[${parts.join(',')}]`;
}

/** trellis.checkpoint_apply: returns `${run}:${token}` of every refused (stale) lease. */
export async function checkpointApply(db: Queryable, ops: readonly CheckpointOp[]): Promise<Set<string>> {
  const rows = await run<{ run_id: string; token: string }>(db, 'select run_id, token from trellis.checkpoint_apply($1::jsonb)', [encodeOps(ops)]);
  return new Set(rows.map((r) => `${r.run_id}:${r.token}`));
}
