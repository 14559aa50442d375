/** What a worker writes when an execution ends: the outcome's end op, fenced. */
import type { CheckpointOp, Fence } from '../protocol/checkpoint.ts';
import type { Outcome } from '../replay/replay.ts';

/**
 * The op that ends this execution, or undefined when nothing may be written
 * (lease lost). An execution given up after a database fault is not handled
 * here: the worker gives it back with growing delays (`faultGiveBack`).
 */
export function outcomeOp(fence: Fence, outcome: Outcome, shuttingDown: boolean): CheckpointOp | undefined {
  // The fence's fields then the outcome's, as `{ ...fence, ...outcome }` would
  // give, without the object spread (~1.3 µs a run on Node 20).
  if (outcome.op !== 'abandoned') return Object.assign({ run: fence.run, token: fence.token, execution: fence.execution }, outcome);
  // Shutdown: give the run back so another replica continues at once.
  if (shuttingDown) return { ...fence, op: 'release', delay_ms: 0, failure: false };
  return undefined;
}
