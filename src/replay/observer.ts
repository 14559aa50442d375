/**
 * The seam through which metrics and tracing (src/observability) watch an
 * execution. Pure types: the replay never imports an observability package.
 * A worker with neither metrics nor tracing passes no observer, and every
 * hook below costs one undefined check.
 */
import type { StepKind } from '../protocol/history.ts';

/** A step attempt whose body runs in this execution (never a replayed one). */
export interface ObservedStep {
  seq: number;
  name: string;
  kind: StepKind;
  attempt: number;
}

/** One running step attempt, as an observer follows it. */
export interface StepObservation {
  /** Call the step body (inside the step's trace context). */
  run<T>(body: () => T): T;
  /** The attempt ended: `error` is undefined when it succeeded. */
  end(error: unknown): void;
}

export interface ExecutionObserver {
  /** Call the whole execution (inside the run's trace context). */
  run<T>(body: () => T): T;
  /** A step attempt is about to run its body. */
  step(step: ObservedStep): StepObservation;
  /** Metadata a child run started now begins with (its trace context), if any. */
  childMetadata(): Record<string, unknown> | undefined;
}
