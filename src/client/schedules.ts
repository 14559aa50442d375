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
import { type ManualTick, scheduleControl, scheduleDelete, scheduleList, scheduleManual, type ScheduleRow, scheduleSet, type StoredSchedule } from '../db/schedules.ts';
import { optionNames, refuseUnknownKeys } from '../protocol/option-bounds.ts';
import { NotFoundError, quoteValue, ValidationError } from '../errors.ts';
import { parseCron } from '../workflow/cron.ts';
import type { WorkflowDefinition, WorkflowInput } from '../workflow/define.ts';
import { type Duration, toMs } from '../protocol/duration.ts';
import { deadlineOptions } from '../protocol/deadline.ts';
import { assertName, nameOf } from '../workflow/names.ts';
import { validate } from '../workflow/standard-schema.ts';

export type { RoleRow } from '../db/roles.ts';
export type { ManualTick, ScheduleRow } from '../db/schedules.ts';

/**
 * A stored row as `client.schedules` returns it: while the ticker has still
 * to compute the next tick (`next_at` null after a resume, or a SQL
 * caller's `schedule_set` without one), `nextAt` is the tick it will
 * compute (the cron's first after `next_from`; null past `endsAt`).
 *
 * @example
 * const rows = (await scheduleList(db)).map(scheduleRow);
 */
export function scheduleRow({ nextFrom, ...row }: StoredSchedule): ScheduleRow {
  if (row.nextAt !== null || nextFrom === null) return row;
  try {
    const next = parseCron(row.cron, row.timeZone).nextTick(nextFrom);
    return { ...row, nextAt: next && !(row.endsAt && next > row.endsAt) ? next : null };
  } catch {
    return row; // a cron this release cannot read: the ticker stores that as the schedule's error
  }
}

/**
 * What a schedule does when a tick comes while its last run has not finished.
 *
 * @example
 * await client.schedules.set('sync', { cron: '0 * * * *', workflow: sync, input: {}, overlap: OVERLAP_POLICIES[2] }); // bufferOne
 */
export const OVERLAP_POLICIES = ['skip', 'allow', 'bufferOne', 'cancelPrevious'] as const;
export type OverlapPolicy = (typeof OVERLAP_POLICIES)[number];

const OVERLAP_SQL: Record<OverlapPolicy, string> = { skip: 'skip', allow: 'allow', bufferOne: 'buffer_one', cancelPrevious: 'cancel_previous' };

/** An overlap option as SQL takes it (null: the schedule's own); ValidationError for another value. */
function overlapSql(overlap: unknown): string | null {
  if (overlap === undefined) return null;
  if (!OVERLAP_POLICIES.includes(overlap as OverlapPolicy)) {
    throw new ValidationError(`overlap must be one of ${OVERLAP_POLICIES.join(', ')}, not ${JSON.stringify(String(overlap).slice(0, 40))}`);
  }
  return OVERLAP_SQL[overlap as OverlapPolicy];
}

/**
 * The options of `client.schedules.trigger`.
 *
 * @example
 * const options: ScheduleTriggerOptions = { overlap: 'allow' }; // run now even while the last run goes on
 */
export interface ScheduleTriggerOptions {
  /** The overlap policy for this tick (default: the schedule's). */
  overlap?: OverlapPolicy | undefined;
  /** Commit or roll back with the caller's transaction. */
  tx?: Executor | undefined;
}

/**
 * The options of `client.schedules.backfill`.
 *
 * @example
 * const options: ScheduleBackfillOptions = { from: new Date('2026-12-01T00:00Z'), to: new Date('2026-12-01T06:00Z'), overlap: 'allow' };
 */
export interface ScheduleBackfillOptions extends ScheduleTriggerOptions {
  /** The first time of the range (included). */
  from: Date;
  /** The last time of the range (included; default now, and never later). */
  to?: Date | undefined;
}

