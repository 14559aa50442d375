/** Read models of runs and steps (camelCase views of trellis.runs / trellis.steps rows). */
import type { RunsTable, RunState, StepsTable } from '../db/tables.ts';

export interface Run {
  id: string;
  workflow: string;
  version: string;
  key: string | null;
  queue: string;
  priority: number;
  status: RunState;
  input: unknown;
  output: unknown;
  error: unknown;
  metadata: Record<string, unknown>;
  attempt: number;
  failures: number;
  /**
   * When the run is due: not before this (a `runAt`, a retry backoff), or
   * when a waiting run's earliest timer fires. `null` for a run waiting with
   * no timer (only a signal or a child wakes it).
   */
  runAt: Date | null;
  leaseOwner: string | null;
  leaseExpiresAt: Date | null;
  createdAt: Date;
  startedAt: Date | null;
  finishedAt: Date | null;
  /** When `client.scrub` removed its payloads (null: never). */
  scrubbedAt: Date | null;
  updatedAt: Date;
  /** 1, then +1 per continue-as-new. */
  execution: number;
  parentRunId: string | null;
  parentSeq: number | null;
  cancelRequestedAt: Date | null;
  pauseRequestedAt: Date | null;
}

export interface Step {
  runId: string;
  execution: number;
  seq: number;
  name: string;
  kind: string;
  status: string;
  output: unknown;
  error: unknown;
  attempts: number;
  startedAt: Date;
  finishedAt: Date;
}

type Row<T> = { [K in keyof T]: T[K] extends { __select__: infer S } ? S : T[K] };

export function toRun(r: Row<RunsTable>): Run {
  return {
    id: r.id,
    workflow: r.workflow,
    version: r.version,
    key: r.key,
    queue: r.queue,
    priority: r.priority,
    status: r.status,
    input: r.input,
    output: r.output,
    error: r.error,
    metadata: r.metadata,
    attempt: r.attempt,
    failures: r.failures,
    // pg reads the 'infinity' of a wait without a timer as the number Infinity.
    runAt: r.run_at instanceof Date ? r.run_at : null,
    leaseOwner: r.lease_owner,
    leaseExpiresAt: r.lease_expires_at as Date | null,
    createdAt: r.created_at as Date,
    startedAt: r.started_at as Date | null,
    finishedAt: r.finished_at as Date | null,
    scrubbedAt: (r.scrubbed_at ?? null) as Date | null,
    updatedAt: r.updated_at as Date,
    execution: r.execution,
    parentRunId: r.parent_run_id,
    parentSeq: r.parent_seq,
    cancelRequestedAt: r.cancel_requested_at as Date | null,
    pauseRequestedAt: r.pause_requested_at as Date | null,
  };
}

export function toStep(s: Row<StepsTable>): Step {
  return {
    runId: s.run_id,
    execution: s.execution,
    seq: s.seq,
    name: s.name,
    kind: s.kind,
    status: s.status,
    output: s.output,
    error: s.error,
    attempts: s.attempts as number,
    startedAt: s.started_at as Date,
    finishedAt: s.finished_at as Date,
  };
}
