/** What a worker writes when an execution ends: the outcome's end op, fenced. */
import type { CheckpointOp, Fence } from '../protocol/checkpoint.ts';
import type { Outcome } from '../replay/replay.ts';
import { isDatabaseFault } from '../protocol/faults.ts';

/** The op that ends this execution, or undefined when nothing may be written (lease lost). */
export function outcomeOp(fence: Fence, outcome: Outcome, shuttingDown: boolean): CheckpointOp | undefined {
  // The fence's fields then the outcome's, as `{ ...fence, ...outcome }` would
  // give, without the object spread (~1.3 µs a run on Node 20).
  if (outcome.op !== 'abandoned') return Object.assign({ run: fence.run, token: fence.token, execution: fence.execution }, outcome);
  // Shutdown: give the run back so another replica continues at once.
  if (shuttingDown) return { ...fence, op: 'release', delay_ms: 0, failure: false };
  // A database fault that retries could not get past (not the workflow's
  // error, so the run is not failed): give it back for a later attempt.
  if (isDatabaseFault(outcome.reason)) return { ...fence, op: 'release', delay_ms: 1000, failure: false };
  return undefined;
}
