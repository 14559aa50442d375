/** A workflow definition as SQL registers it: its input and signal shapes and its declared hooks. */
import type { WorkflowRegistration } from '../protocol/registration.ts';
import { declaredHooks, type WorkflowHooks } from './hooks.ts';
import { inputShape } from './input-shape.ts';
import type { SignalDefinition } from './signal.ts';
import type { StandardSchemaV1 } from './standard-schema.ts';

/**
 * What a registration carries: the input schema becomes the input shape SQL
 * checks starts against, the declared signals the shapes it checks their
 * payloads against.
 */
export interface Registrable {
  name: string;
  version: string;
  queue: string;
  input?: StandardSchemaV1 | undefined;
  signals?: readonly SignalDefinition<any, any>[] | undefined;
  hooks?: WorkflowHooks<any, any> | undefined;
  eventPayloads?: boolean | undefined;
}

/** The registration row of `w`: its input shape (absent: none SQL can check), declared signals and hooks. */
export function registrationOf(w: Registrable): WorkflowRegistration {
  return {
    name: w.name, version: w.version, queue: w.queue,
    ...(w.input ? { input_schema: inputShape(w.input) } : {}),
    // A signal without a schema, or with one SQL cannot read, takes any payload (true).
    ...(w.signals ? { signals: Object.fromEntries(w.signals.map((s) => [s.name, (s.schema && inputShape(s.schema)) ?? true])) } : {}),
    hooks: declaredHooks(w.hooks),
    event_payloads: w.eventPayloads ?? false,
  };
}
