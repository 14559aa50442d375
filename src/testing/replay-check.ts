/**
 * `checkReplay`: replay the recorded histories of runs against workflow
 * code (new code, before it is deployed under the same version) and report
 * which runs it would break. Nothing is written and no step body runs: each
 * execution stops at the first call whose result its history does not hold
 * (Replay's replayOnly mode).
 */
import { isDeepStrictEqual } from 'node:util';
import { ConfigurationError, ValidationError } from '../errors.ts';
import { toQueryable, type Executor } from '../db/queryable.ts';
import type { StepRecord } from '../protocol/history.ts';
import { RUN_STATES } from '../db/tables.ts';
import { silentLogger } from '../protocol/logger.ts';
import { startExecution } from '../replay/executor.ts';
import { END_OF_HISTORY, type Outcome } from '../replay/replay.ts';
import { RunAbort } from '../replay/run-abort.ts';
import type { WorkflowDefinition } from '../workflow/define.ts';

/**
 * Which runs `checkReplay` replays.
 *
 * @example
 * const checked = await checkReplay(pool, order, { statuses: ['waiting', 'paused'], limit: 500 });
 * console.log(checked.length, 'runs checked');
 */
export interface CheckReplayOptions {
  /**
   * Runs pinned to this version (default: the definition's own, the runs a
   * deploy of this code under its version would go on with). Another
   * version checks its runs against this code, as before a fork onto it.
   */
  version?: string | undefined;
  /** Only runs in these states (default: the unfinished ones, which new code would go on with: pending, running, waiting, paused). */
  statuses?: readonly ('pending' | 'running' | 'waiting' | 'paused' | 'completed' | 'failed' | 'cancelled')[] | undefined;
  /** These runs only (ids); the other filters still apply. */
  runs?: readonly string[] | undefined;
  /** At most this many runs, the newest first (default 1000, at most 100,000). */
  limit?: number | undefined;
}

/**
 * One run's replay against the code.
 *
 * @example
 * for (const r of (await checkReplay(pool, order)).filter((r) => !r.ok)) console.error(`${r.runId}: ${r.problem}`);
 */
export interface ReplayCheck {
  runId: string;
  version: string;
  /** The run's status when it was read. */
  status: string;
  /** How many recorded calls the code made again before it stopped. */
  replayed: number;
  /** The code made the recorded calls in order (and, for a finished run, ended as the run did). */
  ok: boolean;
  /** Why not, when not ok. */
  problem?: string | undefined;
}

const UNFINISHED = ['pending', 'running', 'waiting', 'paused'] as const;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

interface RunRow {
  id: string;
  version: string;
  status: string;
  input: unknown;
  output: unknown;
  metadata: Record<string, unknown> | null;
  attempt: number;
  execution: number;
  deadline_at: Date | null;
  history: StepRecord[];
}

/**
 * Replay the histories of runs of `workflow` (its name and, unless
 * `version` says another, its version) against its code, as a new deploy of that code
 * would, and report per run whether the code makes the recorded calls in
 * the same order. Run it in CI against a copy of production's
 * `trellis.runs` and `trellis.steps`, or against production with a
 * `trellis_reader` login: it only reads.
 *
 * Nothing is written and no step body runs: each run's current execution is
 * replayed up to the first call whose result its history does not hold.
 * A run fails the check when the code asks for another call than the
 * history holds (the `NonDeterminismError` the run would stop with), when
 * it returns with recorded calls left over, awaits something that is not a
 * `ctx` call, or no longer accepts the run's input; a finished run also
 * when the code ends it differently (another output, or failing where it
 * completed). The workflow's in-process interceptors run as in a replay.
 *
 * @example
 * // import { checkReplay } from 'trellis/testing';
 * const checked = await checkReplay(pool, order); // the new code of order's version
 * const broken = checked.filter((r) => !r.ok);
 * if (broken.length) throw new Error(`${broken.length} running runs would fail: ${broken[0]?.problem}`);
 */
