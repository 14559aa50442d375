/** The batched, fenced write path: trellis.checkpoint_apply (sql/300_checkpoints.sql). */
import type { ChildStart, SerializedError, StepCheckpoint } from '../protocol/history.ts';
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

/**
 * Build the JSON array for checkpoint_apply by hand: `output` and `input`
 * already hold JSON text and are spliced in rather than parsed and
 * re-serialised; undefined fields are left out.
 */
export function encodeOps(ops: readonly CheckpointOp[]): string {
  let out = '[';
  for (let i = 0; i < ops.length; i++) {
    const o = ops[i] as unknown as Record<string, unknown>;
    let body = '';
    for (const key in o) {
      const value = o[key];
      if (value === undefined) continue;
      let text: string;
      if (key === 'output' || key === 'input') {
        if (typeof value !== 'string') continue;
        text = value;
      } else {
        text = JSON.stringify(value);
      }
      body += `${body ? ',' : ''}"${key}":${text}`;
    }
    out += `${i ? ',' : ''}{${body}}`;
  }
  return `${out}]`;
}

/** trellis.checkpoint_apply: returns `${run}:${token}` of every refused (stale) lease. */
export async function checkpointApply(db: Queryable, ops: readonly CheckpointOp[]): Promise<Set<string>> {
  const rows = await run<{ run_id: string; token: string }>(db, 'select run_id, token from trellis.checkpoint_apply($1::jsonb)', [encodeOps(ops)], 'trellis_checkpoint_apply');
  return new Set(rows.map((r) => `${r.run_id}:${r.token}`));
}
