/**
 * Requests (decision 0044): a client sends a signal whose id is the
 * request's id and waits for the run's value `reply:<id>`, which
 * `ctx.reply` / `ctx.replyError` set. Both sides name the reply here.
 */
import { quoteValue, ValidationError } from '../errors.ts';
import { NAME_PATTERN } from './names.ts';

/** The run value that holds the reply to request `id`. */
export const REPLY_PREFIX = 'reply:';

/** The longest request id: `reply:<id>` is a value key, at most 128 characters. */
export const REQUEST_ID_MAX = 128 - REPLY_PREFIX.length;

/**
 * The value key of the reply to request `id`: ValidationError for an id a
 * key cannot hold (1-122 letters, digits, space or `_ . : @ / -`, not
 * ending with a space), naming `what`.
 *
 * @example
 * replyKey('4f1c…', 'request id'); // 'reply:4f1c…'
 */
export function replyKey(id: unknown, what: string): string {
  const key = answerableKey(id);
  if (key === undefined) {
    throw new ValidationError(`${what} must be 1-${REQUEST_ID_MAX} letters, digits, space or _ . : @ / - (not ending with a space), not ${quoteValue(id)}`);
  }
  return key;
}

/**
 * The value key of the reply to a message with id `id`, or undefined when
 * no request can carry that id (none, or one a key cannot hold: a signal
 * sent by `client.signal` / `signal_send`, whose ids may be up to 512 of
 * any characters). `client.request`, `request_send` and `run_request` take
 * only ids that have a key.
 *
 * @example
 * answerableKey('w-1'); // 'reply:w-1'
 * answerableKey("it's; 1"); // undefined
 */
export function answerableKey(id: unknown): string | undefined {
  if (typeof id !== 'string' || id.length === 0) return undefined;
  const key = `${REPLY_PREFIX}${id}`;
  return NAME_PATTERN.test(key) ? key : undefined;
}

/** What a reply value holds: the answer, or the run's refusal. */
export type ReplyRecord =
  | { value: unknown }
  | { error: { message: string; code?: string | undefined; details?: Record<string, unknown> | undefined } };
