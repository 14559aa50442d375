/**
 * Compile-only type tests (checked by `npm run typecheck`, never run): a
 * state machine handler's returned status is checked against the statuses
 * it is allowed to move to, for sync and async handlers alike, without
 * `as const`. Each `@ts-expect-error` fails the typecheck if its line compiles.
 */
import { z } from 'zod';
import { defineStateMachine } from '../../src/models.ts';

const machine = defineStateMachine({ name: 'typed', status: z.enum(['a', 'b', 'c', 'd']), object: z.object({ n: z.number() }) });

// Allowed: a literal destination, sync or async, with or without the run parameter.
machine.step('a', () => 'b', 'b');
machine.step('a', async () => 'b', 'b');
machine.step('a', async (run) => {
  run.object.n += 1;
  return 'b';
}, 'b');
machine.step('a', async (run) => (run.object.n > 1 ? 'b' : run.skip()), 'b');
machine.step('a', async (run) => (run.object.n > 1 ? 'b' : 'c'), 'b', 'c');
machine.step('a', async (run) => run.pause('wait'), 'b');
machine.callback('b', async (_run, payload) => ((payload as { ok: boolean }).ok ? 'c' : 'd'), 'c', 'd');
machine.callback('b', async () => 'c', 'c');
machine.timeout('b', { after: '1 day' }, async () => 'd', 'd');
machine.timeout('b', { after: '1 day' }, (_run, firedAt) => (firedAt.getTime() > 0 ? 'd' : 'c'), 'c', 'd');

// Refused at compile time: a status the machine does not have …
// @ts-expect-error 'zz' is no status of the machine
machine.step('a', async () => 'zz', 'b');
// @ts-expect-error 'zz' is no status of the machine
machine.step('a', () => 'zz', 'b');
// … and a status the handler may not move to.
// @ts-expect-error 'c' is not among the allowed destinations ('b')
machine.step('a', async () => 'c', 'b');
// @ts-expect-error 'c' is not among the allowed destinations ('b')
machine.step('a', () => 'c', 'b');
// A handler needs at least one allowed destination (build() refused none only at run time).
// @ts-expect-error no allowed destination
machine.step('a', () => 'b');
// @ts-expect-error no allowed destination
machine.callback('a', () => 'b');
// @ts-expect-error 'd' is not among the allowed destinations ('c')
machine.callback('b', async () => 'd', 'c');
// @ts-expect-error 'c' is not among the allowed destinations ('d')
machine.timeout('b', { after: '1 day' }, async () => 'c', 'd');
// @ts-expect-error an unknown destination
machine.step('a', () => 'b', 'b', 'zz');
// @ts-expect-error a handler returning any string
machine.step('a', async (): Promise<string> => 'b', 'b');
