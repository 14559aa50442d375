/**
 * Cron schedules from TypeScript (`client.schedules`): create or replace,
 * pause, resume, delete, get and list the rows of trellis.schedules, and
 * read the role leases (`client.roles`). Checks everything it can before a
 * round trip (cron and time zone with croner, the input with the workflow's
 * own schema when given a definition); SQL checks again for every caller.
 */
import type { WorkflowRegistry } from '../db/registry.ts';
import { type Executor, type Queryable, queryRows, toQueryable } from '../db/queryable.ts';
import { type RoleRow, roleList } from '../db/roles.ts';
import { scheduleControl, scheduleDelete, scheduleList, type ScheduleRow, scheduleSet } from '../db/schedules.ts';
import { quoteValue, ValidationError } from '../errors.ts';
import { parseCron } from '../workflow/cron.ts';
import type { WorkflowDefinition, WorkflowInput } from '../workflow/define.ts';
import { type Duration, toMs } from '../protocol/duration.ts';
import { deadlineOptions } from '../protocol/deadline.ts';
import { assertName, nameOf } from '../workflow/names.ts';
import { validate } from '../workflow/standard-schema.ts';

export type { RoleRow } from '../db/roles.ts';
export type { ScheduleRow } from '../db/schedules.ts';

/**
 * What a schedule does when a tick comes while its last run has not finished.
 *
 * @example
 * await client.schedules.set('sync', { cron: '0 * * * *', workflow: sync, input: {}, overlap: OVERLAP_POLICIES[2] }); // bufferOne
 */
export const OVERLAP_POLICIES = ['skip', 'allow', 'bufferOne', 'cancelPrevious'] as const;
export type OverlapPolicy = (typeof OVERLAP_POLICIES)[number];

const OVERLAP_SQL: Record<OverlapPolicy, string> = { skip: 'skip', allow: 'allow', bufferOne: 'buffer_one', cancelPrevious: 'cancel_previous' };

/**
 * The options of `client.schedules.set`.
 *
 * @example
 * const options: ScheduleOptions<typeof report> = { cron: '0 7 * * 1-5', timeZone: 'America/New_York', workflow: report, input: { team: 'ops' }, catchUp: 2 };
 */
const SCHEDULE_OPTIONS: ReadonlySet<string> = new Set(['cron', 'timeZone', 'workflow', 'input', 'overlap', 'catchUp', 'jitter',
  'timeLimit', 'endsAt', 'paused'] satisfies (keyof ScheduleOptions)[]);

/**
 * The input each tick's run gets: required when `workflow` is a definition
 * whose input schema does not take `undefined` (set() refuses a missing one
 * at run time too), optional for a workflow given by name.
 */
export type ScheduleInput<W extends WorkflowDefinition | string> = W extends WorkflowDefinition
  ? undefined extends WorkflowInput<W> ? { input?: WorkflowInput<W> | undefined } : { input: WorkflowInput<W> }
  : { input?: unknown };

export type ScheduleOptions<W extends WorkflowDefinition | string = WorkflowDefinition | string> = ScheduleSettings<W> & ScheduleInput<W>;

/** Every option of a schedule but its input (ScheduleOptions adds it). */
export interface ScheduleSettings<W extends WorkflowDefinition | string = WorkflowDefinition | string> {
  /** 5 fields (minute hour day-of-month month day-of-week), or 6 with seconds first; `@daily` and the like. */
  cron: string;
  /** IANA time zone the cron is read in (default UTC). */
  timeZone?: string | undefined;
  /** The workflow each tick starts (a definition is registered, and the input checked with its schema). */
  workflow: W;
  /**
   * A tick while the last run is unfinished (default `skip`): `skip` it,
   * `allow` a second run, `bufferOne` (start one tick when the last run
   * ends; further ticks meanwhile are skipped), `cancelPrevious` (cancel
   * the last run, start the new one). The ticks of one catch-up do not
   * overlap one another: the policy is judged once, against the last run
   * from before the catch-up.
   */
  overlap?: OverlapPolicy | undefined;
  /**
   * Ticks missed while no worker ticked (downtime): 0 (default) starts only
   * the latest of them; N starts up to N of the missed ticks too, oldest
   * first (at most 1000).
   */
  catchUp?: number | undefined;
  /** Each tick's run starts up to this much after the tick (a fixed fraction per tick; at most 1 day). */
  jitter?: Duration | undefined;
  /**
   * Each tick's run is cancelled if it has not finished this long after it
   * started (its deadline: docs/workflows.md#deadlines). None by default.
   */
  timeLimit?: Duration | undefined;
  /** No tick after this. */
  endsAt?: Date | undefined;
  /** Create it paused (or pause it on update). */
  paused?: boolean | undefined;
}

/**
 * @example
 * await client.schedules.set('daily-report', {
 *   cron: '0 7 * * *', timeZone: 'Europe/Berlin', workflow: dailyReport, input: { team: 'ops' },
 * });
 * const [row] = await client.schedules.list(); // row.nextAt: the next 07:00 in Berlin
 */
export class Schedules {
  /** `db` takes the writes; `reads` (default `db`) get and list, e.g. a read replica. */
  constructor(private readonly db: Queryable, private readonly registry: WorkflowRegistry<WorkflowDefinition>, private readonly reads: Queryable = db) {}

