/** Checking the CLI's arguments: each bad one is a UsageError that quotes at most a bounded prefix of it. */
import type { RunRef } from '../client/options.ts';
import { RUN_STATES, type RunState } from '../db/tables.ts';
import { toTime } from '../protocol/deadline.ts';
import { toMs } from '../protocol/duration.ts';
import { UUID_PATTERN as UUID } from '../workflow/names.ts';
import type { OptionValues } from './command.ts';
import { UsageError } from './exit-codes.ts';
import { parseExactJson } from '../protocol/serialize.ts';

/** A value quoted for an error message, at most 60 characters of it. */
export const quote = (value: string): string => JSON.stringify(value.length > 60 ? `${value.slice(0, 60)}…` : value);

/** A command's first positional as one of its `actions` (the first when absent); a UsageError for any other. */
export function actionOf<const A extends readonly string[]>(args: readonly string[], actions: A): A[number] {
  const value = args[0] ?? actions[0] ?? '';
  if (!actions.includes(value)) throw new UsageError(`unknown action ${quote(value)} (${actions.join(', ')})`);
  return value as A[number];
}

/** A run id argument. */
export function runId(value: string | undefined): string {
  if (value === undefined || !UUID.test(value)) throw new UsageError(`run id ${quote(value ?? '')} is not a UUID`);
  return value.toLowerCase();
}

/**
 * The run a control command names: `<run>` (an id), or `--workflow W --key K`.
 */
export function runRef(arg: string | undefined, options: OptionValues): RunRef {
  const workflow = options.workflow as string | undefined;
  const key = options.key as string | undefined;
  if (arg !== undefined) {
    if (workflow !== undefined || key !== undefined) throw new UsageError('give a run id or --workflow with --key, not both');
    return runId(arg);
  }
  if (workflow === undefined || key === undefined) throw new UsageError('give a run id, or --workflow and --key');
  return { workflow, key };
}

/** A JSON argument (`name` says what it is). */
export function json(value: string, name: string): unknown {
  try {
    return parseExactJson(value);
  } catch (error) {
    throw new UsageError(`${name} is not valid JSON (${(error as Error).message.slice(0, 200)}): ${quote(value)}`);
  }
}

/** A positive integer option within [min, max]. */
export function integer(value: string | undefined, name: string, min: number, max: number, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!/^-?\d+$/.test(value) || n < min || n > max) throw new UsageError(`--${name} must be an integer from ${min} to ${max}, not ${quote(value)}`);
  return n;
}

/** A duration option ('90s', '2 hours', '1500' ms). */
export function duration(value: string, name: string): number {
  // A bare number has no unit: '--deadline 5' read as 5 ms cancelled the run at once.
  if (/^\s*\d+(\.\d+)?\s*$/.test(value)) {
    throw new UsageError(`--${name} needs a unit: 30s, 15m, 2h or 7 days (${quote(value)} has none)`);
  }
  try {
    return toMs(value as never, name);
  } catch {
    throw new UsageError(`--${name} must be a duration such as 30s, 15m, 2h or 7 days, not ${quote(value)}`);
  }
}

/** An ISO date or timestamp (UsageError naming `--name` otherwise). */
export function isoTime(value: string, name: string): Date {
  try {
    return toTime(utcUnlessZoned(value), `--${name}`);
  } catch {
    throw new UsageError(`--${name} ${quote(value)} is not an ISO time such as 2026-01-31T17:00Z (no such day, or not a time)`);
  }
}

/**
 * A point in time: an ISO date or timestamp, or a duration meaning that long
 * ago ('1h': an hour ago; a filter such as --since), or with `ahead` that
 * long from now ('1h': in an hour; a time to come such as --run-at).
 */
export function time(value: string, name: string, { ahead = false, now = Date.now() } = {}): Date {
  if (/^\d{4}-\d{2}-\d{2}/.test(value)) {
    try {
      // Without a zone, UTC: the times the CLI prints (2026-12-04 20:18:46.123) are UTC, so one pasted back means the same instant.
      return toTime(utcUnlessZoned(value), `--${name}`);
    } catch {
      // reported below
    }
  } else {
    try {
      const ms = toMs(value as never, name);
      const at = new Date(ahead ? now + ms : now - ms);
      if (!Number.isNaN(at.getTime())) return at; // else: too far from now for a date (reported below)
    } catch {
      // reported below
    }
  }
  throw new UsageError(`--${name} must be an ISO time (2026-01-31T12:00Z) or a duration ${ahead ? 'from now' : 'ago'} (1h, 7 days), not ${quote(value)}`);
}

/** An ISO date or time with no zone read as UTC ('2026-12-04 20:18' → '2026-12-04T20:18Z'); one with a zone as it is. */
function utcUnlessZoned(value: string): string {
  const t = value.trim().replace(/^(\d{4}-\d{2}-\d{2})[ T]/, '$1T');
  if (/^\d{4}-\d{2}-\d{2}$/.test(t)) return `${t}T00:00Z`;
  return /(Z|[+-]\d{2}(:?\d{2})?)$/i.test(t) ? t : `${t}Z`;
}

/** A `--metadata JSON` filter option: a JSON object, or undefined when not given. */
export function metadataOption(value: unknown): Record<string, unknown> | undefined {
  if (value === undefined) return undefined;
  const parsed = json(value as string, '--metadata');
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new UsageError(`--metadata must be a JSON object such as {"tenant":"acme"}, not ${quote(value as string)}`);
  }
  return parsed as Record<string, unknown>;
}

/** A `--status` filter option (repeatable or comma-separated): the statuses, or undefined when not given. */
export function statusOption(value: unknown): RunState[] | undefined {
  const given = (value as string[] | undefined) ?? [];
  const statuses = given.flatMap((s) => s.split(',')).map((s) => s.trim()).filter(Boolean);
  // Given but empty (`--status "$S"` with S unset) is no filter at all: refused, never read as "any status".
  if (given.length > 0 && statuses.length === 0) throw new UsageError(`--status needs one or more of ${RUN_STATES.join(', ')}, not ${quote(given.join(','))}`);
  for (const s of statuses) {
    if (!RUN_STATES.includes(s as RunState)) throw new UsageError(`unknown status ${quote(s)} (one of ${RUN_STATES.join(', ')})`);
  }
  return statuses.length ? (statuses as RunState[]) : undefined;
}

/** The run filters `ls` and the `--all` controls share (`--workflow`, `--key`, `--queue`, `--status`, `--since`, `--until`, `--metadata`); unset ones undefined. */
export function runFilterOptions(options: OptionValues): {
  workflow: string | undefined; key: string | undefined; queue: string | undefined; status: RunState[] | undefined;
  createdAfter: Date | undefined; createdBefore: Date | undefined; metadata: Record<string, unknown> | undefined;
} {
  return {
    workflow: options.workflow as string | undefined,
    key: options.key as string | undefined,
    queue: options.queue as string | undefined,
    status: statusOption(options.status),
    createdAfter: options.since === undefined ? undefined : time(options.since as string, 'since'),
    createdBefore: options.until === undefined ? undefined : time(options.until as string, 'until'),
    metadata: metadataOption(options.metadata),
  };
}
