/** JSON encoding of payloads and errors, identical on first run and replay. */
import { numericText } from './jsonb-text.ts';
import { isTrellisError, PayloadTooLargeError, ValidationError } from '../errors.ts';
import type { SerializedError } from './history.ts';

/**
 * Encode a value as JSON text, refusing what JSON cannot hold faithfully
 * (functions, symbols, BigInt, cycles) and anything over `maxBytes` as
 * measured by {@link jsonbTextBytes}, the measure the SQL checks use.
 */
export function encodeJson(value: unknown, what: string, maxBytes: number): string {
  let text: string | undefined;
  try {
    text = JSON.stringify(value === undefined ? null : value);
  } catch (error) {
    throw new ValidationError(`${what} is not JSON-serialisable: ${(error as Error).message}`, { cause: error });
  }
  if (text === undefined) throw new ValidationError(`${what} is not JSON-serialisable`);
  const bytes = jsonbTextBytes(text, maxBytes);
  if (bytes > maxBytes) {
    throw new PayloadTooLargeError(`${what} is ${bytes} bytes, over the limit of ${maxBytes} bytes`);
  }
  return text;
}

/**
 * The size in bytes of compact JSON `text` (as JSON.stringify writes it) in
 * PostgreSQL's jsonb text form, `octet_length(value::jsonb::text)`: that form
 * puts a space after every `,` and `:` and writes numbers without exponents.
 * SQL's payload checks (_check_payload, checkpoint_apply) measure exactly
 * this, so a value accepted here is accepted there. When `upTo` is given and
 * the text plainly fits (at most twice its bytes, no exponent), the bytes are
 * not scanned; the result is then only an upper bound.
 */
export function jsonbTextBytes(text: string, upTo = 0): number {
  const bytes = Buffer.byteLength(text);
  if (2 * bytes <= upTo && !/\de[+-]/.test(text)) return 2 * bytes;
  let extra = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 92) i++; // backslash: skip the escaped character
      else if (c === 34) inString = false;
    } else if (c === 34) {
      inString = true;
    } else if (c === 44 || c === 58) {
      extra++; // ', ' and ': '
    } else if (c === 101 && i > 0 && isDigit(text.charCodeAt(i - 1))) {
      extra += exponentGrowth(text, i);
    }
  }
  return bytes + extra;
}

function isDigit(c: number): boolean {
  return c >= 48 && c <= 57;
}

/** How much longer the number whose exponent marker is at `e` gets as a numeric without exponent. */
function exponentGrowth(text: string, e: number): number {
  let start = e;
  while (start > 0 && /[-0-9.]/.test(text[start - 1] as string)) start--;
  let end = e + 1;
  if (text[end] === '+' || text[end] === '-') end++;
  while (end < text.length && isDigit(text.charCodeAt(end))) end++;
  return numericText(text.slice(start, end)).length - (end - start);
}

const MAX_MESSAGE = 4096;
const MAX_STACK = 4096;
const MAX_DETAILS = 8192;

/**
 * An error as stored JSON. Bounded (message and stack 4 KiB, details 8 KiB)
 * so the op that records a failure stays far below any payload limit and a
 * huge error message cannot make the failure itself unwritable.
 */
export function serializeError(error: unknown): SerializedError {
  if (error instanceof Error) {
    const out: SerializedError = { name: error.name, message: clip(error.message, MAX_MESSAGE) };
    if (error.stack) out.stack = clip(error.stack.split('\n').slice(0, 12).join('\n'), MAX_STACK);
    if (isTrellisError(error)) {
      out.code = error.code;
      if (Object.keys(error.details).length) out.details = boundedDetails(error.details);
    }
    const extra = error as { step?: unknown; attempts?: unknown; code?: unknown };
    if (typeof extra.step === 'string') out.step = clip(extra.step, MAX_MESSAGE);
    if (typeof extra.attempts === 'number') out.attempts = extra.attempts;
    if (!out.code && typeof extra.code === 'string') out.code = clip(extra.code, 64);
    return out;
  }
  return { name: 'Error', message: clip(typeof error === 'string' ? error : safeString(error), MAX_MESSAGE) };
}

function clip(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max)}… (${text.length - max} more characters)`;
}

function boundedDetails(details: Record<string, unknown>): unknown {
  try {
    const text = JSON.stringify(details);
    return text === undefined || text.length <= MAX_DETAILS ? details : { truncated: true, bytes: Buffer.byteLength(text) };
  } catch {
    return { unserialisable: true };
  }
}

function safeString(value: unknown): string {
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}
