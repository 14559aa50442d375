/** The durable waits of an execution (sleep, signal, child) as a race sees them, and the error of one that lost. */
import { IllegalTransitionError } from '../errors.ts';

/**
 * Awaiting a `sleep` or `waitForSignal` that lost a `ctx.race`: it was
 * disarmed (it consumed nothing) and will never complete. Wait again with a
 * new call instead. (A child that lost a race stays awaitable.)
 */
export class RaceLostError extends IllegalTransitionError {
  constructor(message: string) {
    super(message);
    this.name = 'RaceLostError';
  }
}

export type WaitKind = 'sleep' | 'signal' | 'child';
/** win: complete now; lose: disarmed; free: evaluate as if unclaimed; block: do not complete in this execution. */
export type Verdict = 'win' | 'lose' | 'free' | 'block';

/** A durable wait call of this execution, as `race` sees it. */
export interface Wait {
  readonly seq: number;
  readonly name: string;
  readonly kind: WaitKind;
  /** Evaluated yet (a race can claim only a wait that is not). */
  evaluated: boolean;
  /** Its promise has settled. */
  done: boolean;
  /** Set by a race that claimed it: offer readiness, get the verdict. */
  claim?: ((ready: boolean) => Promise<Verdict>) | undefined;
  /**
   * Its result is recorded in the history, or it is completing (it found its
   * signal, timer or child ready and its checkpoint is on the way) although
   * the code has not received it yet: a race counts it as settled (rank:
   * recorded ones by delivery number, then live ones in the order they began).
   */
  settling?: { recorded: boolean; rank: number } | undefined;
}

export function raceLost(seq: number, name: string): RaceLostError {
  return new RaceLostError(`wait #${seq} "${name}" lost a race and was disarmed; it never completes (wait again with a new call)`);
}