export async function checkReplay(db: Executor, workflow: WorkflowDefinition, options: CheckReplayOptions = {}): Promise<ReplayCheck[]> {
  if (typeof workflow !== 'object' || workflow === null || typeof workflow.fn !== 'function') {
    throw new ValidationError('checkReplay needs a workflow definition (defineWorkflow)');
  }
  const limit = options.limit ?? 1000;
  if (!Number.isInteger(limit) || limit < 1 || limit > 100_000) throw new ValidationError('checkReplay limit must be a whole number from 1 to 100,000');
  const statuses = options.statuses ?? UNFINISHED;
  if (!Array.isArray(statuses) || statuses.some((x) => !(RUN_STATES as readonly unknown[]).includes(x))) {
    throw new ValidationError(`checkReplay statuses must be an array of ${RUN_STATES.join(', ')}`);
  }
  if (options.runs !== undefined && (!Array.isArray(options.runs) || options.runs.some((id) => typeof id !== 'string' || !UUID.test(id)))) {
    throw new ValidationError('checkReplay runs must be an array of run ids (UUIDs)');
  }
  const { rows } = await toQueryable(db).query<RunRow>(
    `select r.id, r.version, r.status, r.input, r.output, r.metadata, r.attempt, r.execution, r.deadline_at,
            coalesce((select pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object('seq', s.seq, 'name', s.name, 'kind', s.kind, 'status', s.status,
                                                          'output', s.output, 'error', s.error, 'attempts', s.attempts,
                                                          'delivered', s.delivered) order by s.seq)
                        from trellis.steps s
                       where s.bucket = r.bucket and s.run_id = r.id and s.execution = r.execution), '[]'::jsonb) as history
       from trellis.runs r
      where r.workflow = $1 and r.version = $2 and r.status = any ($3::text[])
        and ($4::uuid[] is null or r.id = any ($4::uuid[]))
      order by r.created_at desc
      limit $5`,
    [workflow.name, options.version ?? workflow.version, [...statuses], options.runs ? [...options.runs] : null, limit],
  );
  const report: ReplayCheck[] = [];
  for (const row of rows) report.push(await checkRun(workflow, row));
  return report;
}

async function checkRun(workflow: WorkflowDefinition, row: RunRow): Promise<ReplayCheck> {
  const execution = startExecution({
    runId: row.id,
    definition: workflow,
    input: row.input,
    attempt: row.attempt,
    failures: 0,
    metadata: row.metadata ?? {},
    history: row.history,
    execution: row.execution,
    deadline: row.deadline_at,
    abort: new RunAbort(),
    maxPayloadBytes: Number.MAX_SAFE_INTEGER,
    maxHistorySteps: Number.MAX_SAFE_INTEGER,
    log: silentLogger,
    replayOnly: true,
    // Nothing is written: what the code would record past its history is dropped.
    sink: { record: async () => undefined },
    register: async () => {
      throw new ConfigurationError('checkReplay does not start children');
    },
  });
  let outcome: Outcome;
  try {
    outcome = await execution.done;
  } catch (error) {
    return { runId: row.id, version: row.version, status: row.status, replayed: 0, ok: false, problem: `the replay crashed: ${String(error)}` };
  }
  // Code that no longer takes the run's input stops before its first call: it replayed none.
  const inputRefused = outcome.op === 'fail' && outcome.error.name === 'ValidationError' && outcome.error.message.startsWith(`input of ${workflow.name}`);
  const replayed = inputRefused ? 0 : countReplayed(row.history, outcome, execution.calls());
  const result = (ok: boolean, problem?: string): ReplayCheck => ({ runId: row.id, version: row.version, status: row.status, replayed, ok, ...(problem ? { problem } : {}) });
  if (outcome.op === 'abandoned') {
    return outcome.reason === END_OF_HISTORY ? result(true) : result(false, `the replay was given up: ${String(outcome.reason)}`);
  }
  if (outcome.op === 'fail') {
    const error = outcome.error;
    if (error.code === 'non_determinism' || error.name === 'WorkflowStuckError') return result(false, error.message);
    if (inputRefused) return result(false, error.message);
    if (row.status === 'completed') return result(false, `the code fails where the run completed: ${error.message}`);
    return result(true);
  }
  if (outcome.op === 'complete') {
    if (row.status !== 'completed') return result(true); // an unfinished run whose history holds everything it needs
    // jsonb keeps its own order of keys: compare values, not texts.
    const same = isDeepStrictEqual(JSON.parse(outcome.output), row.output);
    return same ? result(true) : result(false, `the code returns ${outcome.output.slice(0, 200)} where the run returned ${JSON.stringify(row.output)?.slice(0, 200)}`);
  }
  return result(true);
}

/**
 * The calls of the history the code made again: up to the mismatched call
 * when one differs, else the calls it made that the history holds (fewer
 * than the history when it returned early or got stuck).
 */
function countReplayed(history: readonly StepRecord[], outcome: Outcome, made: number): number {
  if (outcome.op === 'fail' && outcome.error.code === 'non_determinism') {
    const at = /call #(\d+) is/.exec(outcome.error.message);
    if (at) return Number(at[1]);
  }
  return history.filter((r) => r.seq < made).length;
}
