/**
 * `trellis diagram --machine <name> --module <path>`: import the user's
 * module (as `trellis worker` does) and find the state machine it exports
 * under that machine name.
 */
import type { StateMachine } from '../state-machine/define.ts';
import { quote } from './args.ts';
import { UsageError } from './exit-codes.ts';
import { importModule } from './load-workflows.ts';

const isMachine = (value: unknown): value is StateMachine =>
  typeof value === 'object' && value !== null && (value as { kind?: unknown }).kind === 'trellis.state-machine'
  && typeof (value as { name?: unknown }).name === 'string' && (value as { nodes?: unknown }).nodes instanceof Map;

/**
 * The state machine named `name` (its `defineStateMachine({ name })`) that
 * `module` exports, directly or in an exported array. A missing module, or
 * none or two machines of that name, is a UsageError naming the machines it
 * does export.
 *
 * @example
 * const machine = await loadMachine('dist/machines.js', 'onboarding');
 * console.log(machineDiagram(machine));
 */
export async function loadMachine(module: string, name: string, cwd = process.cwd()): Promise<StateMachine> {
  const namespace = await importModule(module, cwd);
  const found = new Set<StateMachine>();
  for (const value of Object.values(namespace)) {
    if (isMachine(value)) found.add(value);
    else if (Array.isArray(value)) for (const item of value) if (isMachine(item)) found.add(item);
  }
  const named = [...found].filter((m) => m.name === name);
  if (named.length > 1) throw new UsageError(`${quote(module)} exports two state machines named ${quote(name)}`);
  if (named[0]) return named[0];
  const names = [...found].map((m) => m.name);
  throw new UsageError(`${quote(module)} exports no state machine named ${quote(name)}`
    + (names.length ? ` (it exports ${names.slice(0, 10).map(quote).join(', ')}${names.length > 10 ? ', …' : ''})` : ' (it exports none: export what defineStateMachine(…).build() returns)'));
}
