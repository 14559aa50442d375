/**
 * Checkpoint ops: the one shape of checkpoint data from the replay to SQL.
 * Each is a JSON object exactly as `trellis.checkpoint_apply` reads it
 * (sql/300_checkpoints.sql, through the composite type trellis.checkpoint_op):
 * snake_case fields, `op` naming the kind. The replay writes the body of an
 * op (a `Checkpoint` while the execution runs, an end op when it ends); the
 * worker adds the run's `Fence` and sends it. Nothing is renamed or copied
 * on the way.
 */
import type { SerializedError, StepKind, StepState } from './history.ts';

/** Which lease an op is written under: the run, its lease token and its execution. */
export interface Fence {
  run: string;
  token: string;
  execution: number;
}

/** Record call `seq` of the execution (any durable call: step, timer, signal wait, race, …). */
export interface StepOp {
  op: 'step';
  seq: number;
  name: string;
  kind: StepKind;
  status: StepState;
  /** JSON text of the output (already size-checked). */
  output?: string | undefined;
  error?: SerializedError | undefined;
  attempts: number;
  ms: number;
  /** The signal this call consumed. */
  signal?: number | undefined;
  /** Delivery number of the result this checkpoint records (completed or failed calls handed to the code). */
  delivered?: number | undefined;
}

/** Start a child run and make call `seq` wait on it. */
export interface ChildOp {
  op: 'child';
  seq: number;
  name: string;
  child: string;
  workflow: string;
  version: string;
  /** JSON text of the child's input. */
  input: string;
  key?: string | undefined;
  queue?: string | undefined;
  close: 'cancel' | 'abandon';
  /** The child run's metadata (the trace context, when tracing is on). */
  metadata?: Record<string, unknown> | undefined;
  /** The child run's deadline (ISO) or its time limit (an interval), decision 0031. */
  deadline?: string | undefined;
  time_limit?: string | undefined;
}

/** What an execution records while it runs. */
export type Checkpoint = StepOp | ChildOp;

/** The op that ends an execution: the run's next state. */
export type EndOp =
  | { op: 'complete'; output: string }
  | { op: 'fail' | 'cancelled'; error: SerializedError }
  /**
   * Pending again after `delay_ms` (a retry: `failure` counts it as a failed
   * attempt). `begun: false`: the worker never executed the run it claimed,
   * so the claim's attempt is not counted.
   */
  | { op: 'release'; delay_ms: number; error?: SerializedError | undefined; failure: boolean; seen_cancel?: boolean | undefined; begun?: boolean | undefined }
  /**
   * Waiting until its earliest deadline (ISO, engine time; null: none; one
   * the engine's clock has passed makes the run due at once); `signal` is
   * the newest signal the execution saw.
   */
  | { op: 'wait'; deadline: string | null; signal: number; seen_cancel: boolean }
  /**
   * Parked; with `delay_ms` (a run its code parked, the definition's
   * resumeAfter), resumed by the trellis.resumes duty after it, while the run
   * was resumed so fewer than `max_resumes` times (the definition's maxResumes).
   */
  | { op: 'pause'; error?: SerializedError | undefined; seen_cancel?: boolean | undefined; delay_ms?: number | undefined; max_resumes?: number | undefined }
  /** Continue as new with `input` (JSON text). */
  | { op: 'continue'; input: string; keep: boolean };

/** An op as checkpoint_apply takes it. */
export type CheckpointOp = Fence & (Checkpoint | EndOp);

type FieldOf<T> = T extends unknown ? keyof T : never;

/**
 * Every field an op may carry: the attributes of the composite type
 * trellis.checkpoint_op that checkpoint_apply reads the JSON into
 * (test/sql/checkpoint-op-shape.test.ts compares the two).
 */
export const CHECKPOINT_OP_FIELDS = [
  'op', 'run', 'token', 'execution', 'seq', 'name', 'kind', 'status', 'output', 'error', 'attempts', 'ms', 'signal',
  'delivered', 'child', 'workflow', 'version', 'input', 'key', 'queue', 'close', 'metadata', 'delay_ms', 'failure',
  'seen_cancel', 'keep', 'begun', 'deadline', 'time_limit', 'max_resumes',
] as const satisfies readonly FieldOf<CheckpointOp>[];

// Compile-time: the list above names every field of every op type.
const listsEveryField: [Exclude<FieldOf<CheckpointOp>, (typeof CHECKPOINT_OP_FIELDS)[number]>] extends [never] ? true : false = true;
void listsEveryField;

/**
 * Where checkpoints go. `record` resolves once the checkpoint has committed
 * (rejects with LeaseLostError if the run is no longer held). The sink may
 * add the fence to the object it is given (it is not used afterwards).
 */
export interface CheckpointSink {
  record(checkpoint: Checkpoint): Promise<void>;
}

/**
 * The JSON array for checkpoint_apply. Built by hand only to splice
 * `output` and `input`, which already hold JSON text, rather than parse and
 * re-serialise them; every other field is JSON.stringify'd under its own
 * name, and undefined fields are left out.
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
