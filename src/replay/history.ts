/** The history interface replay runs over: recorded steps in, checkpoints out. */

export const STEP_KINDS = ['step', 'now', 'random', 'uuid', 'side_effect'] as const;
export type StepKind = (typeof STEP_KINDS)[number];

/** running: attempt `attempts` started (no result yet); retrying: attempt `attempts` failed, another is due. */
export const STEP_STATES = ['running', 'completed', 'failed', 'retrying'] as const;
export type StepState = (typeof STEP_STATES)[number];

/** A recorded step, as trellis.run_claim returns it. */
export interface StepRecord {
  seq: number;
  name: string;
  kind: StepKind;
  status: StepState;
  output: unknown;
  error: SerializedError | null;
  attempts: number;
}

/** An error as stored in jsonb. */
export interface SerializedError {
  name: string;
  message: string;
  code?: string;
  stack?: string;
  step?: string;
  attempts?: number;
  details?: unknown;
}

/** A step checkpoint to write (fenced by the worker with the run's token). */
export interface StepCheckpoint {
  seq: number;
  name: string;
  kind: StepKind;
  status: StepState;
  /** JSON text of the output (already size-checked). */
  output?: string;
  error?: SerializedError;
  attempts: number;
  ms: number;
}

/**
 * Where checkpoints go. `record` resolves once the checkpoint has committed
 * (rejects with LeaseLostError if the run is no longer held).
 */
export interface CheckpointSink {
  record(checkpoint: StepCheckpoint): Promise<void>;
}
