/** What a worker writes when an execution ends: one checkpoint op per outcome. */
import type { CheckpointOp } from '../db/checkpoints.ts';
import type { Outcome } from '../replay/executor.ts';
import { DatabaseError } from '../errors.ts';

export interface Fence {
  run: string;
  token: string;
  execution: number;
}

/** The op that ends this execution, or undefined when nothing may be written (lease lost). */
export function outcomeOp(fence: Fence, outcome: Outcome, shuttingDown: boolean): CheckpointOp | undefined {
  switch (outcome.kind) {
    case 'completed':
      return { ...fence, op: 'complete', output: outcome.output };
    case 'failed':
      return { ...fence, op: 'fail', error: outcome.error };
    case 'cancelled':
      return { ...fence, op: 'cancelled', error: outcome.error };
    case 'release':
      return { ...fence, op: 'release', delay_ms: outcome.delayMs, error: outcome.error, failure: outcome.failure, seen_cancel: outcome.seenCancel };
    case 'wait':
      return { ...fence, op: 'wait', delay_ms: outcome.delayMs, signal: outcome.signal, seen_cancel: outcome.seenCancel };
    case 'pause':
      return { ...fence, op: 'pause', error: outcome.error, seen_cancel: outcome.seenCancel };
    case 'continue':
      return { ...fence, op: 'continue', input: outcome.input, keep: outcome.keep };
    case 'abandoned':
      // Shutdown: give the run back so another replica continues at once.
      if (shuttingDown) return { ...fence, op: 'release', delay_ms: 0, failure: false };
      // A database fault that retries could not get past (not the workflow's
      // error, so the run is not failed): give it back for a later attempt.
      if (outcome.reason instanceof DatabaseError) return { ...fence, op: 'release', delay_ms: 1000, failure: false };
      return undefined;
  }
}