  /**
   * Create or replace schedule `name`; returns its row with the next tick.
   * ValidationError for a bad cron, time zone, input or option;
   * NotFoundError for a workflow no worker or client has registered.
   * With `tx`, the schedule commits or rolls back with the caller's transaction.
   *
   * @example
   * await client.schedules.set('hourly-sync', { cron: '0 * * * *', workflow: 'sync', overlap: 'bufferOne', catchUp: 3 });
   */
  async set<W extends WorkflowDefinition | string>(name: string, options: ScheduleOptions<W>, { tx }: { tx?: Executor | undefined } = {}): Promise<ScheduleRow> {
    const db = tx === undefined ? this.db : toQueryable(tx);
    assertName(name, 'schedule');
    if (typeof options !== 'object' || options === null) throw new ValidationError('schedule options must be an object');
    // A misspelt option (`timelimit`) would be dropped in silence; schedule_set refuses it too.
    for (const key in options) {
      if (!SCHEDULE_OPTIONS.has(key)) throw new ValidationError(`unknown schedule option ${quoteValue(key)}`);
    }
    const cron = parseCron(options.cron, options.timeZone ?? 'UTC');
    const workflow = options.workflow as WorkflowDefinition | string;
    const workflowName = nameOf(workflow, 'workflow');
    const overlap = options.overlap ?? 'skip';
    if (!OVERLAP_POLICIES.includes(overlap)) {
      throw new ValidationError(`overlap must be one of ${OVERLAP_POLICIES.join(', ')}, not ${JSON.stringify(String(overlap).slice(0, 40))}`);
    }
    const catchUp = options.catchUp ?? 0;
    if (!Number.isInteger(catchUp) || catchUp < 0 || catchUp > 1000) throw new ValidationError('catchUp must be an integer from 0 to 1000');
    const jitterMs = toMs(options.jitter ?? 0, 'jitter');
    if (jitterMs > 86_400_000) throw new ValidationError('jitter must be at most 1 day');
    const { time_limit } = deadlineOptions({ timeLimit: options.timeLimit });
    if (options.endsAt !== undefined && !(options.endsAt instanceof Date && !Number.isNaN(options.endsAt.getTime()))) {
      throw new ValidationError('endsAt must be a valid Date');
    }
    if (options.paused !== undefined && typeof options.paused !== 'boolean') throw new ValidationError('paused must be true or false');
    if (typeof workflow !== 'string') {
      if (workflow.input) await validate(workflow.input, options.input, `input of schedule ${name}`);
      if (tx === undefined) await this.registry.register(workflow);
      else await this.registry.registerIn(db, workflow);
    }
    const now = await this.now(db);
    const next = cron.nextTick(now);
    const endsAt = options.endsAt ?? null;
    return scheduleSet(db, name, {
      cron: cron.cron,
      time_zone: cron.timeZone,
      workflow: workflowName,
      input: options.input ?? null,
      overlap: OVERLAP_SQL[overlap],
      catch_up: catchUp,
      jitter: `${jitterMs} milliseconds`,
      time_limit: time_limit ?? null,
      ends_at: endsAt?.toISOString() ?? null,
      ...(options.paused === undefined ? {} : { paused: options.paused }),
      next_at: next && (!endsAt || next <= endsAt) ? next.toISOString() : null,
    });
  }

  /** Stop firing until `resume` (ticks meanwhile are skipped). NotFoundError if unknown. @example await client.schedules.pause('daily-report'); */
  pause(name: string, { tx }: { tx?: Executor | undefined } = {}): Promise<ScheduleRow> {
    return scheduleControl(tx === undefined ? this.db : toQueryable(tx), 'pause', assertName(name, 'schedule'));
  }

  /** Fire again from the next tick after now. NotFoundError if unknown. @example await client.schedules.resume('daily-report'); */
  resume(name: string, { tx }: { tx?: Executor | undefined } = {}): Promise<ScheduleRow> {
    return scheduleControl(tx === undefined ? this.db : toQueryable(tx), 'resume', assertName(name, 'schedule'));
  }

  /** Delete it (its runs stay); false if there was none. @example await client.schedules.delete('daily-report', { tx: pgClient }); */
  delete(name: string, { tx }: { tx?: Executor | undefined } = {}): Promise<boolean> {
    return scheduleDelete(tx === undefined ? this.db : toQueryable(tx), assertName(name, 'schedule'));
  }

  /** The schedule's row, or undefined. @example const s = await client.schedules.get('daily-report'); console.log(s?.nextAt); */
  async get(name: string): Promise<ScheduleRow | undefined> {
    return (await scheduleList(this.reads, assertName(name, 'schedule')))[0];
  }

  /** Every schedule, by name (what `trellis schedules` lists). @example for (const s of await client.schedules.list()) console.log(s.name, s.nextAt); */
  list(): Promise<ScheduleRow[]> {
    return scheduleList(this.reads);
  }

  private async now(db: Queryable): Promise<Date> {
    const rows = await queryRows<{ now: Date }>(db, 'select trellis.now() as now');
    return rows[0]?.now ?? new Date();
  }
}

/**
 * The role leases (`client.roles`): who holds each singleton duty, its
 * fencing token, when the lease expires, when the duty last ran and how.
 *
 * @example
 * for (const r of await client.roles.list()) console.log(r.name, r.holder, r.token, r.lastOutcome);
 */
export class Roles {
  constructor(private readonly db: Queryable) {}

  /** Every role, by name (what `trellis roles` lists). @example const roles = await client.roles.list(); */
  list(): Promise<RoleRow[]> {
    return roleList(this.db);
  }
}
