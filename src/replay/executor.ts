/**
 * Starting the replay of one execution: the worker hands in the recorded
 * calls of the run's current execution, its pending signals and finished
 * children, and a checkpoint sink; it gets back what the run wants next
 * (an end op: complete, fail, wait, release, pause, cancelled, continue; or
 * abandoned). Pure: no pg. See replay.ts for the state and context.ts /
 * attempt.ts for the `ctx.*` calls.
 */
import { buildContext } from './context.ts';
import { type ExecuteOptions, type Outcome, Replay } from './replay.ts';


/** A running execution: await `done`; the worker may request cancel or pause meanwhile. */
export interface Execution {
  /**
   * What the worker should write next. An ending outcome may arrive before
   * the execution's last checkpoints have committed; write it after them.
   */
  readonly done: Promise<Outcome>;
  /**
   * Resolves once every checkpoint of the execution has settled: with the
   * outcome a failed checkpoint forced (failed or abandoned), else undefined.
   */
  settle(): Promise<Outcome | undefined>;
  /**
   * The checkpoint write of this execution that failed, and the outcome it
   * forced (a run failed by the engine's refusal of a step's record, or
   * given back after a database fault), if that is what ended it; the
   * worker writes that outcome although the committer refused the
   * execution's earlier ops.
   */
  refusal(): { error: unknown; outcome: Outcome } | undefined;
  requestCancel(reason?: string): void;
  requestPause(): void;
  /** How many durable calls the code has made so far (recorded ones replayed, and new ones). */
  calls(): number;
}

/** Execute (or resume) a run; resolves with what the worker should write next. */
export function execute(options: ExecuteOptions): Promise<Outcome> {
  return startExecution(options).done;
}

export function startExecution(options: ExecuteOptions): Execution {
  const run = new Replay(options);
  const go = () => run.run(buildContext(run));
  const done = options.observer ? options.observer.run(go) : go();
  return {
    done,
    settle: async () => {
      const outcome = await done;
      await run.settleWrites();
      return run.halted && run.halted !== outcome ? run.halted : undefined;
    },
    refusal: () => run.refusal,
    requestCancel: (r) => run.requestCancel(r),
    requestPause: () => run.requestPause(),
    calls: () => run.seq,
  };
}

