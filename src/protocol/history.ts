/** The history interface replay runs over: recorded calls in, checkpoints out. */

export const STEP_KINDS = ['step', 'now', 'random', 'uuid', 'side_effect', 'sleep', 'signal', 'child', 'race', 'value', 'patch', 'stream', 'metadata'] as const;
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
   * Set when the history was too large for PostgreSQL to hand over as one
   * value (over 256 MB): the claim returned a single call of kind
   * `too_large` instead (history is then null), and the worker fails the
   * run with PayloadTooLargeError.
   */
  oversized?: { detail: string } | undefined;
}

/**
 * A claimed row whose history came back as the engine's one call of kind
 * too_large (sql/200_runs.sql, _run_history): history becomes null and
 * `oversized` says why. Every other row is left as it is.
 */
export function markOversized(run: ClaimedRun): ClaimedRun {
  const first = run.history?.length === 1 ? (run.history[0] as StepRecord & { too_large?: unknown }) : undefined;
  if (first?.too_large === 'history' && (first.kind as string) === 'too_large') {
    run.oversized = { detail: String((first.error as { message?: unknown } | null)?.message ?? '') };
    run.history = null;
  }
  return run;
}
