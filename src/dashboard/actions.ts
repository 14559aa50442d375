/**
 * The dashboard's actions on a run, a queue, a schedule and a hook delivery,
 * through the client API (and so through the engine's SQL functions:
 * run_cancel, run_pause, run_resume, run_retry, run_fork, signal_send, queue_pause,
 * queue_resume, schedule_pause, schedule_resume, hook_retry). The dashboard
 * itself never writes a table.
 */
import type { Client } from '../client/client.ts';
import type { ManualTick, ScheduleBackfillOptions } from '../client/schedules.ts';
import { ValidationError } from '../errors.ts';
import { parseExactJson } from '../protocol/serialize.ts';

/** The actions the run page offers, by the last segment of their POST path. */
export const ACTION_VERBS = ['cancel', 'pause', 'resume', 'retry', 'fork', 'signal'] as const;
export type ActionVerb = (typeof ACTION_VERBS)[number];

/** Whether `verb` names an action. */
export function isActionVerb(verb: string): verb is ActionVerb {
  return (ACTION_VERBS as readonly string[]).includes(verb);
}

type Form = Record<string, unknown>;

function field(form: Form, name: string, max: number): string | undefined {
  const value = form[name];
  if (value === undefined || value === '') return undefined;
  if (typeof value !== 'string') throw new ValidationError(`${name} must be text`);
  if (value.length > max) throw new ValidationError(`${name} is longer than ${max} characters`);
  return value;
}

/**
 * Perform `verb` on run `id` with the fields of its form. Returns what the
 * run page says about it: the action done and the run's status afterwards,
 * and for a fork the new run, whose page is shown next.
 *
 * @example
 * await performAction(client, 'signal', id, { name: 'approved', payload: '{"by":"ada"}' }); // { done: 'signal' }
 */
export async function performAction(client: Client, verb: ActionVerb, id: string, form: Form): Promise<{ done: string; status?: string | undefined; run?: string | undefined }> {
  switch (verb) {
    case 'cancel':
      return { done: verb, status: await client.cancel(id, field(form, 'reason', 500)) };
    case 'pause':
      return { done: verb, status: await client.pause(id, field(form, 'reason', 500)) };
    case 'resume':
      return { done: verb, status: await client.resume(id) };
    case 'retry':
      return { done: verb, status: await client.retry(id) };
    case 'fork': {
      const from = field(form, 'fromCall', 10)?.trim() || '0';
      if (!/^\d+$/.test(from)) throw new ValidationError(`the call to fork from must be a call number (0, 1, …), not ${JSON.stringify(from)}`);
      const version = field(form, 'version', 128)?.trim() || undefined;
      const fork = await client.fork(id, { fromCall: Number(from), version });
      return { done: verb, run: fork.id };
    }
    case 'signal': {
      const name = field(form, 'name', 200);
      if (!name) throw new ValidationError('a signal needs a name');
      // No cap of its own: the engine's max_payload_bytes decides (the form's body is at most 2 MiB).
      const text = field(form, 'payload', Number.POSITIVE_INFINITY)?.trim();
      let payload: unknown = null;
      if (text) {
        try {
          payload = parseExactJson(text);
        } catch (error) {
          throw new ValidationError(`the payload ${JSON.stringify(text.slice(0, 40))} is not JSON JavaScript reads exactly: ${(error as Error).message.slice(0, 120)}`);
        }
      }
      const signalId = field(form, 'signalId', 512);
      const sent = await client.signal(id, name, payload, signalId === undefined ? {} : { id: signalId });
      return { done: sent ? 'signal' : 'signal-duplicate' };
    }
  }
}

/** The actions of the Queues and Schedules pages, by the last segment of their POST path. */
export const TOGGLE_VERBS = ['pause', 'resume'] as const;
export type ToggleVerb = (typeof TOGGLE_VERBS)[number];

/** Whether `verb` is pause or resume. */
export function isToggleVerb(verb: string): verb is ToggleVerb {
  return (TOGGLE_VERBS as readonly string[]).includes(verb);
}

/**
 * Pause or resume queue `name` (its claims, on every worker). The client
 * checks the name (ValidationError).
 *
 * @example
 * await queueAction(client, 'pause', 'emails');
 */
export async function queueAction(client: Client, verb: ToggleVerb, name: string): Promise<void> {
  if (verb === 'pause') await client.pauseQueue(name);
  else await client.resumeQueue(name);
}

/**
 * Pause or resume schedule `name` (NotFoundError if there is none).
 *
 * @example
 * await scheduleAction(client, 'resume', 'nightly-report');
 */
export async function scheduleAction(client: Client, verb: ToggleVerb, name: string): Promise<void> {
  if (verb === 'pause') await client.schedules.pause(name);
  else await client.schedules.resume(name);
}

/**
 * Start a run of schedule `name` now, by its overlap policy (NotFoundError
 * if there is none): what `client.schedules.trigger` returns.
 *
 * @example
 * const { outcome, runId } = await scheduleTriggerAction(client, 'nightly-report');
 */
export function scheduleTriggerAction(client: Client, name: string): Promise<ManualTick> {
  return client.schedules.trigger(name);
}

/** What a dashboard backfill did, counted by outcome. */
export interface BackfillCounts {
  started: number;
  existing: number;
  skipped: number;
  buffered: number;
}

/**
 * A date and time of the backfill form (an `<input type="datetime-local">`:
 * `2026-12-01T06:00`, seconds optional), read as UTC as every time on the
 * dashboard is; undefined when empty; ValidationError for anything else.
 */
function utcField(form: Form, name: string): Date | undefined {
  const value = field(form, name, 40);
  if (value === undefined) return undefined;
  const date = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,3})?)?$/.test(value) ? new Date(`${value}Z`) : undefined;
  // A date that does not exist (2026-02-30, T24:00) is not rolled over into another one: it reads back as typed, or not at all.
  if (!date || Number.isNaN(date.getTime()) || !date.toISOString().startsWith(value)) throw new ValidationError(`${name} must be a UTC date and time such as 2026-12-01T06:00, not ${JSON.stringify(value)}`);
  return date;
}

/**
 * Backfill schedule `name`'s ticks from the form's `from` to its `to` (UTC;
 * default now), by the form's `overlap` (default the schedule's): what
 * `client.schedules.backfill` does, counted by outcome. ValidationError for
 * a bad time, range or policy (nothing started), NotFoundError for an
 * unknown schedule.
 *
 * @example
 * const counts = await scheduleBackfillAction(client, 'nightly-report', { from: '2026-12-01T00:00', to: '2026-12-02T00:00' });
 */
export async function scheduleBackfillAction(client: Client, name: string, form: Form): Promise<BackfillCounts> {
  const from = utcField(form, 'from');
  if (!from) throw new ValidationError('a backfill needs from: the first time of the range (UTC)');
  const to = utcField(form, 'to');
  const overlap = field(form, 'overlap', 40);
  const ticks = await client.schedules.backfill(name, {
    from, ...(to ? { to } : {}), ...(overlap ? { overlap: overlap as ScheduleBackfillOptions['overlap'] } : {}),
  });
  const counts: BackfillCounts = { started: 0, existing: 0, skipped: 0, buffered: 0 };
  for (const tick of ticks) counts[tick.outcome] += 1;
  return counts;
}

/**
 * Send parked hook delivery `id` (the form's text) to the workers again
 * (ValidationError for an id that is not one, NotFoundError, IllegalTransitionError if not parked).
 *
 * @example
 * await hookRetryAction(client, '42');
 */
export async function hookRetryAction(client: Client, id: string): Promise<void> {
  await client.hooks.retry(id);
}
