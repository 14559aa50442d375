/** JSON encoding of payloads and errors, identical on first run and replay. */
import { numericText } from './jsonb-text.ts';
import { isTrellisError, PayloadTooLargeError, quoteValue, ValidationError } from '../errors.ts';
import type { SerializedError } from './history.ts';

/**
 * The deepest a JSON value may nest arrays and objects, here and in SQL
 * (trellis._check_json_depth, sql/000_support.sql): JSON.stringify
 * recurses, so a value some thousands deep, which jsonb holds, would break
 * every TypeScript reader of it.
 */
export const MAX_JSON_DEPTH = 1000;

/** Whether JSON `text` nests more than `max` arrays and objects (text too short to is not read). */
export function jsonTextTooDeep(text: string, max = MAX_JSON_DEPTH): boolean {
  if (text.length < 2 * max + 2) return false;
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 92) i++; // a backslash escapes the next character
      else if (c === 34) inString = false;
    } else if (c === 34) {
      inString = true;
    } else if (c === 91 || c === 123) {
      if (++depth > max) return true;
    } else if (c === 93 || c === 125) {
      depth--;
    }
  }
  return false;
}

/**
 * JSON text of a value read back, for display: a value stored before the
 * depth limit (or written past the engine's functions) may nest deeper
 * than JSON.stringify can write, and is shown as a note instead.
 */
export function displayJson(value: unknown, space?: number): string {
  try {
    return JSON.stringify(value, null, space) ?? 'null';
  } catch (error) {
    if (error instanceof RangeError) return `(nested too deep to show: over ${MAX_JSON_DEPTH} arrays or objects)`;
    throw error;
  }
}

/**
 * Encode a value as JSON text, refusing what JSON cannot hold faithfully
 * (functions, symbols, BigInt, cycles), what nests more than
 * {@link MAX_JSON_DEPTH} arrays and objects, and anything over `maxBytes`
 * as measured by {@link jsonbTextBytes}, the measure the SQL checks use.
 * `wrapped`: the levels the engine put around the caller's value (a stream
 * entry's `{"v": …}`), which do not count against its depth.
 */
export function encodeJson(value: unknown, what: string, maxBytes: number, wrapped = 0): string {
  let text: string | undefined;
  try {
    text = JSON.stringify(value === undefined ? null : value);
  } catch (error) {
    if (error instanceof RangeError) throw new ValidationError(`${what} is nested more than ${MAX_JSON_DEPTH} arrays or objects deep`, { cause: error });
    throw new ValidationError(`${what} is not JSON-serialisable: ${(error as Error).message}`, { cause: error });
  }
  if (text === undefined) throw new ValidationError(`${what} is not JSON-serialisable`);
  if (jsonTextTooDeep(text, MAX_JSON_DEPTH + wrapped)) throw new ValidationError(`${what} is nested more than ${MAX_JSON_DEPTH} arrays or objects deep`);
  const unstorable = unstorableEscape(text);
  if (unstorable) {
    throw new ValidationError(`${what} holds ${unstorable}, which PostgreSQL's jsonb cannot store`);
  }
  const bytes = jsonbTextBytes(text, maxBytes);
  if (bytes > maxBytes) {
    throw new PayloadTooLargeError(`${what} is ${bytes} bytes, over the limit of ${maxBytes} bytes`);
  }
  return text;
}

/**
 * Refuse anything but a plain object of JSON values (ValidationError naming
 * `what` and the path of the first bad value, from `root`). A value JSON would drop or
 * change (undefined, a function, NaN, a Date, a Map) is refused, not
 * converted: `{ tenant: undefined }` would become `{}`.
 */
export function assertJsonObject(value: unknown, what: string, root: string): asserts value is Record<string, unknown> {
  if (!plainObject(value)) throw new ValidationError(`${what} must be a plain object, not ${quoteValue(value)}`);
  for (const [k, v] of Object.entries(value)) assertJsonValue(v, what, `${root}.${k}`, 1);
}

/**
 * Refuse metadata whose `foreign_id` (indexed for the lookups of a state
 * machine's runs by foreign id, where an entry holds at most ~2.7 kB) is
 * not a string of at most 512 characters, a number, a boolean or null
 * (ValidationError naming `what`). As trellis._check_foreign_id_field
 * (sql/000_support.sql), which every write of metadata runs.
 */
