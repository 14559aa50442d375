/** Read models of runs and steps (camelCase views of trellis.runs / trellis.steps rows). */
import type { Duration } from '../protocol/duration.ts';
import type { RunsTable, RunState, StepsTable } from '../db/tables.ts';

/**
 * A run as `client.get` and `client.list` return it: a camelCase view of a
 * `trellis.runs` row (docs/sql-api.md describes the columns).
 *
 * @example
 * const r = await client.get(runId);
 * if (r && r.status === 'waiting') console.log(`${r.workflow}@${r.version} waits until ${r.runAt?.toISOString() ?? 'a signal or child'}`);
 */
export interface Run {
  /** The run's id (a UUID). */
  id: string;
  /** The workflow's name. */
  workflow: string;
  /** The workflow version the run is pinned to. */
  version: string;
  /** The idempotency key it was started with, or null (also once a later start took it: see `formerKey`). */
  key: string | null;
  /**
   * The key a later start with `keyPolicy` 'reuse', 'replace' or 'supersede' took from
   * this finished run, or null.
   */
  formerKey: string | null;
  /** A paused run its code parked under the definition's `resumeAfter`: when it is resumed. Null otherwise. */
  resumeAt: Date | null;
  /** How many times it was resumed automatically (`resumeAfter`) since an operator last resumed or retried it; `maxResumes` caps it. */
  autoResumes: number;
  /** The queue it runs on. */
  queue: string;
  /** Higher runs are claimed first. */
  priority: number;
  /** pending, running, waiting, paused, completed, failed or cancelled. */
  status: RunState;
  /** The input (null once scrubbed). */
  input: unknown;
  /** The output of a completed run, else null. */
  output: unknown;
  /**
   * An error object `{name, message, code?, …}`: the final error of a failed
   * run, the cancellation (with its reason) of a cancelled one, the pause
   * reason or dead-lettered error of a paused one, the last failed attempt of
   * a run waiting to retry; else null.
   */
  error: unknown;
  /** The metadata it was started with (`ctx.metadata`). */
  metadata: Record<string, unknown>;
  /** How many times it has been claimed (a claim is one execution of the code). */
  attempt: number;
  /** Failed attempts of the whole workflow so far (workflow `retry`). */
  failures: number;
  /**
   * When the run is due: not before this (a `runAt`, a retry backoff), or
   * when a waiting run's earliest timer fires. `null` for a run waiting with
   * no timer (only a signal, a child or the end of a run it waits for
   * with `ctx.waitForRun` wakes it).
   */
  runAt: Date | null;
  /** The worker holding its lease while running, else null. */
  leaseOwner: string | null;
  /** When that lease expires, else null. */
  leaseExpiresAt: Date | null;
  /** When it was started (created). */
  createdAt: Date;
  /** When a worker first claimed it, else null. */
  startedAt: Date | null;
  /** When it completed, failed or was cancelled, else null. */
  finishedAt: Date | null;
  /** When `client.scrub` removed its payloads (null: never). */
  scrubbedAt: Date | null;
  /** When its row last changed. */
  updatedAt: Date;
  /** 1, then +1 per continue-as-new. */
  execution: number;
  /** The parent run of a child run, else null. */
  parentRunId: string | null;
  /** The call number in the parent that started it, else null. */
  parentSeq: number | null;
  /** When a cancellation was requested (it is delivered at the next call), else null. */
  cancelRequestedAt: Date | null;
  /** When a pause of the running run was requested, else null. */
  pauseRequestedAt: Date | null;
  /** The run's flow-control group in its queue (the start's `concurrencyKey`), else null. */
  concurrencyKey: string | null;
  /**
   * When the run is cancelled if it has not finished by then (the start's
   * `deadline` or `timeLimit`), else null.
   */
  deadline: Date | null;
  /**
   * The run this one was forked from (`client.fork`) and the original's
   * call it ran again from, else null.
   */
  forkedFrom: { runId: string; fromCall: number } | null;
}

