/**
 * The lifecycle of runs in the worker's log: started, completed, failed,
 * parked, cancelled, lease lost, each one line with the run id, workflow,
 * version, attempt and execution (and the step and error where one ended
 * the run). Successes at info, what an operator must look at at warn, so a
 * worker at its default level ('warn') still reports every failure. Inputs,
 * outputs and signal payloads are never logged; error messages are, cut to
 * 500 characters.
 */
import type { ClaimedRun } from '../protocol/history.ts';
import { LeaseLostError } from '../errors.ts';
import type { Outcome } from '../replay/replay.ts';
import type { SerializedError } from '../protocol/history.ts';
import type { LogFields, Logger } from '../protocol/logger.ts';

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

  private fields(run: ClaimedRun | undefined, id: string): LogFields {
    return run
      ? { runId: run.id, workflow: run.workflow, version: run.version, attempt: run.attempt, execution: run.execution }
      : { runId: id };
  }

  /** A claimed (or handed-off) run begins executing here. */
  started(run: ClaimedRun): void {
    this.log.info(this.fields(run, run.id), run.history?.length ? 'run resumed' : 'run started');
  }

  /** The execution of `run` ended with `outcome`, which was written (or could not be: abandoned). */
  ended(run: ClaimedRun | undefined, id: string, outcome: Outcome): void {
    const f = this.fields(run, id);
    switch (outcome.op) {
      case 'complete':
        return this.log.info(f, 'run completed');
      case 'fail':
        return this.log.warn({ ...f, ...errorFields(outcome.error) }, 'run failed');
      case 'cancelled':
        return this.log.info(f, 'run cancelled');
      case 'pause':
        // With an error: a step failed too often (the dead letter); without: a pause request.
        return outcome.error
          ? this.log.warn({ ...f, ...errorFields(outcome.error) }, 'run parked')
          : this.log.info(f, 'run paused');
      case 'release':
        return outcome.failure
          ? this.log.info({ ...f, delayMs: outcome.delay_ms, ...errorFields(outcome.error) }, 'run released for a retry')
          : this.log.debug({ ...f, delayMs: outcome.delay_ms }, 'run released');
      case 'wait':
        return this.log.debug({ ...f, ...(outcome.delay_ms !== null ? { delayMs: outcome.delay_ms } : {}) }, 'run waiting');
      case 'continue':
        return this.log.info(f, 'run continued as new');
      case 'abandoned':
        return outcome.reason instanceof LeaseLostError
          ? this.log.warn(f, 'run lease lost: another worker continues it')
          : this.log.info(f, 'run given back (worker stopping)');
    }
  }
}
