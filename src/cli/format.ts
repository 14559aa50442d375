/** Text output of the CLI: aligned tables, durations, times. */
import { ValidationError } from '../errors.ts';
import { MAX_JSON_DEPTH } from '../protocol/serialize.ts';

/**
 * Rows under a header, each column as wide as its widest cell; the last column is not padded.
 *
 * @example
 * table(['id', 'status'], [['1', 'failed']]);   // 'id  status\n1   failed\n'
 */
export function table(header: readonly string[], rows: readonly (readonly string[])[]): string {
  rows = rows.map((r) => r.map(oneLine));
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]) =>
    cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0))).join('  ').trimEnd();
  return `${[line(header), ...rows.map(line)].join('\n')}\n`;
}

/**
 * A field on one line: a newline, carriage return or tab in a value from
 * outside (a run key, a signal id) written as its escape (`\n`), so it
 * cannot start a line of its own that reads as another row. (Other control
 * characters are escaped for the whole output by the io layer.)
 *
 * @example
 * oneLine('a\nb');   // 'a\\nb'
 */
export function oneLine(text: string): string {
  return text.replace(/[\n\r\t]/g, (c) => (c === '\n' ? '\\n' : c === '\r' ? '\\r' : '\\t'));
}

/**
 * 850ms, 12.3s, 4m05s, 3h12m, 2d04h.
 *
 * @example
 * formatDuration(245_000);   // '4m05s'
 */
export function formatDuration(ms: number | null | undefined): string {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return '-';
  if (ms < 0) ms = 0;
  if (ms < 1000) return `${Math.round(ms)}ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1)}s`;
  const s = Math.floor(ms / 1000);
  const two = (n: number) => String(n).padStart(2, '0');
  if (s < 3600) return `${Math.floor(s / 60)}m${two(s % 60)}s`;
  if (s < 86_400) return `${Math.floor(s / 3600)}h${two(Math.floor((s % 3600) / 60))}m`;
  return `${Math.floor(s / 86_400)}d${two(Math.floor((s % 86_400) / 3600))}h`;
}

/** The time between two timestamps (until `now` when `end` is missing). */
export function between(start: Date | null | undefined, end: Date | null | undefined, now = new Date()): number | null {
  if (!start) return null;
  return (end ?? now).getTime() - start.getTime();
}

/** A timestamp in UTC to the millisecond, without the T and Z noise: 2026-12-04 20:18:46.123. */
export function formatTime(at: Date | null | undefined): string {
  if (!at) return '-';
  return at.toISOString().replace('T', ' ').replace('Z', '');
}

/** An error as stored on runs and steps (`{ name, message, … }`), on one line and bounded. */
export function errorText(error: unknown, max = 200): string {
  if (error === null || error === undefined) return '';
  const e = error as { name?: unknown; message?: unknown };
  const text = typeof e.message === 'string' ? `${typeof e.name === 'string' ? `${e.name}: ` : ''}${e.message}` : JSON.stringify(error);
  const line = text.replace(/\s+/g, ' ');
  return line.length > max ? `${line.slice(0, max)}…` : line;
}

/** JSON for --json output: one document and a newline (an error for a value nested deeper than JSON.stringify can write). */
export function toJson(value: unknown): string {
  try {
    return `${JSON.stringify(value, null, 2)}\n`;
  } catch (error) {
    if (error instanceof RangeError) throw new ValidationError(`what this prints holds a value nested more than ${MAX_JSON_DEPTH} arrays or objects deep (stored before that limit): leave out --json`, { cause: error });
    throw error;
  }
}