const TRIGGER_OPTIONS = optionNames<ScheduleTriggerOptions>({ overlap: true, tx: true });
const BACKFILL_OPTIONS = optionNames<ScheduleBackfillOptions>({ from: true, to: true, overlap: true, tx: true });

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
    const overlap = overlapSql(options.overlap ?? 'skip')!;
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
    return scheduleRow(await scheduleSet(db, name, {
      cron: cron.cron,
      time_zone: cron.timeZone,
      workflow: workflowName,
      input: options.input ?? null,
      overlap,
      catch_up: catchUp,
      jitter: `${jitterMs} milliseconds`,
      time_limit: time_limit ?? null,
      ends_at: endsAt?.toISOString() ?? null,
      ...(options.paused === undefined ? {} : { paused: options.paused }),
      next_at: next && (!endsAt || next <= endsAt) ? next.toISOString() : null,
    }));
  }

  /** Stop firing until `resume` (ticks meanwhile are skipped). NotFoundError if unknown. @example await client.schedules.pause('daily-report'); */
  async pause(name: string, { tx }: { tx?: Executor | undefined } = {}): Promise<ScheduleRow> {
    return scheduleRow(await scheduleControl(tx === undefined ? this.db : toQueryable(tx), 'pause', assertName(name, 'schedule')));
  }

  /** Fire again from the next tick after now. NotFoundError if unknown. @example await client.schedules.resume('daily-report'); */
  async resume(name: string, { tx }: { tx?: Executor | undefined } = {}): Promise<ScheduleRow> {
    return scheduleRow(await scheduleControl(tx === undefined ? this.db : toQueryable(tx), 'resume', assertName(name, 'schedule')));
  }

  /** Delete it (its runs stay); false if there was none. @example await client.schedules.delete('daily-report', { tx: pgClient }); */
  delete(name: string, { tx }: { tx?: Executor | undefined } = {}): Promise<boolean> {
    return scheduleDelete(tx === undefined ? this.db : toQueryable(tx), assertName(name, 'schedule'));
  }

  /**
   * Start a run of the schedule now, as a tick at this moment would (its
   * workflow, input and time limit; metadata `{ schedule, tick, manual:
   * 'trigger' }`), by the overlap policy (`overlap`, default the
   * schedule's) against its last run: `started`, `buffered` or `skipped`.
   * A paused schedule can be triggered; its own ticks go on as before.
   * NotFoundError if unknown; IllegalTransitionError after its `endsAt`; a
   * start the engine refuses (its stored input no longer fits the
   * workflow) rejects and changes nothing.
   *
   * @example
   * const { runId, outcome } = await client.schedules.trigger('daily-report');
   */
  async trigger(name: string, options: ScheduleTriggerOptions = {}): Promise<ManualTick> {
    refuseUnknownKeys(options, TRIGGER_OPTIONS, 'trigger options');
    const db = options.tx === undefined ? this.db : toQueryable(options.tx);
    const [tick] = await scheduleManual(db, assertName(name, 'schedule'), undefined, overlapSql(options.overlap));
    return tick!;
  }

  /**
   * Start the runs of the schedule's ticks from `from` to `to` (both
   * included; `to` defaults to now and may not be later; ticks after its
   * `endsAt` are not the schedule's), computed from its cron in its time
   * zone as the ticker computes them: at most 1000 (ValidationError for a
   * longer range; backfill it in parts). Each tick's run has the key the
   * ticker would give it, so a tick that already ran (the ticker's run, or
   * an earlier backfill's) is returned as `existing` and never started
   * twice: after an outage with `catchUp: 0`, backfilling the outage runs
   * exactly the ticks that were skipped. The overlap policy (`overlap`,
   * default the schedule's) is judged once, against the last run from
   * before the call, as a catch-up is. Runs are due at once, with metadata
   * `{ schedule, tick, manual: 'backfill' }`. One result per tick, oldest
   * first ([] when the range holds none). All or nothing: a start the
   * engine refuses rejects the call and changes nothing.
   *
   * @example
   * const ticks = await client.schedules.backfill('hourly-sync', { from: new Date('2026-12-01T00:00Z'), to: new Date('2026-12-02T00:00Z') });
   * console.log(ticks.filter((t) => t.outcome === 'started').length, 'ticks run now');
   */
  async backfill(name: string, options: ScheduleBackfillOptions): Promise<ManualTick[]> {
    if (typeof options !== 'object' || options === null) throw new ValidationError('backfill needs options with from');
    refuseUnknownKeys(options, BACKFILL_OPTIONS, 'backfill options');
    const db = options.tx === undefined ? this.db : toQueryable(options.tx);
    assertName(name, 'schedule');
    const overlap = overlapSql(options.overlap);
    const valid = (d: unknown): d is Date => d instanceof Date && !Number.isNaN(d.getTime());
    if (!valid(options.from)) throw new ValidationError('backfill from must be a valid Date');
    if (options.to !== undefined && !valid(options.to)) throw new ValidationError('backfill to must be a valid Date');
    const now = await this.now(db);
    const to = options.to ?? now;
    if (to.getTime() > now.getTime()) throw new ValidationError(`backfill to must not be later than now (${now.toISOString()}): a tick to come is the schedule's own`);
    if (options.from.getTime() > to.getTime()) throw new ValidationError('backfill from must not be later than to');
    const [row] = await scheduleList(db, name);
    if (!row) throw new NotFoundError(`schedule ${quoteValue(name)} does not exist`);
    const cron = parseCron(row.cron, row.timeZone);
    const last = row.endsAt && row.endsAt.getTime() < to.getTime() ? row.endsAt : to;
    const ticks: Date[] = [];
    for (let t = cron.nextTick(new Date(options.from.getTime() - 1)); t && t.getTime() <= last.getTime(); t = cron.nextTick(t)) {
      if (ticks.length === 1000) throw new ValidationError(`backfill of ${name}: more than 1000 ticks from ${options.from.toISOString()} to ${to.toISOString()}; backfill a shorter range`);
      ticks.push(t);
    }
    return ticks.length ? scheduleManual(db, name, ticks, overlap) : [];
  }

  /** The schedule's row, or undefined. @example const s = await client.schedules.get('daily-report'); console.log(s?.nextAt); */
  async get(name: string): Promise<ScheduleRow | undefined> {
    const [row] = await scheduleList(this.reads, assertName(name, 'schedule'));
    return row && scheduleRow(row);
  }

  /** Every schedule, by name (what `trellis schedules` lists). @example for (const s of await client.schedules.list()) console.log(s.name, s.nextAt); */
  async list(): Promise<ScheduleRow[]> {
    return (await scheduleList(this.reads)).map(scheduleRow);
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