export function assertForeignIdField(metadata: Record<string, unknown>, what: string): void {
  if (!Object.hasOwn(metadata, 'foreign_id')) return;
  const given = metadata.foreign_id;
  // What is written: JSON drops an undefined field, and a value with toJSON (a Date) is stored as what that returns.
  const v = given !== null && typeof given === 'object' && typeof (given as { toJSON?: unknown }).toJSON === 'function'
    ? (given as { toJSON(): unknown }).toJSON() : given;
  if (v === undefined || v === null || typeof v === 'number' || typeof v === 'boolean') return;
  // Characters as PostgreSQL counts them (code points; a string's length counts UTF-16 units).
  if (typeof v === 'string' && (v.length <= 512 || [...v].length <= 512)) return;
  throw new ValidationError(`the foreign_id of ${what} must be a string of at most 512 characters, a number, a boolean or null (it is indexed), not ${quoteValue(v)}`);
}

/**
 * Refuse anything but a JSON value (a string, finite number, boolean, null,
 * array or plain object of them), naming `what` and the path of the first
 * bad value from `path`: what JSON would drop or change (undefined, a
 * function, NaN, a Date, a Map) is refused, not converted, so the reader
 * gets exactly what was given (ctx.reply's answer).
 */
export function assertJsonValue(v: unknown, what: string, path: string, depth = 0): void {
  if (v === null || typeof v === 'string' || typeof v === 'boolean' || (typeof v === 'number' && Number.isFinite(v))) return;
  if ((Array.isArray(v) || plainObject(v)) && depth >= MAX_JSON_DEPTH) {
    throw new ValidationError(`${what} is nested more than ${MAX_JSON_DEPTH} arrays or objects deep (at ${path.slice(0, 60)}…)`);
  }
  if (Array.isArray(v)) return v.forEach((x, i) => assertJsonValue(x, what, `${path}[${i}]`, depth + 1));
  if (plainObject(v)) return Object.entries(v).forEach(([k, x]) => assertJsonValue(x, what, `${path}.${k}`, depth + 1));
  throw new ValidationError(`${what} ${path} must be a JSON value (a string, number, boolean, null, array or plain object), not ${quoteValue(v)}`);
}

function plainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
    && (Object.getPrototypeOf(v) === Object.prototype || Object.getPrototypeOf(v) === null);
}

// A \u escape JSON.stringify wrote that jsonb refuses: U+0000, or a lone
// surrogate (JSON.stringify writes a well-formed pair as it is and escapes
// only a lone half). Preceded by an even number of backslashes, so `\\u0000`
// (an escaped backslash, then the text u0000) is not one.
const UNSTORABLE_ESCAPE = /(?<!\\)(?:\\\\)*\\u(0000|d[89a-f][0-9a-f]{2})/i;

/**
 * What in JSON text (as JSON.stringify writes it) jsonb cannot store — the
 * character U+0000 or a lone UTF-16 surrogate, named — or undefined. Such a
 * value would be refused by PostgreSQL inside the checkpoint that records it.
 */
export function unstorableEscape(text: string): string | undefined {
  if (!text.includes('\\u')) return undefined;
  const match = UNSTORABLE_ESCAPE.exec(text);
  if (!match) return undefined;
  return match[1] === '0000' ? 'the character U+0000' : `a lone surrogate (U+${(match[1] as string).toUpperCase()})`;
}

/** `text` with U+0000 and lone surrogates replaced by U+FFFD, which jsonb stores. */
export function storableText(text: string): string {
  const clean = text.includes('\u0000') ? text.replaceAll('\u0000', '\uFFFD') : text;
  return LONE_SURROGATE.test(clean) ? clean.replace(new RegExp(LONE_SURROGATE.source, 'g'), '\uFFFD') : clean;
}

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

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
    // Every property is read once and guarded: a getter that throws, or a
    // name that is not a string, must not make the failure unrecordable.
    const name = read(() => error.name);
    const message = read(() => error.message);
    const stack = read(() => error.stack);
    const out: SerializedError = {
      name: typeof name === 'string' && name ? clip(name, 256) : 'Error',
      message: clip(typeof message === 'string' ? message : message === undefined ? '' : safeString(message), MAX_MESSAGE),
    };
    if (typeof stack === 'string' && stack) out.stack = clip(stack.split('\n').slice(0, 12).join('\n'), MAX_STACK);
    if (isTrellisError(error)) {
      out.code = error.code;
      if (Object.keys(error.details).length) out.details = boundedDetails(error.details);
    }
    const step = read(() => (error as { step?: unknown }).step);
    const attempts = read(() => (error as { attempts?: unknown }).attempts);
    const code = read(() => (error as { code?: unknown }).code);
    if (typeof step === 'string') out.step = clip(step, MAX_MESSAGE);
    if (typeof attempts === 'number') out.attempts = attempts;
    if (!out.code && typeof code === 'string') out.code = clip(code, 64);
    return out;
  }
  return { name: 'Error', message: clip(typeof error === 'string' ? error : safeString(error), MAX_MESSAGE) };
}

