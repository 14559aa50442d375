/**
 * The dashboard's actions on a run, through the client API (and so through
 * the engine's SQL functions: run_cancel, run_pause, run_resume, run_retry,
 * signal_send). The dashboard itself never writes a table.
 */
import type { Client } from '../client/client.ts';
import { ValidationError } from '../errors.ts';

/** The actions the run page offers, by the last segment of their POST path. */
export const ACTION_VERBS = ['cancel', 'pause', 'resume', 'retry', 'signal'] as const;
export type ActionVerb = (typeof ACTION_VERBS)[number];

/** Whether `verb` names an action. */
export function isActionVerb(verb: string): verb is ActionVerb {
  return (ACTION_VERBS as readonly string[]).includes(verb);
}

type Form = Record<string, string | File | (string | File)[]>;

function field(form: Form, name: string, max: number): string | undefined {
  const value = form[name];
  if (value === undefined || value === '') return undefined;
  if (typeof value !== 'string') throw new ValidationError(`${name} must be text`);
  if (value.length > max) throw new ValidationError(`${name} is longer than ${max} characters`);
  return value;
}

/**
 * Perform `verb` on run `id` with the fields of its form. Returns what the
 * run page says about it: the action done and the run's status afterwards.
 *
 * @example
 * await performAction(client, 'signal', id, { name: 'approved', payload: '{"by":"ada"}' }); // { done: 'signal' }
 */
export async function performAction(client: Client, verb: ActionVerb, id: string, form: Form): Promise<{ done: string; status?: string }> {
  switch (verb) {
    case 'cancel':
      return { done: verb, status: await client.cancel(id, field(form, 'reason', 500)) };
    case 'pause':
      return { done: verb, status: await client.pause(id, field(form, 'reason', 500)) };
    case 'resume':
      return { done: verb, status: await client.resume(id) };
    case 'retry':
      return { done: verb, status: await client.retry(id) };
    case 'signal': {
      const name = field(form, 'name', 200);
      if (!name) throw new ValidationError('a signal needs a name');
      const text = field(form, 'payload', 1_000_000)?.trim();
      let payload: unknown = null;
      if (text) {
        try {
          payload = JSON.parse(text);
        } catch {
          throw new ValidationError(`the payload ${JSON.stringify(text.slice(0, 40))} is not JSON`);
        }
      }
      const signalId = field(form, 'signalId', 512);
      const sent = await client.signal(id, name, payload, signalId === undefined ? {} : { id: signalId });
      return { done: sent ? 'signal' : 'signal-duplicate' };
    }
  }
}
