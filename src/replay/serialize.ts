/** JSON encoding of payloads and errors, identical on first run and replay. */
import { isTrellisError, PayloadTooLargeError, ValidationError } from '../errors.ts';
import type { SerializedError } from './history.ts';

/**
 * Encode a value as JSON text, refusing what JSON cannot hold faithfully
 * (functions, symbols, BigInt, cycles) and anything over `maxBytes`.
 */
export function encodeJson(value: unknown, what: string, maxBytes: number): string {
  let text: string | undefined;
  try {
    text = JSON.stringify(value === undefined ? null : value);
  } catch (error) {
    throw new ValidationError(`${what} is not JSON-serialisable: ${(error as Error).message}`, { cause: error });
  }
  if (text === undefined) throw new ValidationError(`${what} is not JSON-serialisable`);
  const bytes = Buffer.byteLength(text);
  if (bytes > maxBytes) {
    throw new PayloadTooLargeError(`${what} is ${bytes} bytes, over the limit of ${maxBytes} bytes`);
  }
  return text;
}

export function serializeError(error: unknown): SerializedError {
  if (error instanceof Error) {
    const out: SerializedError = { name: error.name, message: error.message };
    if (error.stack) out.stack = error.stack.split('\n').slice(0, 12).join('\n');
    if (isTrellisError(error)) {
      out.code = error.code;
      if (Object.keys(error.details).length) out.details = error.details;
    }
    const extra = error as { step?: unknown; attempts?: unknown; code?: unknown };
    if (typeof extra.step === 'string') out.step = extra.step;
    if (typeof extra.attempts === 'number') out.attempts = extra.attempts;
    if (!out.code && typeof extra.code === 'string') out.code = extra.code;
    return out;
  }
  return { name: 'Error', message: typeof error === 'string' ? error : safeString(error) };
}

function safeString(value: unknown): string {
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}
