/** The batched, fenced write path: trellis.checkpoint_apply (sql/300_checkpoints.sql). */
import type { ChildStart, SerializedError, StepCheckpoint } from '../replay/history.ts';
import { type Queryable, run } from './queryable.ts';

interface Fence {
  run: string;
  token: string;
  execution: number;
}

export type CheckpointOp =
  | (Fence & { op: 'step' } & Omit<StepCheckpoint, 'type'>)
  | (Fence & { op: 'child' } & Omit<ChildStart, 'type'>)
  | (Fence & { op: 'complete'; output: string })
  | (Fence & { op: 'fail' | 'cancelled'; error: SerializedError })
  | (Fence & { op: 'release'; delay_ms: number; error?: SerializedError; failure: boolean; seen_cancel?: boolean })
  | (Fence & { op: 'wait'; delay_ms: number | null; signal: number; seen_cancel: boolean })
  | (Fence & { op: 'pause'; error?: SerializedError; seen_cancel?: boolean })
  | (Fence & { op: 'continue'; input: string; keep: boolean });

/** Fields holding JSON text, spliced in rather than parsed and re-serialised. */
const RAW = ['output', 'input'] as const;

/** Build the JSON array for checkpoint_apply by hand. */
export function encodeOps(ops: readonly CheckpointOp[]): string {
  const parts = ops.map((o) => {
    const rest: Record<string, unknown> = { ...o };
    const raw: string[] = [];
    for (const field of RAW) {
      const text = rest[field];
      delete rest[field];
      if (typeof text === 'string') raw.push(`"${field}":${text}`);
    }
    const head = JSON.stringify(rest);
    return raw.length ? `${head.slice(0, -1)},${raw.join(',')}}` : head;
  });
  return `[${parts.join(',')}]`;
}

/** trellis.checkpoint_apply: returns `${run}:${token}` of every refused (stale) lease. */
export async function checkpointApply(db: Queryable, ops: readonly CheckpointOp[]): Promise<Set<string>> {
  const rows = await run<{ run_id: string; token: string }>(db, 'select run_id, token from trellis.checkpoint_apply($1::jsonb)', [encodeOps(ops)]);
  return new Set(rows.map((r) => `${r.run_id}:${r.token}`));
}