/**
 * One recorded call of a run (`client.history`): a step, side effect,
 * recorded value, sleep, signal wait, child, or race.
 *
 * @example
 * const failed = (await client.history(runId)).filter((s) => s.status === 'failed');
 */
export interface Step {
  /** The run it belongs to. */
  runId: string;
  /** The execution (continue-as-new) it was made in. */
  execution: number;
  /** Its call number: calls are numbered 0, 1, … in the order the code makes them. */
  seq: number;
  /** The name given to the call (a step's name, a sleep's name, a signal's name, …). */
  name: string;
  /** step, side_effect, now, random, uuid, sleep, signal, child, race or value. */
  kind: string;
  /** running, waiting, retrying, completed or failed. */
  status: string;
  /**
   * Its result: a step's value, `{until}` of a sleep, `{timedOut, payload,
   * signalId}` of a signal wait, a child's output, `{key, lost}` of a race,
   * `{lost: true}` for a wait that lost a race, the value a `ctx.setValue` set.
   */
  output: unknown;
  /** The error of a failed call, or of the last failed attempt of a retrying one. */
  error: unknown;
  /** Attempts made (steps). */
  attempts: number;
  /** When the (last) attempt started. */
  startedAt: Date;
  /** When it was last recorded. */
  finishedAt: Date;
}

/** A value a run set with `ctx.setValue` (`client.value`, `client.values`). */
export interface RunValue<T = unknown> {
  /** The key it was set under. */
  key: string;
  /** The newest value set under the key. */
  value: T;
  /** When that value was set (committed), on the engine's clock. */
  setAt: Date;
}

/** A stream entry's cursor: `<execution>.<call>` (what trellis.run_stream returns and takes). */
export const STREAM_CURSOR = /^\d{1,9}\.\d{1,9}$/;

/**
 * One entry of a run's stream (`client.readStream`).
 *
 * @example
 * for await (const entry of client.readStream<{ page: number }>(run.id, 'progress')) console.log(entry.value.page, entry.cursor);
 */
export interface StreamEntry<T = unknown> {
  /** The value the run wrote with `ctx.writeStream`. */
  value: T;
  /** Where this entry is: pass it as `after` to read on from the next one (a reconnecting reader). */
  cursor: string;
  /** When the entry was written (committed), on the engine's clock. */
  writtenAt: Date;
}

/**
 * Options of `client.readStream`.
 *
 * @example
 * client.readStream(run.id, 'progress', { after: savedCursor, timeout: '30s' });
 */
export interface ReadStreamOptions {
  /** Start after this entry (a cursor an earlier read returned); default: from the first entry. */
  after?: string | undefined;
  /** How long to wait for each next entry before the iteration throws TimeoutError; default: no limit. */
  timeout?: Duration | undefined;
  /**
   * Stop reading when this aborts (the HTTP request of a server-sent-events
   * reader closed): a wait in progress ends at once and the iteration throws
   * the signal's reason. (Calling the iterator's `return()`, as `break` does,
   * ends it quietly, also while it waits.)
   */
  signal?: AbortSignal | undefined;
}

type Row<T> = { [K in keyof T]: T[K] extends { __select__: infer S } ? S : T[K] };

export function toRun(r: Row<RunsTable>): Run {
  return {
    id: r.id,
    workflow: r.workflow,
    version: r.version,
    key: r.key,
    formerKey: (r.former_key as string | null | undefined) ?? null,
    resumeAt: (r.resume_at ?? null) as Date | null,
    autoResumes: (r.auto_resumes as number | undefined) ?? 0,
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
    concurrencyKey: (r.concurrency_key as string | null | undefined) ?? null,
    deadline: (r.deadline_at ?? null) as Date | null,
    forkedFrom: r.forked_from ? { runId: r.forked_from, fromCall: r.forked_from_seq ?? 0 } : null,
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