function read(get: () => unknown): unknown {
  try {
    return get();
  } catch (error) {
    return `(unreadable: ${error instanceof Error ? String(read(() => error.message)) : typeof error})`;
  }
}

/** At most `max` characters, storable in jsonb (U+0000 and lone surrogates replaced). */
function clip(text: string, max: number): string {
  const clipped = text.length <= max ? text : `${text.slice(0, max)}… (${text.length - max} more characters)`;
  return storableText(clipped);
}

function boundedDetails(details: Record<string, unknown>): unknown {
  try {
    const text = JSON.stringify(details);
    if (text === undefined) return details;
    if (text.length > MAX_DETAILS) return { truncated: true, bytes: Buffer.byteLength(text) };
    return unstorableEscape(text) ? JSON.parse(storableJsonText(text)) : details;
  } catch {
    return { unserialisable: true };
  }
}

/** JSON text with every escape jsonb refuses (U+0000, lone surrogates) written as U+FFFD. */
function storableJsonText(text: string): string {
  return text.replace(new RegExp(UNSTORABLE_ESCAPE.source, 'gi'), (all, code: string) => `${all.slice(0, -(code.length + 2))}\\uFFFD`);
}

function safeString(value: unknown): string {
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}

// A JSON string (skipped) or a JSON number (captured), in valid JSON text.
const JSON_NUMBER_OR_STRING = /"(?:[^"\\]|\\.)*"|(-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)/g;

/**
 * The integer a JSON number token spells (`9007199254740993`,
 * `9007199254740993.0`, `9.007199254740993e15`), or undefined when it has
 * a fraction: compared with the double JavaScript read, it tells an exact
 * large integer (`1e21`) from one that was rounded.
 */
function exactInteger(token: string): bigint | undefined {
  const m = /^(-?)(\d+)(?:\.(\d+))?(?:[eE]([+-]?\d+))?$/.exec(token);
  if (!m) return undefined;
  const digits = `${m[2]}${m[3] ?? ''}`;
  const shift = Number(m[4] ?? 0) - (m[3]?.length ?? 0);
  const sign = m[1] === '-' ? -1n : 1n;
  if (shift >= 0) return sign * BigInt(digits) * 10n ** BigInt(shift);
  const kept = digits.slice(0, Math.max(0, digits.length + shift));
  if (!/^0*$/.test(digits.slice(kept.length))) return undefined; // a fraction
  return sign * BigInt(kept || '0');
}

/**
 * Parse JSON text a person typed (a dashboard form, a CLI flag) into the
 * value it says, or throw a SyntaxError naming why not. JavaScript reads a
 * number it cannot hold as another one without a word — `1e999` as
 * Infinity (stored as null), `9007199254740993` (or `9007199254740993.0`,
 * `9.007199254740993e15`) as 9007199254740992, `1e-400` as 0 — so such a
 * number is refused rather than changed: an integer beyond ±(2^53 − 1)
 * that a double does not hold exactly (send it as a string), a number out
 * of the double's range, or one that rounds to zero.
 *
 * @example
 * parseExactJson('{"amount": 30}'); // { amount: 30 }
 * parseExactJson('{"id": 9007199254740993}'); // throws: send it as a string
 */
export function parseExactJson(text: string): unknown {
  const value: unknown = JSON.parse(text);
  for (const match of text.matchAll(JSON_NUMBER_OR_STRING)) {
    const token = match[1];
    if (token === undefined) continue;
    const n = Number(token);
    if (!Number.isFinite(n)) throw new SyntaxError(`the number ${token.slice(0, 40)} is out of JavaScript's range`);
    if (Number.isInteger(n) && !Number.isSafeInteger(n) && exactInteger(token) !== BigInt(n)) {
      throw new SyntaxError(`the integer ${token.slice(0, 40)} is beyond ±(2^53 − 1), which JavaScript cannot hold exactly: send it as a string`);
    }
    if (n === 0 && /[1-9]/.test(token.replace(/[eE].*$/, ''))) throw new SyntaxError(`the number ${token.slice(0, 40)} is too small for JavaScript (it would be 0)`);
  }
  return value;
}
