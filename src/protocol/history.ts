/** The history interface replay runs over: recorded calls in, checkpoints out. */

export const STEP_KINDS = ['step', 'now', 'random', 'uuid', 'side_effect', 'sleep', 'signal', 'child', 'race', 'value'] as const;
export type StepKind = (typeof STEP_KINDS)[number];

/**
 * running: attempt `attempts` started (no result yet); waiting: a timer,
 * signal or child call not yet resolved; retrying: attempt `attempts` failed,
 * another is due.
 */
export const STEP_STATES = ['running', 'waiting', 'completed', 'failed', 'retrying'] as const;
export type StepState = (typeof STEP_STATES)[number];

/** A recorded call of the run's current execution, as trellis.run_claim returns it. */
export interface StepRecord {
  seq: number;
  name: string;
  kind: StepKind;
  status: StepState;
  output: unknown;
  error: SerializedError | null;
  attempts: number;
  /**
   * The call's place in the order in which results were handed to the
   * workflow code (1, 2, … within the execution); null for a call whose
   * result was not delivered, or recorded before delivery numbers existed.
   */
  delivered?: number | null | undefined;
}

/** A signal delivered to the run and not yet consumed. */
export interface PendingSignal {
  id: number;
  name: string;
  payload: unknown;
  signal_id: string | null;
}

/** A finished child run (as claimed). */
export interface ChildOutcome {
  status: 'completed' | 'failed' | 'cancelled';
  output: unknown;
  error: SerializedError | null;
}

/** An error as stored in jsonb. */
export interface SerializedError {
  name: string;
  message: string;
  code?: string | undefined;
  stack?: string | undefined;
  step?: string | undefined;
  attempts?: number | undefined;
  details?: unknown;
}

/** A run as trellis.run_claim (or run_start_claimed) hands it to a worker: leased, with its history. */
export interface ClaimedRun {
  id: string;
  workflow: string;
  version: string;
  input: unknown;
  metadata: Record<string, unknown>;
  attempt: number;
  failures: number;
  lease_token: string;
  /** When the lease ends, where known (a start leased in this process); the worker's claim leaves it out. */
  lease_expires_at?: Date | undefined;
  history: StepRecord[] | null;
  execution: number;
  cancel_requested: boolean;
  pause_requested: boolean;
  signals: PendingSignal[] | null;
  children: Record<string, ChildOutcome> | null;
  /** trellis.now() at the claim. */
  now: Date;
  /** The run's deadline (runs.deadline_at), null when it has none. */
  deadline_at: Date | null;
  /** With cancel_requested: the cancellation's reason (its error's message), for the code's CancelledError. */
  cancel_reason?: string | null | undefined;
  /**
   * Set when the history or the children's ends were too large for
   * PostgreSQL to hand over as one value (over 256 MB): the claim returned a
   * marker instead (history and children are then null), and the worker
   * fails the run with PayloadTooLargeError.
   */
  oversized?: { what: 'history' | 'children'; detail: string } | undefined;
}

/**
 * A claimed row whose history or children came back as the engine's
 * {"too_large": …} marker (sql/200_runs.sql, _run_history): those fields
 * become null and `oversized` says which. Every other row is left as it is.
 */
export function markOversized(run: ClaimedRun): ClaimedRun {
  for (const what of ['history', 'children'] as const) {
    const value = run[what] as unknown;
    // Children are keyed by run id: no child is called too_large.
    if (value !== null && typeof value === 'object' && !Array.isArray(value) && typeof (value as { too_large?: unknown }).too_large === 'string') {
      run.oversized = { what, detail: String((value as { detail?: unknown }).detail ?? '') };
      run[what] = null;
    }
  }
  return run;
}
