/**
 * The lifecycle of runs in the worker's log: started, completed, failed,
 * parked, cancelled, lease lost, each one line with the run id, workflow,
 * version, attempt and execution (and the step and error where one ended
 * the run). Successes at info, what an operator must look at at warn, so a
 * worker at its default level ('warn') still reports every failure. Inputs,
 * outputs and signal payloads are never logged; error messages are, cut to
 * 500 characters. A line the logger would drop (`isLevelEnabled`) is not built.
 */
import type { ClaimedRun } from '../protocol/history.ts';
import { LeaseLostError } from '../errors.ts';
import { isDatabaseFault } from '../protocol/faults.ts';
import { serializeError } from '../protocol/serialize.ts';
import type { Outcome } from '../replay/replay.ts';
import type { SerializedError } from '../protocol/history.ts';
import { levelEnabled, type LogFields, type Logger, type LogLevel } from '../protocol/logger.ts';

const MAX_MESSAGE = 500;

/** What a log line says about an error: its name, code, step and message (bounded); never its stack or details. */
function errorFields(error: SerializedError | undefined): LogFields {
  if (!error) return {};
  const message = error.message.length > MAX_MESSAGE ? `${error.message.slice(0, MAX_MESSAGE)}…` : error.message;
  return {
    ...(error.step !== undefined ? { step: error.step } : {}),
    error: { name: error.name, message, ...(error.code !== undefined ? { code: error.code } : {}) },
  };
}

/**
 * The worker's run lifecycle lines (one RunLog per worker, on its logger).
 *
 * @example
 * const runLog = new RunLog(log);
 * runLog.started(run);
 * runLog.ended(run, run.id, { kind: 'completed', output: '{}' });   // info 'run completed' { runId, workflow, … }
 */
export class RunLog {
  constructor(private readonly log: Logger) {}

  /** Write one line, building its fields only if the logger writes `level` (most runs' lines are dropped at 'warn'). */
  private line(level: LogLevel, message: string, run: ClaimedRun | undefined, id: string, extra?: () => LogFields): void {
    if (!levelEnabled(this.log, level)) return;
    const f: LogFields = run
      ? { runId: run.id, workflow: run.workflow, version: run.version, attempt: run.attempt, execution: run.execution }
      : { runId: id };
    this.log[level](extra ? { ...f, ...extra() } : f, message);
  }

  /** A claimed (or handed-off) run begins executing here. */
  started(run: ClaimedRun): void {
    this.line('info', run.history?.length ? 'run resumed' : 'run started', run, run.id);
  }

  /** The execution of `run` ended with `outcome`, which was written (or could not be: abandoned). */
  ended(run: ClaimedRun | undefined, id: string, outcome: Outcome): void {
    switch (outcome.op) {
      case 'complete':
        return this.line('info', 'run completed', run, id);
      case 'fail':
        return this.line('warn', 'run failed', run, id, () => errorFields(outcome.error));
      case 'cancelled':
        return this.line('info', 'run cancelled', run, id);
      case 'pause':
        // With an error: a step failed too often (the dead letter); without: a pause request.
        return outcome.error
          ? this.line('warn', 'run parked', run, id, () => errorFields(outcome.error))
          : this.line('info', 'run paused', run, id);
      case 'release':
        return outcome.failure
          ? this.line('info', 'run released for a retry', run, id, () => ({ delayMs: outcome.delay_ms, ...errorFields(outcome.error) }))
          : this.line('debug', 'run released', run, id, () => ({ delayMs: outcome.delay_ms }));
      case 'wait':
        return this.line('debug', 'run waiting', run, id, () => (outcome.deadline !== null ? { until: outcome.deadline } : {}));
      case 'continue':
        return this.line('info', 'run continued as new', run, id);
      case 'abandoned':
        if (outcome.reason instanceof LeaseLostError) return this.line('warn', 'run lease lost: another worker continues it', run, id);
        return isDatabaseFault(outcome.reason)
          ? this.line('warn', 'run given back after a database error', run, id, () => errorFields(serializeError(outcome.reason)))
          : this.line('info', 'run given back (worker stopping)', run, id);
    }
  }
}
